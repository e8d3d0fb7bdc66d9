# Sourced by the device scripts (gpu-session.sh, gpu-foundation.sh) on a lent H200: the wheels its image
# lacks, carried in .whl/, installed beside it and put on PYTHONPATH with the repository; the GPU named.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi -L
python3 -c "import torch, torchvision, open_clip, peft, huggingface_hub as h; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'open_clip', open_clip.__version__, 'peft', peft.__version__, 'hub', h.__version__)"

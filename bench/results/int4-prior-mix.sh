#!/usr/bin/env bash
# Does the prior mix change what int4 keeps? bench/int4_variants.py (2,000 student views, calibration
# with the kl objective, as hello-build does) side by side on the whole-image default IPC 10 bundle written
# without the mix (cifar10-ipc10-9ff6e0e6cb64eea9, format 1.1) and with it (prior-mix.sh's
# cifar10-ipc10-8d3d8997894892a6, format 2.0, w = 0.2): the same LoRA, head and images. Agreement is
# between the int4 and fp16 copies of the same bundle, so with the mix both label with it.
set -ex
cd "$(dirname "$0")/../.."
for bundle in cifar10-ipc10-9ff6e0e6cb64eea9 cifar10-ipc10-8d3d8997894892a6; do
  HF_HUB_OFFLINE=1 .venv/bin/python bench/int4_variants.py bench/results/cache/bundles/$bundle.hello --views 2000 \
    --calibration-objectives kl 2>&1 | grep -v WARNING
done

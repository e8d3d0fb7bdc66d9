"""Test-wide settings: no hub downloads (each failed one retries for ~46 s), CPU-friendly threads."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402

import hello_format  # noqa: E402,F401  (installs the torchvision op shim before open_clip loads)

# One intra-op thread: the tests' models are tiny, and on a loaded 2-core machine OpenMP's spinning
# second thread made them 10-100x slower.
torch.set_num_threads(1)

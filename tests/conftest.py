"""Test-wide settings: no hub downloads (each failed one retries for ~46 s), CPU-friendly threads."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import hello_format  # noqa: E402,F401  (installs the torchvision op shim before open_clip loads)

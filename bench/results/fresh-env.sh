#!/usr/bin/env bash
# The default IPC 10 build rebuilt from nothing in a fresh install (2026-12-02), under the kept-state
# rule of its time (best; `--view-transfer-keep best` keeps its cache key and its kept step, 1075).
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --students convnet3 --regimes projector hard teacher random-real \
  --seeds 0 1 2 --student-epochs 200 resnet18_32=60 @50=100 resnet18_32@50=12 --teacher-epochs 6 \
  --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1 --jobs 2 \
  --view-transfer-steps 2000 --view-transfer-real-fraction 0.25 --view-transfer-keep best --out bench/results/cifar10-fresh-env

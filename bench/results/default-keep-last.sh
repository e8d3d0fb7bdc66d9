#!/usr/bin/env bash
# The IPC 10 default build under the builder's kept-state rule `last` (the default since this script),
# selection checks every 25 steps as always; the real transfer, foundation and teacher come from the cache.
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --students convnet3 --regimes projector hard teacher random-real \
  --seeds 0 1 2 --student-epochs 200 resnet18_32=60 @50=100 resnet18_32@50=12 --teacher-epochs 6 \
  --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1 --jobs 2 \
  --view-transfer-steps 2000 --view-transfer-real-fraction 0.25 --out bench/results/cifar10-default-keep-last

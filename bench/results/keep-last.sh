#!/usr/bin/env bash
# The same build, scored only at step 0 and at the end, so that its final state is kept (the experiment
# behind `--view-transfer-keep last`); `best` of those two checks is what ran, and keeps the cache key.
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --students convnet3 --regimes projector \
  --seeds 0 1 2 --student-epochs 200 resnet18_32=60 @50=100 resnet18_32@50=12 --teacher-epochs 6 \
  --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1 --jobs 2 \
  --view-transfer-steps 2000 --view-transfer-real-fraction 0.25 --view-transfer-keep best --view-transfer-eval-every 2000 --out bench/results/cifar10-keep-last
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --students convnet3 --regimes random-real \
  --seeds 0 1 2 --student-epochs 200 resnet18_32=60 @50=100 resnet18_32@50=12 --teacher-epochs 6 \
  --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1 --jobs 2 \
  --view-transfer-steps 2000 --view-transfer-real-fraction 0.25 --view-transfer-keep best --view-transfer-eval-every 2000 --out bench/results/cifar10-keep-last-random-real

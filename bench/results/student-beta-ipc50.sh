#!/usr/bin/env bash
# IPC 50 students at beta 1 on the whole-image IPC 50 bundle (whole-images-ipc50.sh's, view-transfer lr
# 0.003), the same 3 seeds; hard-label students come from the cache.
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 50 --regimes projector hard teacher \
  --seeds 0 1 2 --students convnet3 --student-epochs 200 resnet18_32=60 @50=100 resnet18_32@50=12 \
  --teacher-epochs 6 --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --jobs 2 \
  --view-transfer-steps 2000 --view-transfer-real-fraction 0.25 --view-transfer-lr 0.003 --student-beta 1 \
  --out bench/results/cifar10-student-beta1-ipc50

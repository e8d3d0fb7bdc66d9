#!/usr/bin/env bash
# ResNet-18 students (60 epochs, beta 1) on the prior-mix IPC 10 bundle (prior-mix.sh's format 2.0 build,
# cached), the 3 seeds of student-beta-resnet18.sh, whose hard-label and teacher rows they are compared
# with (the same images). Test, reported only.
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --students resnet18_32 --regimes projector \
  --seeds 0 1 2 --student-epochs 200 resnet18_32=60 @50=100 resnet18_32@50=12 --teacher-epochs 6 \
  --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --jobs 2 \
  --view-transfer-steps 2000 --view-transfer-real-fraction 0.25 --student-beta 1 --prior-weight 0.2 \
  --out bench/results/cifar10-prior-mix-resnet18

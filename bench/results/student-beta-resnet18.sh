#!/usr/bin/env bash
# ResNet-18 students (another family than the ConvNet-3 teacher, 60 epochs) at the recipe's beta 1, on the
# whole-image default IPC 10 bundle: whole-images-resnet18.sh ran them at beta 0.1. Hard-label students
# (CE alone) do not depend on beta and come from the cache. Test, reported only.
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --students resnet18_32 --regimes projector hard teacher \
  --seeds 0 1 2 --student-epochs 200 resnet18_32=60 @50=100 resnet18_32@50=12 --teacher-epochs 6 \
  --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --jobs 2 \
  --view-transfer-steps 2000 --view-transfer-real-fraction 0.25 --student-beta 1 \
  --out bench/results/cifar10-student-beta1-resnet18

#!/usr/bin/env bash
# The students' mse_ce beta 1 instead of the paper's 0.1, chosen on held-out training images
# (bench/student_recipe.py, bench/results/student-recipe/), then measured once on test: the whole-image
# default IPC 10 bundle (cifar10-ipc10-9ff6e0e6cb64eea9) under projector, teacher and random-real labels,
# the 5 seeds of whole-images-rest.sh; hard-label students (CE alone) are beta's no matter and come from the cache.
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --regimes projector hard teacher random-real \
  --seeds 0 1 2 3 4 --students convnet3 --student-epochs 200 resnet18_32=60 @50=100 resnet18_32@50=12 \
  --teacher-epochs 6 --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --jobs 2 \
  --view-transfer-steps 2000 --view-transfer-real-fraction 0.25 --student-beta 1 --out bench/results/cifar10-student-beta1

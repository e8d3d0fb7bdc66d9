#!/usr/bin/env bash
# prior-ipc10-view1920-build.sh's bundle (1,920 synthetic views of each image, 2,000 steps) against the
# per-image default's (1,280 views, 1,334 steps; prior-ipc10-screen.sh), held-out images only: ConvNet-3
# students at beta 1, 200 epochs, seeds 0 and 1, the bundle's recorded w = 0.2. No test split is read.
set -ex
cd "$(dirname "$0")/../.."
bundle=$(ls bench/results/cache/bundles/cifar10-ipc10-*.hello | grep -v 736db7b5115f5830)
teacher=bench/results/cache/teacher/152a4b97eb301f94/teacher_convnet3_epoch0015.safetensors
for seed in 0 1; do
  HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --bundle $bundle --teacher $teacher \
    --variant beta=1 --regimes projector --seeds $seed > bench/results/student-recipe/ipc10-view1920-seed$seed.log 2>&1 &
done
wait
HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --bundle $bundle --teacher $teacher \
  --variant beta=1 --regimes projector --seeds 0 1 | tail -3

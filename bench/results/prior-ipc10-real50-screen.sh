#!/usr/bin/env bash
# prior-ipc10-real50-build.sh's bundle (the builder's defaults: real fraction 0.5, 1,280 views of each
# image, 2,000 steps) against the 1,920-view quarter-real bundle (prior-ipc10-view1920-screen.sh:
# foundation half 52.16, builder's hold-out 53.36, seeds 0 and 1), held-out images only: ConvNet-3
# students at beta 1, 200 epochs, seeds 0 and 1, w = 0.2. No test split is read. The rule, set before
# any run: the builder's default is read once on test only if its two-seed mean is ahead of the
# 1,920-view bundle's on both held-out sets; otherwise the quarter-real 1,920-view build stays the bench's.
# (It was not: foundation half 52.33 against 52.16, hold-out 52.76 against 53.36; no test split was read.)
set -ex
cd "$(dirname "$0")/../.."
bundle=$(ls bench/results/cache/bundles/cifar10-ipc10-*.hello | grep -v -e 736db7b5115f5830 -e e9a1fd65ec910716 -e 990156dd16a0aa82)
teacher=bench/results/cache/teacher/152a4b97eb301f94/teacher_convnet3_epoch0015.safetensors
for seed in 0 1; do
  HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --bundle $bundle --teacher $teacher \
    --variant beta=1 --regimes projector --seeds $seed > bench/results/student-recipe/ipc10-real50-seed$seed.log 2>&1 &
done
wait
HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --bundle $bundle --teacher $teacher \
  --variant beta=1 --regimes projector --seeds 0 1 | tail -3

#!/usr/bin/env bash
# transfer10-ipc10-build.sh's bundle (10 real-transfer epochs) against the 1,920-view quarter-real bundle
# with 3 (prior-ipc10-view1920-screen.sh: foundation half 52.16, builder's hold-out 53.36, seeds 0 and 1),
# held-out images only: ConvNet-3 students at beta 1, 200 epochs, seeds 0 and 1, w = 0.2. No test split is
# read. The rule, set before any run: test is read once only if the two-seed mean is ahead on both
# held-out sets. (It was: foundation half 52.38 ± 0.29 against 52.16 (+0.06, +0.40 per seed), hold-out
# 53.88 against 53.36 (-0.08, +1.12).)
set -ex
cd "$(dirname "$0")/../.."
bundle=bench/results/cache/bundles/$(grep -o "eval: cifar10-ipc10-[0-9a-f]*\.hello" bench/results/transfer10-ipc10-bench.log | head -1 | cut -d' ' -f2)
teacher=bench/results/cache/teacher/152a4b97eb301f94/teacher_convnet3_epoch0015.safetensors
for seed in 0 1; do
  HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --bundle $bundle --teacher $teacher \
    --variant beta=1 --regimes projector --seeds $seed > bench/results/student-recipe/ipc10-transfer10-seed$seed.log 2>&1 &
done
wait
HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --bundle $bundle --teacher $teacher \
  --variant beta=1 --regimes projector --seeds 0 1 | tail -3

#!/usr/bin/env bash
# transfer10-ipc50-build.sh's bundle (10 real-transfer epochs) against the per-image-default IPC 50 bundle
# with 3 (cifar10-ipc50-64290ae95e30fe70.hello, student-recipe/runs.jsonl: builder's hold-out 62.72
# (62.64, 62.80), foundation half 61.47 (61.48, 61.46)), held-out images only: ConvNet-3 students at beta 1
# for the bench's 100 IPC 50 epochs, seeds 0 and 1, w = 0.2. No test split is read. The rule, set before
# any run (IPC 10's): test is read once only if the two-seed mean is ahead on both held-out sets.
set -ex
cd "$(dirname "$0")/../.."
bundle=bench/results/cache/bundles/$(grep -o "eval: cifar10-ipc50-[0-9a-f]*\.hello" bench/results/transfer10-ipc50-bench.log | head -1 | cut -d' ' -f2)
teacher=bench/results/cache/teacher/152a4b97eb301f94/teacher_convnet3_epoch0015.safetensors
for seed in 0 1; do
  HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --bundle $bundle --teacher $teacher \
    --variant beta=1 --regimes projector --epochs 100 --seeds $seed \
    > bench/results/student-recipe/ipc50-transfer10-seed$seed.log 2>&1 &
done
wait
HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --bundle $bundle --teacher $teacher \
  --variant beta=1 --regimes projector --epochs 100 --seeds 0 1 | tail -3

#!/usr/bin/env bash
# IPC 10's share of the CLIP prior with the 15-epoch teacher (prior-ipc10-build.sh's bundle, which records
# w = 0.2), screened as IPC 50's was (prior-ipc50-screen.sh): the bundle read with w = 0.2, 0.35 and 0.5,
# ConvNet-3 students at beta 1 for the bench's 200 IPC 10 epochs, seeds 0 and 1, scored on held-out images
# only (the builder's hold-out and the foundation half). No test split is read here. The rule, set before
# any run: a weight replaces the default 0.2 only if both held-out sets favour it, here and at IPC 50
# (where 0.35 tied on the hold-out). Two processes, one thread each, one per seed.
set -ex
cd "$(dirname "$0")/../.."
bundle=bench/results/cache/bundles/cifar10-ipc10-736db7b5115f5830.hello
teacher=bench/results/cache/teacher/152a4b97eb301f94/teacher_convnet3_epoch0015.safetensors
for seed in 0 1; do
  HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --bundle $bundle --teacher $teacher \
    --variant beta=1 --regimes projector --prior-weights 0.35 0.5 --seeds $seed \
    > bench/results/student-recipe/ipc10-prior-seed$seed.log 2>&1 &
done
wait
HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --bundle $bundle --teacher $teacher \
  --variant beta=1 --regimes projector --prior-weights 0.35 0.5 --seeds 0 1 | tail -6

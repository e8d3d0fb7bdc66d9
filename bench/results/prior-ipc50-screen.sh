#!/usr/bin/env bash
# Is IPC 10's prior weight (w = 0.2, prior-labels.sh) IPC 50's? The per-image-default IPC 50 bundle
# (ipc50-per-image.sh; it records w = 0.2) read with w = 0.2, 0.35 and 0.5, ConvNet-3 students at the
# recipe's beta 1 for the bench's 100 IPC 50 epochs, seeds 0 and 1, scored on held-out images only (the
# builder's hold-out and the foundation half; bench/student_recipe.py). No test split is read here.
# Two processes, one thread each, one per seed.
set -ex
cd "$(dirname "$0")/../.."
for seed in 0 1; do
  HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py \
    --bundle bench/results/cache/bundles/cifar10-ipc50-64290ae95e30fe70.hello \
    --teacher bench/results/cache/teacher/152a4b97eb301f94/teacher_convnet3_epoch0015.safetensors \
    --variant beta=1 --regimes projector --prior-weights 0.35 0.5 --epochs 100 --seeds $seed \
    > bench/results/student-recipe/ipc50-prior-seed$seed.log 2>&1 &
done
wait
HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py \
  --bundle bench/results/cache/bundles/cifar10-ipc50-64290ae95e30fe70.hello \
  --teacher bench/results/cache/teacher/152a4b97eb301f94/teacher_convnet3_epoch0015.safetensors \
  --variant beta=1 --regimes projector --prior-weights 0.35 0.5 --epochs 100 --seeds 0 1 | tail -6

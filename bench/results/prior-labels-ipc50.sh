#!/usr/bin/env bash
# The prior weight chosen at IPC 10 on held-out images (w = 0.2, prior-labels.sh) applied unchanged to the
# whole-image IPC 50 bundle (view-transfer lr 0.003), ConvNet-3 students at beta 1 for 100 epochs, the
# 3 seeds of student-beta-ipc50.sh: held-out figures and test (reported only). The projector's own rows
# are student-beta-ipc50.sh's (57.38 / 57.49 / 57.51 on test). Two processes, one thread each.
set -ex
cd "$(dirname "$0")/../.."
run() { HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --bundle bench/results/cache/bundles/cifar10-ipc50-546307030c0453ee.hello \
  --variant beta=1 --regimes --prior-weights 0.2 --epochs 100 --test bench/results/cache/cifar10/test \
  --out bench/results/student-recipe/test-runs.jsonl "$@"; }
run --seeds 0 2 > bench/results/student-recipe/ipc50-a.log 2>&1 &
run --seeds 1 > bench/results/student-recipe/ipc50-b.log 2>&1 &
wait
grep -h ipc50 bench/results/student-recipe/test-runs.jsonl

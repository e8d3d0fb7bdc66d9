#!/usr/bin/env bash
# After prior-ipc10-screen.sh: the default w = 0.2 (the bundle as built, the builder's default) and the
# weight the screens left (W = 0.35: its gain over 0.2 averaged over both held-out sets at IPC 10 and
# IPC 50 is +0.22 points, 0.5's +0.13; IPC 10's foundation half alone put 0.5 ahead of 0.35 by 0.04),
# once each on test, reported only; 5 seeds, ConvNet-3, beta 1, 200 epochs, beside the online teacher's students of
# prior-ipc10-build.sh (bench/results/cifar10-prior-ipc10/). Two processes, one thread each.
set -ex
cd "$(dirname "$0")/../.."
W=${W:?set W to the weight to test}
run() { HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py \
  --bundle bench/results/cache/bundles/cifar10-ipc10-736db7b5115f5830.hello \
  --teacher bench/results/cache/teacher/152a4b97eb301f94/teacher_convnet3_epoch0015.safetensors \
  --variant beta=1 --test bench/results/cache/cifar10/test \
  --out bench/results/student-recipe/test-runs.jsonl "$@"; }
run --regimes projector --seeds 0 1 2 3 4 > bench/results/student-recipe/ipc10-test-default.log 2>&1 &
run --regimes --prior-weights $W --seeds 0 1 2 3 4 > bench/results/student-recipe/ipc10-test-w$W.log 2>&1 &
wait
grep -h 736db7b5115f5830 bench/results/student-recipe/test-runs.jsonl

#!/usr/bin/env bash
# The prior weight chosen on held-out images (prior-labels.sh: w = 0.2), then once on CIFAR-10's test
# split, reported only: ConvNet-3 students at beta 1 on the whole-image default IPC 10 bundle, the 5 seeds
# of student-beta.sh. Seed 0 of the plain projector through the same tool checks that it reproduces the
# recorded hello eval figure (51.48). Two processes, one thread each.
set -ex
cd "$(dirname "$0")/../.."
run() { HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --variant beta=1 --test bench/results/cache/cifar10/test \
  --out bench/results/student-recipe/test-runs.jsonl "$@"; }
(run --regimes projector --seeds 0 && run --regimes --prior-weights 0.2 --seeds 2 4) > bench/results/student-recipe/test-a.log 2>&1 &
run --regimes --prior-weights 0.2 --seeds 0 1 3 > bench/results/student-recipe/test-b.log 2>&1 &
wait

grep -h test_top1 bench/results/student-recipe/test-runs.jsonl

#!/usr/bin/env bash
# The second IPC 50 pair's bundle (replicate-ipc50-split2.sh) read with --prior-weight 0.35, the weight split 0's
# screen left level with the default on the builder's hold-out and ahead on the foundation half
# (prior-ipc50-screen.sh), measured once on test on split 0 (prior-ipc50-test.sh: -0.74). Reported only: it
# decides nothing (the rule of replicate-ipc50-split2.sh); the same 5 seeds, ConvNet-3, 100 epochs, read with
# the tool of prior-ipc50-test.sh, and seed 0 at the bundle's own w = 0.2 through the same tool, to show the two
# tools' figures side by side. Two processes, one thread each.
set -ex
cd "$(dirname "$0")/../.."
bundles=(bench/results/cache/bundles/cifar10-ipc50-*.hello)   # this cache holds split 2's one IPC 50 bundle
[ ${#bundles[@]} -eq 1 ]
run() { OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --bundle "${bundles[0]}" \
  --teacher bench/results/cache/teacher/8db7174a4c0e1592/teacher_convnet3_epoch0015.safetensors \
  --original bench/results/cache/cifar10/split-2/original \
  --variant beta=1 --epochs 100 --test bench/results/cache/cifar10/test \
  --out bench/results/student-recipe/test-runs.jsonl "$@"; }
run --regimes --prior-weights 0.35 --seeds 0 2 4 > bench/results/student-recipe/ipc50-split2-w035-a.log 2>&1 &
(run --regimes --prior-weights 0.35 --seeds 1 3 && run --regimes projector --seeds 0) \
  > bench/results/student-recipe/ipc50-split2-w035-b.log 2>&1 &
wait
grep -h "$(basename "${bundles[0]}" .hello)" bench/results/student-recipe/test-runs.jsonl

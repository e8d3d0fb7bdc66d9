#!/usr/bin/env bash
# IPC 50 at the view-transfer budget of the per-image default (--view-transfer-epochs 1280: 1280 synthetic
# views per synthetic image; at real fraction 0.25, 96 synthetic views per step of 128, 500 images ->
# ceil(500 * 1280 / 96) = 6,667 steps, a check every 6,667 // 80 = 83 steps). Run with the commit before the
# option existed (e74a82e, a git worktree at /work/wt-old: the main checkout was being changed under it),
# as --view-transfer-steps 6667 --view-transfer-eval-every 83: the same fit (the checks draw their own seed). Everything else as ipc50-view6000.sh. The cache of earlier sessions was gone, so
# the foundation, the teacher and every student are new (the same code and seeds). Test, reported only.
# Seed 0's students ran in the session that built the bundle; a later session ran seeds 1 to 4 from the
# cached bundle (5 seeds, as every other IPC 50 row of the goal's).
set -ex
main="$(cd "$(dirname "$0")/../.." && pwd)"
cd /work/wt-old   # git worktree add /work/wt-old e74a82e
HF_HUB_OFFLINE=1 PYTHONPATH=/work/wt-old "$main/.venv/bin/python" bench/cifar10.py --cache "$main/bench/results/cache" --ipc 50 --seeds 0 1 2 3 4 --student-epochs 200 @50=100 \
  --students convnet3 --regimes projector teacher --teacher-epochs 15 --transfer-epochs 3 \
  --view-transfer-real-fraction 0.25 --view-transfer-lr 0.003 --view-transfer-steps 6667 \
  --view-transfer-eval-every 83 --jobs 2 --out "$main/bench/results/cifar10-ipc50-per-image"

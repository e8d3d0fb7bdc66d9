#!/usr/bin/env bash
# IPC 50 with the builder's default real transfer (10 epochs) instead of the CPU command's 3: the one change
# that moved IPC 10 on both pairs (transfer10-ipc10-*.sh). Everything else is the per-image-default IPC 50
# bundle's command (ipc50-per-image.sh, cifar10-ipc50-64290ae95e30fe70.hello: the cached split-0 foundation
# and 15-epoch teacher, 1,280 views of each of 500 images at real fraction 0.25, view lr 0.003, prior
# weight 0.2). That bundle was built at e74a82e; transfer10-ipc50-check.log is today's code run with its
# 3 epochs, stopped at view-transfer step 498: every logged loss and agreement is the old build's, so the
# two bundles differ in the real transfer alone. Run from the worktree /work/wt-bench (cache and .venv
# linked), whose paths match the IPC 10 10-epoch build's work directory, so its real-transfer stage is reused
# (the real transfer does not depend on the IPC). Only the bundle is wanted; it is screened on held-out
# images first (transfer10-ipc50-screen.sh).
set -ex
cd "$(dirname "$0")/../.."
log=bench/results/transfer10-ipc50-bench.log
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 50 --seeds 0 --students convnet3 \
  --regimes teacher --student-epochs 200 @50=100 --teacher-epochs 15 --transfer-epochs 10 \
  --view-transfer-real-fraction 0.25 --view-transfer-lr 0.003 --view-transfer-epochs 1280 --jobs 1 \
  --out bench/results/cifar10-transfer10-ipc50 > $log 2>&1 &
bench=$!
until grep -q "\] eval: " $log; do sleep 10; done
kill $bench

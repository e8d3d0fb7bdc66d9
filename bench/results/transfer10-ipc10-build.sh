#!/usr/bin/env bash
# The builder's default real transfer (10 epochs) in the bench's current IPC 10 CPU command, which runs 3
# (prior-ipc10-view1920-build.sh: the cached split-0 foundation and 15-epoch teacher, 1,920 views of each
# image at real fraction 0.25, prior weight 0.2). The H200 grid ran 10 epochs and came 0.4 closer to the
# teacher than the CPU at 300 student epochs; its real fraction (0.5) has since been screened without gain,
# so the real transfer's length is the one difference left unseparated. (cifar10-transfer10/ tried 10
# epochs on an older build: 6-epoch teacher, keep-best, 4,000 steps at lr 0.003.) Only the bundle is
# wanted (the run is stopped once it is written); it is screened on held-out images only
# (transfer10-ipc10-screen.sh).
set -ex
cd "$(dirname "$0")/../.."
log=bench/results/transfer10-ipc10-bench.log
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --seeds 0 --students convnet3 \
  --regimes teacher --student-epochs 200 --teacher-epochs 15 --transfer-epochs 10 \
  --view-transfer-real-fraction 0.25 --view-transfer-epochs 1920 --jobs 1 \
  --out bench/results/cifar10-transfer10-ipc10 > $log 2>&1 &
bench=$!
until grep -q "\] eval: " $log; do sleep 10; done
kill $bench

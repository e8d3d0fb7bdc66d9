#!/usr/bin/env bash
# transfer10-ipc10-build.sh on the second replicate's pair (--split-seed 1: its cached foundation and
# 15-epoch teacher; replicate-split1.sh is the same command with 3 real-transfer epochs). Started beside
# the split-0 screen so that the bundle is ready if the screen passes; its test figures are read only then
# (transfer10-ipc10-test.sh). Only the bundle is wanted (the run is stopped once it is written).
set -ex
cd "$(dirname "$0")/../.."
log=bench/results/transfer10-split1-bench.log
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --seeds 0 --students convnet3 \
  --regimes teacher --student-epochs 200 --teacher-epochs 15 --transfer-epochs 10 \
  --view-transfer-real-fraction 0.25 --view-transfer-epochs 1920 --split-seed 1 --jobs 1 \
  --out bench/results/cifar10-transfer10-split1 > $log 2>&1 &
bench=$!
until grep -q "\] eval: " $log; do sleep 10; done
kill $bench

#!/usr/bin/env bash
# A second pair at IPC 50, at the IPC 50 row's command (ipc50-per-image.sh: 3 real-transfer epochs, 1,280
# views of each image at real fraction 0.25 and lr 0.003, i.e. 6,667 view steps; prior weight 0.2, the
# default; ConvNet-3 students, 100 epochs, 5 seeds), on --split-seed 2: the foundation and the 15-epoch
# teacher of replicate-split2.sh (cached), new images and a new bundle. Nothing is chosen anew; the code
# is the current one (the view budget as --view-transfer-epochs, the option that replaced the old
# worktree's --view-transfer-steps 6667 at the same step count). Test, reported only.
# Rule, committed before the run: the IPC 50 goal's status at the default becomes the mean of the two
# pairs' 5-seed gaps (split 0 -1.16, and this one), whatever it is; no further pairs or seeds are added
# to that goal afterwards. The same bundle read at --prior-weight 0.35 (replicate-ipc50-split2-w035.sh)
# is reported beside it and decides nothing. Every stage and run is cached: rerunning resumes.
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 50 --seeds 0 1 2 3 4 --students convnet3 \
  --regimes projector teacher --student-epochs 200 @50=100 --teacher-epochs 15 --transfer-epochs 3 \
  --view-transfer-real-fraction 0.25 --view-transfer-lr 0.003 --view-transfer-epochs 1280 \
  --split-seed 2 --jobs 2 --out bench/results/cifar10-replicate-ipc50-split2 \
  >> bench/results/replicate-ipc50-split2.log 2>&1

#!/usr/bin/env bash
# A third replicate of the whole CPU bench at IPC 10, at the current IPC 10 CPU command (the builder's
# 10 real-transfer epochs, 1,920 views of each image at real fraction 0.25, prior weight 0.2; nothing
# chosen anew): --split-seed 2 draws other halves of CIFAR-10's training set, so the foundation
# (hello-rn-w32, 1,000 steps), the 15-epoch ConvNet-3 teacher, the images and the bundle are all new.
# Projector and online-teacher students, ConvNet-3, 200 epochs, 5 seeds, test (reported only).
# Rule, committed before the run: the IPC 10 goal's status becomes the mean of the three pairs' 5-seed
# gaps (split 0 -1.09, split 1 -0.90, and this one), whatever it is; no further pairs or seeds are
# added to that goal afterwards. Every stage and run is cached: rerunning the script resumes.
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --seeds 0 1 2 3 4 --students convnet3 \
  --regimes projector teacher --student-epochs 200 --teacher-epochs 15 --transfer-epochs 10 \
  --view-transfer-real-fraction 0.25 --view-transfer-epochs 1920 --split-seed 2 --jobs 2 \
  --out bench/results/cifar10-replicate-split2 >> bench/results/replicate-split2.log 2>&1

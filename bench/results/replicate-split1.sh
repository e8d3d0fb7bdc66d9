#!/usr/bin/env bash
# A second replicate of the whole CPU bench at IPC 10: --split-seed 1 draws other halves of CIFAR-10's
# training set, so the foundation (hello-rn-w32, 1,000 steps), the 15-epoch ConvNet-3 teacher, the images
# and the bundle are all new. The settings are the bench's chosen quarter-real CPU command
# (prior-ipc10-view1920-build.sh: 3 real-transfer epochs, 1,920 views of each image at real fraction
# 0.25, prior weight 0.2), nothing chosen anew. Projector and online-teacher students, ConvNet-3, 200
# epochs, 5 seeds, test (reported only). It asks how far the IPC 10 gap to the teacher (-1.43 on split 0's
# current pair, -0.98 / -1.02 on an earlier pair) moves with the foundation/teacher pair alone.
# Every stage and run is cached: rerunning the script resumes where it stopped.
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --seeds 0 1 2 3 4 --students convnet3 \
  --regimes projector teacher --student-epochs 200 --teacher-epochs 15 --transfer-epochs 3 \
  --view-transfer-real-fraction 0.25 --view-transfer-epochs 1920 --split-seed 1 --jobs 2 \
  --out bench/results/cifar10-replicate-split1 >> bench/results/replicate-split1.log 2>&1

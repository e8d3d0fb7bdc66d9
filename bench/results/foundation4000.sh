#!/usr/bin/env bash
# The CPU side of results/gpu-foundation.sh: the teacher15.sh settings (15-epoch teacher, 3 real-transfer
# epochs, 2000 view steps at real fraction 0.25, prior weight 0.2, students 200 epochs at beta 1) with one
# change, the stand-in foundation pretrained 4,000 steps instead of 1,000 (fixed before any run). Does a
# foundation whose features are worth more narrow the gap to the teacher? Test, reported only.
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --seeds 0 1 2 3 4 --students convnet3 \
  --regimes projector teacher hard --student-epochs 200 --teacher-epochs 15 --transfer-epochs 3 \
  --view-transfer-real-fraction 0.25 --foundation-steps 4000 --jobs 2 --out bench/results/cifar10-foundation4000

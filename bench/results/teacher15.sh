#!/usr/bin/env bash
# Does the H200 grid's stronger teacher explain its -1.2 against the CPU's -1.6? The CPU headline settings
# (3 real-transfer epochs, 2000 view steps at real fraction 0.25, prior weight 0.2, students 200 epochs at
# beta 1) with only the teacher changed: the bench's default 15 epochs (checkpoints 5, 10, 15) instead of 6.
# A new teacher means new images (RDED ranks with it), so every regime reruns on them. Test, reported
# only; nothing is chosen on it. (The recorded run went in two steps, seeds 0-2 of projector and teacher
# first: teacher15.log, then the rest from the cache: teacher15-rest.log.)
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --seeds 0 1 2 3 4 --students convnet3 \
  --regimes projector teacher hard random-real --student-epochs 200 --teacher-epochs 15 --transfer-epochs 3 \
  --view-transfer-real-fraction 0.25 --jobs 2 --out bench/results/cifar10-teacher15

#!/usr/bin/env bash
# The control for kl-transfer.sh: the teacher15.sh bundle (MSE) rebuilt by the code after b3f05c5, whose
# real transfer shuffles its batches in another order (the progress bar no longer iterates the loader
# twice). The KL bundle was built by that code, the recorded MSE bundle by the code before it; this build
# says how far the shuffle alone moves the students. A cache of its own (the foundation, teacher and
# unpacked data linked from the bench's) so that neither the cached bundle nor its students' runs are
# reused; projector labels only: the images, and so the teacher's runs, are the recorded bundle's.
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --seeds 0 1 2 3 4 --students convnet3 \
  --regimes projector --student-epochs 200 --teacher-epochs 15 --transfer-epochs 3 \
  --view-transfer-real-fraction 0.25 --jobs 2 --cache bench/results/cache-rebuild --out bench/results/cifar10-teacher15-rebuilt

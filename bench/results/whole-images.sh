#!/usr/bin/env bash
# The IPC 10 default build since the candidate crops' default became 1 / factor to 1 (whole images at
# the bench's factor 1; chosen on training images no student saw, bench/results/image-selection/), and
# since init draws its candidates from the training part only; the real transfer, foundation and teacher
# come from the cache. Every regime reruns: the images are new.
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --students convnet3 --regimes projector hard teacher random-real \
  --seeds 0 1 2 --student-epochs 200 resnet18_32=60 @50=100 resnet18_32@50=12 --teacher-epochs 6 \
  --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --jobs 2 \
  --view-transfer-steps 2000 --view-transfer-real-fraction 0.25 --out bench/results/cifar10-whole-images

#!/usr/bin/env bash
# The default IPC 10 build rebuilt from nothing in a fresh install, after the one-pass view transfer
# (fca8771) and --precision (a6556db): per-stage build time on the 2 cores, and whether the recorded
# figures (cifar10-prior-mix/, student-beta.sh: projector 52.1, hard 41.5, teacher 53.7) still hold.
# fp32 (the builder's CPU default). ConvNet-3 students at beta 1, seeds 0 1 2, test reported only.
set -ex
cd "$(dirname "$0")/../.."
common="--students convnet3 --student-epochs 200 resnet18_32=60 @50=100 resnet18_32@50=12 --teacher-epochs 6
  --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --jobs 2 --view-transfer-steps 2000
  --view-transfer-real-fraction 0.25 --student-beta 1 --prior-weight 0.2"
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --regimes projector hard teacher --seeds 0 1 2 \
  $common --out bench/results/cifar10-one-pass

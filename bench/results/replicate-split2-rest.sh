#!/usr/bin/env bash
# The third replicate's other IPC 10 regimes (replicate-split2.sh ran the projector and the online
# teacher): hard labels and a random real subset under the projector's labels, on the same cached
# foundation, teacher, images and bundle (the same command, other --regimes), ConvNet-3, 200 epochs,
# 5 seeds, test (reported only). Nothing is chosen on it.
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --seeds 0 1 2 3 4 --students convnet3 \
  --regimes hard random-real --student-epochs 200 --teacher-epochs 15 --transfer-epochs 10 \
  --view-transfer-real-fraction 0.25 --view-transfer-epochs 1920 --split-seed 2 --jobs 2 \
  --out bench/results/cifar10-replicate-split2-rest >> bench/results/replicate-split2-rest.log 2>&1

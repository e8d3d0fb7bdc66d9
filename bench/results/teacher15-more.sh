#!/usr/bin/env bash
# After teacher15.sh, on the same 15-epoch teacher and foundation (from the cache):
# 1. the IPC 10 bundle's ConvNet-3 students at the bench's own 300 epochs (the H200 grid's schedule;
#    on the 6-epoch teacher's bundle 300 epochs widened the gap from -1.6 to -2.0), projector and
#    online teacher, 5 seeds;
# 2. IPC 50 (view-transfer lr 0.003, the one the whole-image IPC 50 build was stable at; the real transfer
#    is shared with IPC 10), students 100 epochs, projector and online teacher, 3 seeds.
# Test, reported only.
set -ex
cd "$(dirname "$0")/../.."
common="--students convnet3 --regimes projector teacher --teacher-epochs 15 --transfer-epochs 3
  --view-transfer-real-fraction 0.25 --jobs 2"
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --seeds 0 1 2 3 4 --student-epochs 200 convnet3=300 \
  $common --out bench/results/cifar10-teacher15-epochs300
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 50 --seeds 0 1 2 --student-epochs 200 @50=100 \
  --view-transfer-lr 0.003 $common --out bench/results/cifar10-teacher15-ipc50

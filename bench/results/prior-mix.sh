#!/usr/bin/env bash
# The prior mix in the product (format 2.0): hello-build's default --prior-weight 0.2, chosen on held-out
# students (prior-labels.sh), written into the whole-image default IPC 10 and IPC 50 bundles (the same work
# directory and stages as cifar10-ipc10-9ff6e0e6cb64eea9 / cifar10-ipc50-546307030c0453ee: only the write
# step reruns). ConvNet-3 students at beta 1 through HelloDataset: IPC 10 projector and random-real with the
# 5 seeds of student-beta.sh, IPC 50 projector with the 3 seeds of student-beta-ipc50.sh. Hard-label and
# teacher students come from those scripts' runs. Test, reported only.
set -ex
cd "$(dirname "$0")/../.."
common="--students convnet3 --student-epochs 200 resnet18_32=60 @50=100 resnet18_32@50=12 --teacher-epochs 6
  --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --jobs 2 --view-transfer-steps 2000
  --view-transfer-real-fraction 0.25 --student-beta 1 --prior-weight 0.2"
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --regimes projector random-real --seeds 0 1 2 3 4 \
  $common --out bench/results/cifar10-prior-mix
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 50 --regimes projector --seeds 0 1 2 --view-transfer-lr 0.003 \
  $common --out bench/results/cifar10-prior-mix-ipc50

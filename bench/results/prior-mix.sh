#!/usr/bin/env bash
# The prior mix in the product (format 2.0): hello-build's default --prior-weight 0.2, chosen on held-out
# students (prior-labels.sh), built into the whole-image default IPC 10 bundle (the options of
# cifar10-ipc10-9ff6e0e6cb64eea9 plus the prior weight; its shared work directory last held another view
# transfer, so that stage reruns). ConvNet-3 students at beta 1 through HelloDataset, projector and
# random-real regimes, the 5 seeds of student-beta.sh; hard-label and teacher students come from that
# script's runs. Test, reported only. (IPC 50: prior-labels-ipc50.sh, the same mix read through
# Projector.from_bundle(prior_weight=0.2).)
set -ex
cd "$(dirname "$0")/../.."
common="--students convnet3 --student-epochs 200 resnet18_32=60 @50=100 resnet18_32@50=12 --teacher-epochs 6
  --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --jobs 2 --view-transfer-steps 2000
  --view-transfer-real-fraction 0.25 --student-beta 1 --prior-weight 0.2"
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --regimes projector random-real --seeds 0 1 2 3 4 \
  $common --out bench/results/cifar10-prior-mix

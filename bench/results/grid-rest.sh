#!/usr/bin/env bash
# The cells of the hello-rn-w32 grid that no session had run (a later session), on the default build
# (2000 synthetic-view steps, a quarter real views): the stored-labels regime (FKD/SRe2L-style teacher
# logits written per epoch and replayed) for ConvNet-3 at IPC 10 and 50, then ResNet-18 students at
# IPC 50 and IPC 10 in every regime. Epochs as the recorded tiny-ViT grid: ResNet-18 60 at IPC 10 and 12
# at IPC 50 (about as many steps), ConvNet-3 200 and 100. Each step only adds to the cache.
set -ex
common="--seeds 0 1 2 --student-epochs 200 resnet18_32=60 @50=100 resnet18_32@50=12 --teacher-epochs 6 \
  --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1 --jobs 2 \
  --view-transfer-steps 2000 --view-transfer-real-fraction 0.25"
out=bench/results/cifar10-grid-rest
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --students convnet3 --regimes stored $common --out $out/stored-ipc10
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 50 --students convnet3 --regimes stored $common --out $out/stored-ipc50
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 50 --students resnet18_32 --regimes projector hard teacher stored random-real \
  $common --out $out/resnet18-ipc50
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --students resnet18_32 --regimes projector hard teacher stored random-real \
  $common --out $out/resnet18-ipc10
# (stopped for time after seed 0's five runs; their table:)
# .venv/bin/python bench/cifar10.py --ipc 10 --students resnet18_32 --regimes projector hard teacher stored random-real \
#   ${common/--seeds 0 1 2/--seeds 0} --out $out/resnet18-ipc10 --report-only

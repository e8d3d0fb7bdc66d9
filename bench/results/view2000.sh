#!/usr/bin/env bash
# this session: the 2000-step synthetic-view transfer at IPC 10 (random-real added) and IPC 50, 3 seeds
set -x
common="--students convnet3 --student-epochs 200 @50=100 --teacher-epochs 6 --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1 --jobs 2"
view="--view-transfer-steps 2000 --view-transfer-real-fraction 0.25 --out bench/results/cifar10-view2000"
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --seeds 0 1 2 --regimes projector hard teacher random-real $view $common
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 50 --seeds 0 1 2 --regimes projector hard teacher random-real $view $common

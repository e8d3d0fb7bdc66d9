#!/usr/bin/env bash
# this session: the 4000-step synthetic-view transfer at IPC 10 at lr 0.003, 3 seeds (one CPU thread: the other core was busy).
# At the default lr 0.01 the 4000-step run diverged (selection agreement 0.698 at step 250 -> 0.120 at step 525; killed).
set -x
common="--students convnet3 --student-epochs 200 @50=100 --teacher-epochs 6 --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1 --jobs 1"
view="--view-transfer-steps 4000 --view-transfer-lr 0.003 --view-transfer-real-fraction 0.25 --out bench/results/cifar10-view4000"
OMP_NUM_THREADS=1 .venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --seeds 0 1 2 --regimes projector hard teacher $view $common

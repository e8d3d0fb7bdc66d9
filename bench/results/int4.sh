#!/usr/bin/env bash
# this session: students on the int4-requantized 2000-step IPC 10 bundle, same seeds as the fp16 ones
set -x
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --seeds 0 1 2 --regimes projector --delta-dtype int4 --view-transfer-steps 2000 --view-transfer-real-fraction 0.25 --out bench/results/cifar10-view2000-int4 --students convnet3 --student-epochs 200 @50=100 --teacher-epochs 6 --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1 --jobs 2

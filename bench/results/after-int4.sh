#!/usr/bin/env bash
# this session, after the int4 students: does LoRA capacity cap agreement? (rank 16 vs the default 8, same
# 1000-step view transfer); then IPC 50 with the 2000-step view transfer (projector, 3 seeds)
set -x
while pgrep -f "bench/results/int4.sh" >/dev/null; do sleep 10; done
common="--students convnet3 --student-epochs 200 @50=100 --teacher-epochs 6 --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1"
.venv/bin/python bench/view_transfer_sweep.py --variant steps=1000,real=0.25,rank=16 --ipc 10 $common
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 50 --seeds 0 1 2 --regimes projector --view-transfer-steps 2000 --view-transfer-real-fraction 0.25 --out bench/results/cifar10-view2000 $common --jobs 2

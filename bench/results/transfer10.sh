#!/usr/bin/env bash
# this session: the real transfer for the bench's default 10 epochs instead of 3 (its loss was still
# falling at 3), then the 4000-step synthetic-view transfer at lr 0.003 with a quarter of real views;
# IPC 10, projector students, 3 seeds, two at a time on one thread each.
set -x
source bench/results/students.sh
common="--students convnet3 --student-epochs 200 @50=100 --teacher-epochs 6 --teacher-checkpoints 3 --transfer-epochs 10 --foundation-steps 1000 --crop-scale 0.5 1 --ipc 10 --out bench/results/cifar10-transfer10"
.venv/bin/python bench/view_transfer_sweep.py --variant steps=4000,lr=0.003,real=0.25 $common
bundle=$(ls -t bench/results/cache/bundles/cifar10-ipc10-*.hello | head -1)
echo "bundle: $bundle"
students bench/results/cifar10-transfer10/ "$bundle"

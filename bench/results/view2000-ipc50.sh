#!/usr/bin/env bash
# this session, after the IPC 10 grid: IPC 50 with the 2000-step view transfer (projector, 3 seeds; hard and
# teacher seeds 0 and 1 come from the cache: same images), then the report over both IPCs
set -x
while pgrep -f "bench/cifar10.py --prior-weight 0 --ipc 10 --seeds" >/dev/null; do sleep 10; done
common="--students convnet3 --student-epochs 200 @50=100 --teacher-epochs 6 --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1 --jobs 2"
view="--view-transfer-steps 2000 --view-transfer-real-fraction 0.25 --out bench/results/cifar10-view2000"
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 50 --seeds 0 1 2 --regimes projector $view $common
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 50 --seeds 0 1 2 --regimes projector hard teacher random-real $view $common --report-only

#!/usr/bin/env bash
# the rest of this session's CIFAR-10 grid, in priority order (every step reuses the cache)
set -x
common="--students convnet3 --student-epochs 200 @50=100 --teacher-epochs 6 --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1 --jobs 2 --view-transfer-steps 300"  # the builder's default when this ran
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 50 --seeds 0 1 --regimes projector hard teacher $common
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --seeds 0 1 2 --regimes projector hard teacher random-real --ablation 1 3 4 $common
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 50 --seeds 0 1 2 --regimes projector hard teacher random-real --ablation 1 3 4 $common --report-only

#!/usr/bin/env bash
# The paper's ablation rows that the hello-rn-w32 bench had not run (a later session), ConvNet-3
# students, 3 seeds, beside the main 2000-step bundle's projector students (cached by
# bench/results/int4-kl.sh): row 6, the head alone fitted on frozen features (--lora-rank 0, a linear
# probe), then row 2, the LoRA transfer from the final teacher alone (RDED then ranks crops by that
# teacher, so the images differ from the trajectory's); neither has the synthetic-view transfer.
set -ex
common="--students convnet3 --student-epochs 200 @50=100 --teacher-epochs 6 --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1 --jobs 2"
view="--view-transfer-steps 2000 --view-transfer-real-fraction 0.25"
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --seeds 0 1 2 --regimes projector --ablation 6 2 $view $common \
  --out bench/results/cifar10-ablation-rows

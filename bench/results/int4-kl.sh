#!/usr/bin/env bash
# The int4 calibration's objective on the CIFAR bench (a later session; the cache rebuilt from nothing):
# the 2000-step IPC 10 bundle (view transfer at real fraction 0.25, as bench/results/view2000.sh),
# then (1) every int4 variant of bench/int4_variants.py with calibration under both objectives, 2,000
# views (log: int4-kl.log), and (2) ConvNet-3 students on the fp16 bundle and on its int4 copy
# calibrated as hello-build now does (300 steps, kl), 3 seeds each (bench/results/cifar10-view2000-int4-kl/).
set -ex
common="--students convnet3 --student-epochs 200 @50=100 --teacher-epochs 6 --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1 --jobs 2"
view="--view-transfer-steps 2000 --view-transfer-real-fraction 0.25"
# the bundle alone first (--report-only: no student runs yet), so that (1) can run on it
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --seeds 0 --regimes projector $view $common --report-only --out /tmp/hello-int4-kl-build
bundle=$(ls -t bench/results/cache/bundles/cifar10-ipc10-*.hello | grep -v -- -int | head -1)
.venv/bin/python bench/int4_variants.py "$bundle" --views 2000 --calibration-objectives kl mse 2>&1 | grep -v WARNING \
  | tee bench/results/int4-kl.log
.venv/bin/python bench/cifar10.py --prior-weight 0 --ipc 10 --seeds 0 1 2 --regimes projector --delta-dtype int4 $view $common \
  --out bench/results/cifar10-view2000-int4-kl

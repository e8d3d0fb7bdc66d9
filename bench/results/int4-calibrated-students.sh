#!/usr/bin/env bash
# this session: the 4000-step IPC 10 bundle requantized to int4 with calibration (300 steps, the
# builder's default), then its projector students as bench/cifar10.py trains them (hello eval,
# ConvNet-3, 200 epochs, seeds 0 1 2, two at a time on one thread each), to set beside the fp16
# bundle's 48.9 ± 0.2 (bench/results/cifar10-view4000/) on the same seeds.
set -ex
source bench/results/students.sh
out=bench/results/cifar10-int4-calibrated
mkdir -p $out
bundle=bench/results/cache/bundles/cifar10-ipc10-5c32904e351256aa-int4-calibrated.hello
[ -f $bundle ] || .venv/bin/hello requantize bench/results/cache/bundles/cifar10-ipc10-5c32904e351256aa.hello $bundle \
  --delta-dtype int4 --calibration-steps 300
students $out/ "$bundle"

#!/usr/bin/env bash
# this session: hard-label students on the final-teacher-only build's images (final-teacher.sh's
# bundle; the 4000-step build keeps the same images), to set the projector's students beside hard
# labels on the same images (hello eval, ConvNet-3, 200 epochs, seeds 0 1 2, two at a time).
set -ex
source bench/results/students.sh
out=bench/results/cifar10-final-teacher-4000
bundle=bench/results/cache/bundles/cifar10-ipc10-8eec066cd6327f43.hello
students $out/hard- "$bundle" --regime hard

#!/usr/bin/env bash
# this session: a random real subset (10 images per class of the original half, drawn per seed) under
# the 4000-step final-teacher-only projector's labels, as bench/cifar10.py's random-real regime runs
# it (hello eval, ConvNet-3, 200 epochs, seeds 0 1 2, two at a time on one thread each).
set -ex
source bench/results/students.sh
out=bench/results/cifar10-final-teacher-4000
bundle=bench/results/cache/bundles/cifar10-ipc10-a9f251498edcdc25.hello
students $out/random-real- "$bundle" --regime random-real --real bench/results/cache/cifar10/split-0/original

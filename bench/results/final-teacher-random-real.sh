#!/usr/bin/env bash
# this session: a random real subset (10 images per class of the original half, drawn per seed) under
# the 4000-step final-teacher-only projector's labels, as bench/cifar10.py's random-real regime runs
# it (hello eval, ConvNet-3, 200 epochs, seeds 0 1 2, two at a time on one thread each).
set -ex
out=bench/results/cifar10-final-teacher-4000
bundle=bench/results/cache/bundles/cifar10-ipc10-a9f251498edcdc25.hello
for seed in 0 1 2; do
  OMP_NUM_THREADS=1 .venv/bin/hello eval "$bundle" --val bench/results/cache/cifar10/test --epochs 200 --seed $seed --quiet \
    --regime random-real --real bench/results/cache/cifar10/split-0/original | tail -1 > $out/random-real-seed$seed.json &
  if [ $seed = 1 ]; then wait; fi
done
wait
cat $out/random-real-seed*.json

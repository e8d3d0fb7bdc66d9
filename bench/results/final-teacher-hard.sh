#!/usr/bin/env bash
# this session: hard-label students on the final-teacher-only build's images (final-teacher.sh's
# bundle; the 4000-step build keeps the same images), to set the projector's students beside hard
# labels on the same images (hello eval, ConvNet-3, 200 epochs, seeds 0 1 2, two at a time).
set -ex
out=bench/results/cifar10-final-teacher-4000
bundle=bench/results/cache/bundles/cifar10-ipc10-8eec066cd6327f43.hello
for seed in 0 1 2; do
  OMP_NUM_THREADS=1 .venv/bin/hello eval "$bundle" --val bench/results/cache/cifar10/test --epochs 200 --seed $seed --quiet \
    --regime hard | tail -1 > $out/hard-seed$seed.json &
  if [ $seed = 1 ]; then wait; fi
done
wait
cat $out/hard-seed*.json

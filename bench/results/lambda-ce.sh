#!/usr/bin/env bash
# this session: a heavier hard-label CE in both transfers (--lambda-ce 1 against the default 0.1), to keep
# the CLIP prior's accuracy while imitating; 4000 view steps at lr 0.003 as the 4000-step bundle. Then the
# projector-label students, 3 seeds, two at a time on one thread each.
set -x
common="--students convnet3 --student-epochs 200 @50=100 --teacher-epochs 6 --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1 --ipc 10 --out bench/results/cifar10-lambda-ce"
ce=${1:-1}
.venv/bin/python bench/view_transfer_sweep.py --variant steps=4000,lr=0.003,real=0.25,ce=$ce $common
bundle=$(ls -t bench/results/cache/bundles/cifar10-ipc10-*.hello | head -1)
echo "bundle: $bundle"
for seed in 0 1 2; do
  OMP_NUM_THREADS=1 .venv/bin/hello eval "$bundle" --val bench/results/cache/cifar10/test --epochs 200 --seed $seed --quiet > bench/results/cifar10-lambda-ce/ce$ce-seed$seed.json &
  if [ $seed = 1 ]; then wait; fi
done
wait
cat bench/results/cifar10-lambda-ce/ce$ce-seed*.json

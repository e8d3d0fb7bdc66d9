#!/usr/bin/env bash
# this session: the 2000-step synthetic-view recipe with the real transfer imitating the final teacher
# only (no weak-teacher trajectory), to test whether students follow the label source's own accuracy;
# then its students, as bench/cifar10.py trains them (hello eval, ConvNet-3, 200 epochs, seeds 0 1 2).
set -ex
common="--students convnet3 --student-epochs 200 @50=100 --teacher-epochs 6 --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1"
.venv/bin/python bench/view_transfer_sweep.py --variant steps=2000,real=0.25,teachers=last --ipc 10 $common
bundle=$(grep -o 'wrote [^:]*\.hello' bench/results/final-teacher.log | tail -1 | cut -d' ' -f2)
for seed in 0 1 2; do
  OMP_NUM_THREADS=1 .venv/bin/hello eval "$bundle" --val bench/results/cache/cifar10/test --epochs 200 --seed $seed --quiet \
    | tail -1 > bench/results/final-teacher-seed$seed.json &
  if [ $seed = 1 ]; then wait; fi
done
wait
# then the online teacher on the same images (the final-teacher-only build's RDED picked other images)
for seed in 0 1 2; do
  OMP_NUM_THREADS=1 .venv/bin/hello eval "$bundle" --val bench/results/cache/cifar10/test --epochs 200 --seed $seed --quiet \
    --regime teacher --teacher bench/results/cache/teacher/9f840154b672d4f9/teacher_convnet3_epoch0006.safetensors | tail -1 > bench/results/final-teacher-teacher-seed$seed.json &
done
wait

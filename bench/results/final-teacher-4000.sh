#!/usr/bin/env bash
# this session: the final teacher alone in both transfers (the build whose images served both label
# sources best, 49.4 vs 51.0 at 2000 view steps) with the longer view transfer that raised the
# trajectory build's students (4000 steps at lr 0.003, a quarter real views); then its projector
# students, as bench/cifar10.py trains them (hello eval, ConvNet-3, 200 epochs, seeds 0 1 2, two at a
# time on one thread each). The online teacher's students on these images are final-teacher.sh's
# (the view transfer does not change the images; the log checks that they are the same).
set -ex
source bench/results/students.sh
out=bench/results/cifar10-final-teacher-4000
mkdir -p $out
common="--students convnet3 --student-epochs 200 @50=100 --teacher-epochs 6 --teacher-checkpoints 3 --transfer-epochs 3 --foundation-steps 1000 --crop-scale 0.5 1"
.venv/bin/python bench/view_transfer_sweep.py --variant steps=4000,lr=0.003,real=0.25,teachers=last --ipc 10 $common --out $out
bundle=$(ls -t bench/results/cache/bundles/cifar10-ipc10-*.hello | grep -v int4 | head -1)
echo "bundle: $bundle"
earlier=$(grep -o 'wrote [^:]*\.hello' bench/results/final-teacher.log | tail -1 | cut -d' ' -f2)
.venv/bin/python - "$bundle" "bench/results/cache/bundles/$(basename "$earlier")" <<'PY'
import sys
import torch
from hello_format.bundle import Bundle
pixels = []
for path in sys.argv[1:]:
    with Bundle.open(path) as b:
        pixels.append(b.images())
print("images identical to final-teacher.sh's bundle:", torch.equal(*pixels))
PY
students $out/ "$bundle"

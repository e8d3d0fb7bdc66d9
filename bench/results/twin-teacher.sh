#!/usr/bin/env bash
# How close can any label source come to the online teacher's students? A twin of the teacher (the same
# ConvNet-3, images and 6 epochs, seed 1: second-teacher.sh, 82.0 % agreement on CutMixed report views,
# 64.9 % test top-1 against the teacher's 64.5 %) labels the students online, on the whole-image default
# IPC 10 bundle at beta 1, the 5 seeds of student-beta.sh. Seed 0 of the bench's own teacher through the
# same command checks that this path reproduces the recorded teacher row (52.98). Test, reported only.
set -ex
cd "$(dirname "$0")/../.."
CACHE=bench/results/cache
BUNDLE=$CACHE/bundles/cifar10-ipc10-9ff6e0e6cb64eea9.hello
OUT=bench/results/cifar10-twin-teacher
mkdir -p $OUT
run() {  # name teacher-file seed
  [ -s $OUT/$1-seed$3.json ] || OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/hello eval $BUNDLE --val $CACHE/cifar10/test \
    --regime teacher --teacher $2 --epochs 200 --beta 1 --seed $3 --quiet > $OUT/$1-seed$3.json
}
TWIN=$CACHE/teacher/second-seed1/teacher_convnet3_epoch0006.safetensors
OWN=$CACHE/teacher/9f840154b672d4f9/teacher_convnet3_epoch0006.safetensors
run twin $TWIN 0 & run own $OWN 0 & wait
run twin $TWIN 1 & run twin $TWIN 2 & wait
run twin $TWIN 3 & run twin $TWIN 4 & wait
grep -h -o '"top1": [0-9.]*' $OUT/*.json

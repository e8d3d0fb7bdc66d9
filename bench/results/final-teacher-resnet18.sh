#!/usr/bin/env bash
# this session: ResNet-18 students (the zoo's 32-px resnet18_32, 60 epochs as in bench/cifar10.py's
# grid) on the final-teacher 4000-step build's images, under its projector, hard labels and the online
# final teacher (hello eval; seeds 0 1 2; two runs at a time on one thread each): whether the labels'
# gain holds for a student family other than the teacher's ConvNet-3.
set -ex
out=bench/results/cifar10-final-teacher-4000/resnet18
mkdir -p $out
bundle=bench/results/cache/bundles/cifar10-ipc10-a9f251498edcdc25.hello
teacher=bench/results/cache/teacher/9f840154b672d4f9/teacher_convnet3_epoch0006.safetensors
run() {  # regime seed
  extra=(); if [ $1 = teacher ]; then extra=(--teacher $teacher); fi
  OMP_NUM_THREADS=1 .venv/bin/hello eval "$bundle" --student resnet18_32 --epochs 60 --val bench/results/cache/cifar10/test \
    --seed $2 --regime $1 "${extra[@]}" --quiet | tail -1 > $out/$1-seed$2.json
}
jobs=(projector:0 hard:0 teacher:0 projector:1 hard:1 teacher:1 projector:2 hard:2 teacher:2)
for ((i = ${SKIP:-0}; i < ${#jobs[@]}; i += 2)); do
  run ${jobs[i]%:*} ${jobs[i]#*:} &
  if [ $((i + 1)) -lt ${#jobs[@]} ]; then run ${jobs[i+1]%:*} ${jobs[i+1]#*:} & fi
  wait
done
cat $out/*.json

#!/usr/bin/env bash
# this session: the student recipe's loss, chosen on held-out real images (the builder's hold-out of the
# original half: 1,250 images neither the teacher, the transfers nor the students ever saw), never on
# test: the 8000-step IPC 10 bundle's projector labels and the online teacher's, under the recorded
# mse_ce (beta 0.1, the paper's), KL at T 20 (SRe2L/RDED) and KL at T 4; 3 seeds; two runs at a time
# on one thread each.
set -x
bundle=bench/results/cache/bundles/cifar10-ipc10-c7d9f59678c8a166.hello
teacher=bench/results/cache/teacher/9f840154b672d4f9/teacher_convnet3_epoch0006.safetensors
out=bench/results/cifar10-student-recipe
holdout=bench/results/cache/cifar10/split-0/holdout
mkdir -p $out
.venv/bin/python - <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "bench")
from cifar10 import link_or_copy
from hello_build.data import holdout_split, scan_image_folder
original = Path("bench/results/cache/cifar10/split-0/original")
target = Path("bench/results/cache/cifar10/split-0/holdout")
index = scan_image_folder(original, check_headers=False)
_, held = holdout_split(index, 0.05, 0)   # the bench's build: holdout 0.05, seed 0
for i in held:
    path, label = index.samples[i]
    link = target / index.classes[label] / Path(path).name
    link.parent.mkdir(parents=True, exist_ok=True)
    link_or_copy(Path(path), link)   # a hard link: hello eval --val follows no symbolic link out of the folder
print(f"hold-out: {len(held)} images in {target}")
PY
run() {  # name regime seed extra...
  local name=$1 regime=$2 seed=$3; shift 3
  OMP_NUM_THREADS=1 .venv/bin/hello eval $bundle --val $holdout --regime $regime --teacher $teacher --epochs 200 \
    --seed $seed --quiet "$@" | tail -1 > $out/$name-$regime-seed$seed.json
}
for seed in 0 1 2; do
  for regime in projector teacher; do
    run mse_ce $regime $seed --loss mse_ce &
    run kl20 $regime $seed --loss kl --temperature 20 &
    wait
    run kl4 $regime $seed --loss kl --temperature 4
  done
done

#!/usr/bin/env bash
# Run only if prior-ipc10-view1920-screen.sh put the 1,920-view bundle ahead on both held-out sets: its
# projector students once on test (5 seeds, reported only; its images are the 1,280-view bundle's, so
# the online teacher's students of prior-ipc10-build.sh are its baseline), and, beside them, the
# hard-label students on those images (the goal's other baseline; `hello eval` via the bench, test).
# Two processes, one thread each. (This session ran seed 0 so, then seeds 1-2 and 3-4 of the projector in two
# processes of their own once the hard-label students ended: seeded runs, the same figures either way.)
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py \
  --bundle bench/results/cache/bundles/cifar10-ipc10-e9a1fd65ec910716.hello \
  --teacher bench/results/cache/teacher/152a4b97eb301f94/teacher_convnet3_epoch0015.safetensors \
  --variant beta=1 --test bench/results/cache/cifar10/test --out bench/results/student-recipe/test-runs.jsonl \
  --regimes projector --seeds 0 1 2 3 4 > bench/results/student-recipe/ipc10-view1920-test.log 2>&1 &
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --seeds 0 1 2 3 4 --students convnet3 \
  --regimes hard --student-epochs 200 --teacher-epochs 15 --transfer-epochs 3 \
  --view-transfer-real-fraction 0.25 --jobs 1 --out bench/results/cifar10-prior-ipc10-hard \
  > bench/results/prior-ipc10-hard.log 2>&1 &
wait
grep -h e9a1fd65ec910716 bench/results/student-recipe/test-runs.jsonl

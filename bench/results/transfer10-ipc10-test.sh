#!/usr/bin/env bash
# Run only if transfer10-ipc10-screen.sh put the 10-epoch real transfer ahead of the 3-epoch one on both
# held-out sets (it did: foundation half 52.38 against 52.16, hold-out 53.88 against 53.36): its projector students once on test, 5 seeds, on split 0 (baseline: the online teacher's
# students of prior-ipc10-build.sh, 53.6 ± 0.3, and the 3-epoch bundle's 52.2 ± 0.5) and on split 1
# (transfer10-split1-build.sh's bundle; baseline: replicate-split1.sh's teacher students, 51.9 ± 0.8, and its
# 3-epoch bundle's 50.9 ± 0.5). The images of each split are its 3-epoch bundle's (RDED ranks crops with
# the teacher), so those teacher students are the baseline. Reported only. Two processes, one thread each.
set -ex
cd "$(dirname "$0")/../.."
bundle() { echo bench/results/cache/bundles/$(grep -o "eval: cifar10-ipc10-[0-9a-f]*\.hello" bench/results/$1 | head -1 | cut -d' ' -f2); }
run() {  # split log teacher-digest seeds...
  local split=$1 log=$2 teacher=$3; shift 3
  HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --bundle $(bundle $log) \
    --teacher bench/results/cache/teacher/$teacher/teacher_convnet3_epoch0015.safetensors \
    --original bench/results/cache/cifar10/split-$split/original \
    --variant beta=1 --test bench/results/cache/cifar10/test --out bench/results/student-recipe/test-runs.jsonl \
    --regimes projector --seeds "$@"
}
# bash transfer10-ipc10-test.sh 0, then 1 once transfer10-split1-build.sh has written its bundle.
log=$([ "$1" = 0 ] && echo transfer10-ipc10-bench.log || echo transfer10-split1-bench.log)
teacher=$([ "$1" = 0 ] && echo 152a4b97eb301f94 || echo 184febaf734d5684)
run $1 $log $teacher 0 1 2 > bench/results/student-recipe/ipc10-transfer10-split$1-test-a.log 2>&1 &
run $1 $log $teacher 3 4 > bench/results/student-recipe/ipc10-transfer10-split$1-test-b.log 2>&1 &
wait
grep -h "$(basename $(bundle $log))" bench/results/student-recipe/test-runs.jsonl

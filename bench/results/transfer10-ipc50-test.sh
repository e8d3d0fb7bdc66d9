#!/usr/bin/env bash
# Run only if transfer10-ipc50-screen.sh put the 10-epoch real transfer ahead of the 3-epoch one on both
# held-out sets: its projector students once on test, 5 seeds, ConvNet-3 at beta 1 for 100 epochs, split 0.
# Baselines (ipc50-per-image.sh, cifar10-ipc50-per-image/): the online teacher's students 62.1 ± 0.2 and the
# 3-epoch bundle's 60.9 ± 0.3, on the same images (RDED ranks the crops with the teacher; the two bundles'
# image tensors are compared below). Reported only. Two processes, one thread each.
set -ex
cd "$(dirname "$0")/../.."
bundle=bench/results/cache/bundles/$(grep -o "eval: cifar10-ipc50-[0-9a-f]*\.hello" bench/results/transfer10-ipc50-bench.log | head -1 | cut -d' ' -f2)
HF_HUB_OFFLINE=1 .venv/bin/python - $bundle bench/results/cache/bundles/cifar10-ipc50-64290ae95e30fe70.hello <<'PY'
import sys
from safetensors import safe_open
a, b = (safe_open(p, "pt") for p in sys.argv[1:])
print("same images:", all(a.get_tensor(k).equal(b.get_tensor(k)) for k in a.keys() if k.startswith("images")))
PY
run() {
  HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --bundle $bundle \
    --teacher bench/results/cache/teacher/152a4b97eb301f94/teacher_convnet3_epoch0015.safetensors \
    --variant beta=1 --epochs 100 --test bench/results/cache/cifar10/test \
    --out bench/results/student-recipe/test-runs.jsonl --regimes projector --seeds "$@"
}
run 0 1 2 > bench/results/student-recipe/ipc50-transfer10-test-a.log 2>&1 &
run 3 4 > bench/results/student-recipe/ipc50-transfer10-test-b.log 2>&1 &
wait
grep -h "$(basename $bundle)" bench/results/student-recipe/test-runs.jsonl

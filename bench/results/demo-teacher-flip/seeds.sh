#!/usr/bin/env bash
# The demo as it ships after its teacher stopped flipping (TEACHER_TRAINING hflip 0), seeds 0 1 2, alone on the cores.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD"
grep -m1 "model name" /proc/cpuinfo
for seed in 0 1 2; do
  echo "== seed $seed"
  .venv/bin/python -c "import hello_build.demo as d; d.run_demo('/tmp/demo-$seed.hello', seed=$seed, progress=False)" 2>&1 \
    | grep -v "transfer epoch\|view transfer step\|WARN"
done

#!/usr/bin/env bash
# The demo as it ships (convnet3_w32 teacher and students, precision auto = fp32 on a CPU), seed by seed,
# then its settings on the demo sweep's validation digits (seed 0's split, 3 student seeds).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD"  # this checkout, not an editable install elsewhere
for seed in 0 1 2; do
  echo "== seed $seed"
  .venv/bin/python -c "import hello_build.demo as d; d.run_demo('/tmp/demo-$seed.hello', seed=$seed, progress=False)" 2>&1 \
    | grep -v "transfer epoch\|view transfer step\|WARN"
done
echo "== validation digits (bench/demo_sweep.py --variant base)"
.venv/bin/python bench/demo_sweep.py --variant base 2>&1 | grep -v "transfer epoch\|view transfer step\|WARN"

#!/usr/bin/env bash
# The demo at fp32 and at bf16 (what it picks on a CPU with native bf16), seed by seed, each pair back to
# back on the same cores: times and the three students' test top-1 (seed0.log: seed 0, the same two runs
# made before this file existed; seeds12.log: seeds 1 2).
# PRECISIONS="bf16" runs one of them.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export HF_HUB_OFFLINE=1
seeds=("$@"); [ ${#seeds[@]} -gt 0 ] || seeds=(0 1 2)
for seed in "${seeds[@]}"; do
  for precision in ${PRECISIONS:-fp32 bf16}; do
    echo "== seed $seed, $precision"
    .venv/bin/python -c "import hello_build.demo as d; d.run_demo('/tmp/demo-$precision-$seed.hello', seed=$seed, progress=False, precision='$precision')" 2>&1 \
      | grep -v "transfer epoch\|view transfer step\|WARN"
  done
done

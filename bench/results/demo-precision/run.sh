#!/usr/bin/env bash
# The demo's ConvNets under bf16 autocast against fp32, on validation digits (never the demo's test digits):
# each precision prepares its own foundation model and teacher (seed 0's split), builds the demo's bundle
# and trains its three students for seeds 0 1 2. Run one after the other on the 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export HF_HUB_OFFLINE=1
for precision in fp32 bf16; do
  /usr/bin/time -f "%e s wall" .venv/bin/python bench/demo_sweep.py --variant base --precision $precision \
    --work bench/results/cache/demo-precision-$precision
done

#!/usr/bin/env bash
# Ran on an uncommitted working tree whose demo trained its ConvNets at bf16 but built (the stand-in CLIP's
# passes) at fp32, a configuration dropped (README.md): on validation digits (its fp32 row is run.log's), then
# on the test digits, seeds 0 1 2. With the committed code it reruns the bf16 demo.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export HF_HUB_OFFLINE=1
.venv/bin/python bench/demo_sweep.py --variant base --precision bf16 --work bench/results/cache/demo-precision-bf16
PRECISIONS=bf16 bash bench/results/demo-precision/seeds.sh 0 1 2

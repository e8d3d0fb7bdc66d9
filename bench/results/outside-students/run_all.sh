#!/bin/bash
# The whole table, one job at a time, from the repository root, on the demo bundle that `bash dev.sh demo`
# builds at seed 0 (the logged results: manifest sha256 67d11cda3e7c1e5c..., 5,485,850 bytes):
#   bash bench/results/outside-students/run_all.sh && python3 bench/results/outside-students/table.py test.jsonl
set -euo pipefail
export HF_HUB_OFFLINE=1
for seed in 0 1 2; do for loop in sgdkl adamce; do for family in mlp mobilenet vit resnet; do for labels in hard hello; do
  .venv/bin/python bench/results/outside-students/students.py --family $family --loop $loop --labels $labels \
      --seed $seed --eval test --out test.jsonl
done; done; done; done

#!/usr/bin/env bash
# Does the CLIP prior add? Students labelled by the projector's logits interpolated toward its zero-shot
# projector's (the same bundle with every delta off, which any reader regenerates for free), screened on
# held-out images only (bench/student_recipe.py: the builder's hold-out and the foundation half), the
# whole-image default IPC 10 bundle at beta 1; the projector and teacher rows at beta 1 are already in
# runs.jsonl. Two processes split the seeds (one thread each).
set -ex
cd "$(dirname "$0")/../.."
for seed in 0 1; do
  HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --variant beta=1 --regimes projector teacher \
    --prior-weights ${WEIGHTS:-0.2 0.4} --seeds $seed > bench/results/student-recipe/prior-seed$seed.log 2>&1 &
done
wait
HF_HUB_OFFLINE=1 .venv/bin/python bench/student_recipe.py --variant beta=1 --regimes projector teacher \
  --prior-weights ${WEIGHTS:-0.2 0.4} --seeds 0 1 | tail -12

#!/usr/bin/env bash
# IPC 10's share of the CLIP prior with the bench's 15-epoch teacher (the cached 152a4b97 teacher, 71.9 %,
# and foundation 5f0c9370, 67.1 % zero-shot; the IPC 50 prior screen's). The IPC 10 bundle of the current
# defaults (w = 0.2 recorded), built from those, and the online teacher's students on its images (test,
# 5 seeds; they read no projector label, so they say nothing about w). No projector student reads test
# here: w is screened on held-out images first (prior-ipc10-screen.sh).
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --seeds 0 1 2 3 4 --students convnet3 \
  --regimes teacher --student-epochs 200 --teacher-epochs 15 --transfer-epochs 3 \
  --view-transfer-real-fraction 0.25 --jobs 2 --out bench/results/cifar10-prior-ipc10

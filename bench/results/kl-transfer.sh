#!/usr/bin/env bash
# The last transfer option not yet tried on CIFAR-10: --transfer-loss kl (KL of softmaxes at T = 1, in both
# transfer phases) against the MSE of logits the paper uses. Everything else as teacher15.sh (15-epoch
# teacher, the 1,000-step foundation, 3 real-transfer epochs, 2000 view steps at real fraction 0.25, prior
# weight 0.2, students 200 epochs). The build prints its held-out fidelity (the choice's criterion); the
# students' test top-1 is reported only. Log: results/kl-transfer.log.
set -ex
cd "$(dirname "$0")/../.."
HF_HUB_OFFLINE=1 .venv/bin/python bench/cifar10.py --ipc 10 --seeds 0 1 2 3 4 --students convnet3 \
  --regimes projector teacher --student-epochs 200 --teacher-epochs 15 --transfer-epochs 3 \
  --view-transfer-real-fraction 0.25 --transfer-loss kl --jobs 2 --out bench/results/cifar10-kl-transfer

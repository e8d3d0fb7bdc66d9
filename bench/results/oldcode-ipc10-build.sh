#!/usr/bin/env bash
# Code or pair? The IPC 10 gap went from -0.98 (teacher15-rebuilt.sh, code at 70334c5, an earlier
# foundation and 72.4 % teacher) to -1.43 (prior-ipc10-view1920, the current code, the current cached
# foundation 5f0c9370ea2cb367 and 71.9 % teacher 152a4b97eb301f94). This rebuilds teacher15-rebuilt.sh's
# bundle with the code of 70334c5 (a git worktree) from the *current* foundation and teacher (linked into
# a cache of its own, with a fresh work directory, so no stage of the current code is reused). Same
# images (whole images; RDED ranks them with the teacher alone), 2,000 view steps at real fraction 0.25:
# the settings of the 1,920-view bundle.
# (Run once and stopped by hand at view-transfer step 150 of 2,000: up to there the old code printed every
# figure of the current code's build to the digit (real-transfer losses 2.2195 / 1.8380 / 1.6789, held-out
# agreement 0.602 and KL 0.327 after it, view-transfer loss and selection agreement at each of the six checks;
# log: bench/results/oldcode-ipc10-bench.log against prior-ipc10-view1920-bench.log and ipc50-per-image-build.log).
# The same computation from the same pair as far as it ran: the pair, not the code, moved the gap.)
# Run from the worktree: WT=/work/wt-70334c5 bash bench/results/oldcode-ipc10-build.sh
set -ex
cd "${WT:?the 70334c5 worktree, with bench/results/cache linking the bench cache foundation, teacher, cifar10}"
log=bench/results/oldcode-ipc10-bench.log
PYTHONPATH=$PWD HF_HUB_OFFLINE=1 /work/main/.venv/bin/python bench/cifar10.py --ipc 10 --seeds 0 --students convnet3 \
  --regimes projector --student-epochs 200 --teacher-epochs 15 --transfer-epochs 3 \
  --view-transfer-real-fraction 0.25 --jobs 1 --out bench/results/cifar10-oldcode > $log 2>&1 &
bench=$!
until grep -q "\] eval: " $log; do kill -0 $bench || exit 1; sleep 10; done
kill $bench || true

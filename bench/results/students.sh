# Sourced by the experiment scripts beside it (run from the repository root).
# students PREFIX BUNDLE [hello eval options...]: ConvNet-3 students of BUNDLE, 200 epochs, on the
# CIFAR-10 test split, seeds 0 1 2, two at a time on one thread each; each run's JSON line goes to
# PREFIXseedN.json, and all of them are printed at the end.
students() {
  local prefix=$1 bundle=$2 seed
  shift 2
  for seed in 0 1 2; do
    OMP_NUM_THREADS=1 .venv/bin/hello eval "$bundle" --val bench/results/cache/cifar10/test --epochs 200 --seed $seed \
      --quiet "$@" | tail -1 > "${prefix}seed$seed.json" &
    if [ $seed = 1 ]; then wait; fi
  done
  wait
  cat "${prefix}"seed*.json
}

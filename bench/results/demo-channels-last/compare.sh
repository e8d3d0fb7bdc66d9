#!/usr/bin/env bash
# The demo with hello-build's --channels-last default (3f7d67c) against --no-channels-last (the contiguous
# layout every earlier demo used), alone on the cores: seed 0 of each back to back, then seeds 1 and 2
# (compare.log); with "pair", a second pair of seed-0 demos only (pair.log: the first pair's times differed
# more than bench/memory_format.py's ratios).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD"
grep -m1 "model name" /proc/cpuinfo
demo() {   # channels_last (True/False), seed
  .venv/bin/python -c "
import hello_build.demo as d
options = d.demo_options
d.demo_options = lambda *args, **kwargs: options(*args, channels_last=$1, **kwargs)
d.run_demo('/tmp/demo-$1-$2.hello', seed=$2, progress=False)" 2>&1 | grep -v "transfer epoch\|view transfer step\|WARN"
}
echo "== seed 0, --no-channels-last"; demo False 0
if [ "${1:-}" = pair ]; then
  echo "== seed 0, --channels-last (the default)"; demo True 0
else
  for seed in 0 1 2; do echo "== seed $seed, --channels-last (the default)"; demo True "$seed"; done
fi

#!/usr/bin/env bash
# A second pair of seed-0 demos, --no-channels-last then --channels-last, after compare.sh (its pair's
# times differed more than bench/memory_format.py's ratios); alone on the cores.
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
echo "== seed 0, --channels-last (the default)"; demo True 0

#!/usr/bin/env bash
# The demo at the students' new default beta 1 (was 0.1), seeds 0, 1 and 2 (each its own split of the
# digits, foundation, teacher and build), one after another with nothing else of ours running.
set -ex
cd "$(dirname "$0")/../.."
for s in 0 1 2; do
  HF_HUB_OFFLINE=1 .venv/bin/python -c "import hello_build.demo as d; d.run_demo('/tmp/demo-seed$s.hello', seed=$s, progress=False)"
done

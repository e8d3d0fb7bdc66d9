"""The demo's build (1000 view-transfer steps, fp32): seconds per stage, for the code on PYTHONPATH.
Run for the commit before the one-pass view transfer and for the one after, back to back:

    git worktree add /tmp/old a7af0b0
    for tree in /tmp/old .; do HF_HUB_OFFLINE=1 PYTHONPATH=$tree .venv/bin/python bench/results/demo-precision/one_pass.py; done
"""
import tempfile
import time
from pathlib import Path
import hello_build.demo as d
from hello_build.pipeline import build
print(d.__file__)
work = Path(tempfile.mkdtemp())
parts = d.digits_split(0)
d.prepare(parts, work/"train", work/"test", work/"teacher", work/"base.safetensors", time.perf_counter(), progress=False, seed=0)
files = sorted((work/"teacher").glob("teacher_convnet3_epoch*.safetensors"))
opts = d.demo_options(work/"train", work/"out.hello", files, work/"base.safetensors", work/"build", seed=0, student_epochs=600)
r = build(opts, progress=False, log=lambda m: None)
print({k: round(v, 1) for k, v in r["timings"].items()}, r["view_transfer"]["kept_selection_agreement"], flush=True)

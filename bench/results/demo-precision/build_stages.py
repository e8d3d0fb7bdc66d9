"""The demo's build at fp32 and at bf16 autocast (``--precision``), alternated twice in one process on
this CPU: seconds per stage. The demo's preparation (foundation model, teacher) once, at fp32.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/results/demo-precision/build_stages.py 300 fp32 bf16 fp32 bf16
"""

import sys
import tempfile
import time
from pathlib import Path

import hello_build.demo as demo
from hello_build.pipeline import build

work = Path(tempfile.mkdtemp(prefix="hello-precision-"))
parts = demo.digits_split(0)
demo.prepare(parts, work / "train", work / "test", work / "teacher", work / "base.safetensors", time.perf_counter(),
             progress=False, seed=0)
files = sorted((work / "teacher").glob("teacher_convnet3_epoch*.safetensors"))
for run, precision in enumerate(sys.argv[2:]):
    options = demo.demo_options(work / "train", work / f"{run}.hello", files, work / "base.safetensors", work / f"build-{run}",
                                seed=0, student_epochs=demo.STUDENT_EPOCHS, view_transfer_steps=int(sys.argv[1]),
                                precision=precision)
    started = time.perf_counter()
    timings = build(options, progress=False, log=lambda message: None)["timings"]
    print(precision, f"build {time.perf_counter() - started:.1f} s", {k: round(v, 1) for k, v in timings.items()}, flush=True)

"""The examples run as a user would run them: make the tiny bundle, then train a student on it."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

from hello_format.bundle import Bundle

ROOT = Path(__file__).resolve().parent.parent


def run_example(script, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.run([sys.executable, str(ROOT / "examples" / script), *map(str, args)],
                             capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert process.returncode == 0, process.stderr[-2000:]
    return process.stdout


def test_train_student_example_on_the_tiny_bundle(tmp_path):
    bundle = tmp_path / "tiny.hello"
    run_example("make_tiny_bundle.py", bundle, "--classes", "3", "--ipc", "6")
    with Bundle.open(bundle, verify=True) as opened:
        assert opened.num_images == 18 and opened.manifest["base"]["source"] == "embedded"
    out = run_example("train_student.py", bundle, "--epochs", "2", "--batch-size", "8", "--device", "cpu")
    losses = [float(x) for x in re.findall(r"^epoch \d+/2 +loss (\S+)", out, flags=re.MULTILINE)]
    assert len(losses) == 2, out
    assert all(math.isfinite(loss) and loss > 0 for loss in losses), out

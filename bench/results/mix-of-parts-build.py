"""Build the demo (seed S) keeping its teacher, foundation and bundle in bench/results/cache/mix-of-parts/S."""
import sys, time
from pathlib import Path
import hello_format  # noqa
from hello_build.demo import digits_split, prepare, demo_options, STUDENT_EPOCHS
from hello_build.pipeline import build
seed = int(sys.argv[1])
work = Path(f"bench/results/cache/mix-of-parts/{seed}")
parts = digits_split(seed)
train_dir, test_dir, teacher_dir = work / "digits" / "train", work / "digits" / "test", work / "teacher"
checkpoint = work / "base.safetensors"
prepare(parts, train_dir, test_dir, teacher_dir, checkpoint, time.perf_counter(), progress=False, seed=seed, precision="fp32")
files = sorted(teacher_dir.glob("teacher_convnet3_epoch*.safetensors"))
options = demo_options(train_dir, work / "demo.hello", files, checkpoint, work / "build", seed=seed,
                       student_epochs=STUDENT_EPOCHS, precision="fp32")
report = build(options, progress=False, log=print)
print("done", report["synthetic_agreement"], report["synthetic_agreement_unmixed"])

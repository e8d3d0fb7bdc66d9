#!/usr/bin/env bash
# How close may a label source come to the teacher on CutMixed views? (a later session)
# A second ConvNet-3 teacher, trained exactly as the bench's (same images, same 6 epochs) but from seed 1,
# scored against the bench's teacher (seed 0) on the whole-image IPC 10 bundle's report views,
# beside the projector and the teacher's own epoch-4 checkpoint. Test is reported only (--val).
set -ex
cd "$(dirname "$0")/../.."
CACHE=bench/results/cache
TEACHER=$CACHE/teacher/9f840154b672d4f9
SECOND=$CACHE/teacher/second-seed1
HF_HUB_OFFLINE=1 .venv/bin/python - "$SECOND" <<'PY'
import sys, time
from pathlib import Path
from hello_build.data import holdout_split, scan_image_folder
from hello_build.teacher_training import TeacherTraining, train_teacher
folder = Path(sys.argv[1])
if not (folder / "teacher_convnet3_epoch0006.safetensors").exists():
    index = scan_image_folder(Path("bench/results/cache/cifar10/split-0/original"), check_headers=False)
    train_idx, _ = holdout_split(index, 0.05, 0)  # the bench teacher's images (build seed 0)
    started = time.perf_counter()
    train_teacher(index, "convnet3", TeacherTraining(epochs=6, checkpoints=3), seed=1, indices=train_idx, input_size=32, work_dir=folder)
    print(f"second teacher trained in {time.perf_counter() - started:.0f} s")
PY
HF_HUB_OFFLINE=1 .venv/bin/python bench/view_agreement.py $CACHE/bundles/cifar10-ipc10-9ff6e0e6cb64eea9.hello \
  --teacher $TEACHER/teacher_convnet3_epoch0006.safetensors \
  --compare $SECOND/teacher_convnet3_epoch0006.safetensors $TEACHER/teacher_convnet3_epoch0004.safetensors \
  --val $CACHE/cifar10/test

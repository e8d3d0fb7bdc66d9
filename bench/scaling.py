"""hello-build on 1 and on N CPU processes (torchrun, gloo), the same work: per-stage seconds side by side.

    python bench/scaling.py                      # 1 vs 2 processes, the digits tree, a 32-px ResNet CLIP
    python bench/scaling.py --nproc 2 4 --transfer-epochs 4

The tree is scikit-learn's digits upscaled to 32 px (the demo's "original" part, 700 images, 10
classes); the base a randomly initialised `hello-rn-w32` (the CIFAR benchmark's ResNet CLIP, 5.3 M
visual parameters); the teacher a ConvNet-3 trained for one epoch. Every run builds the same bundle
from a fresh work directory (`--fresh`) with one thread per process (OMP_NUM_THREADS=1, as torchrun
sets). Times are rank 0's stage timings from the build's JSON line, plus the wall time of the whole
command (process start, imports and set-up included). Prints the table, then for every N whether
its synthetic images are the single-process run's, how far its LoRA/head weights and its projector's
logits on those images are from the single-process ones, and which view-transfer step each kept.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

import hello_format  # noqa: F401  (torchvision shim before open_clip)
import open_clip
from hello_build.data import scan_image_folder
from hello_build.demo import digits_split, write_image_folder
from hello_build.teacher_training import TeacherTraining, train_teacher
from hello_format.bundle import Bundle
from hello_format.projector import Projector

BASE = "hello-rn-w32"
STAGES = ("data", "base", "projector", "text_head", "transfer", "init", "image_update", "view_transfer", "report", "write")


def prepare(root: Path) -> dict:
    """The digits tree, the base checkpoint and the teacher file."""
    parts = digits_split(0)
    data = write_image_folder(root / "digits", *parts["original"])
    torch.manual_seed(0)
    base = open_clip.create_model(BASE)
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, str(root / "base.safetensors"))
    train_teacher(scan_image_folder(data), "convnet3", TeacherTraining(epochs=1, checkpoints=1), input_size=32, seed=0, work_dir=root / "teacher")
    teacher = next((root / "teacher").glob("teacher_convnet3_epoch*.safetensors"))
    return {"data": data, "base": root / "base.safetensors", "teacher": teacher, "images": len(parts["original"][1])}


def build_args(kit: dict, output: Path, args) -> list[str]:
    return [str(kit["data"]), "-o", str(output), "--base", BASE, "--base-checkpoint", str(kit["base"]), "--embed-base",
            "--teacher", str(kit["teacher"]), "--ipc", str(args.ipc), "--factor", "1", "--candidates-per-class", "40",
            "--transfer-epochs", str(args.transfer_epochs), "--transfer-batch-size", "64",
            "--image-update-steps", str(args.image_update_steps), "--view-transfer-epochs", str(args.view_transfer_epochs),
            "--view-transfer-checks", "2",
            "--device", "cpu", "--fresh", "--quiet"]


def run(nproc: int, build: list[str]) -> tuple[dict, float]:
    """(rank 0's summary, wall seconds) of one build on ``nproc`` processes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    f"--nproc_per_node={nproc}"]
    started = time.perf_counter()
    done = subprocess.run([*launcher, "-m", "hello_build", *build], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{nproc}-process build failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def bundle_parts(path: Path) -> dict:
    """The images, trainable tensors and projector logits (on the images) of a bundle."""
    with Bundle.open(path) as bundle:
        images = bundle.images()
        weights = {n: bundle.tensor(n).float() for n in bundle.tensor_names if n.startswith(("encoder_lora.", "head."))}
        logits = Projector.from_bundle(bundle).label(images.float() / 255)
    return {"images": images, "weights": weights, "logits": logits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, nargs="+", default=[2], help="process counts to compare with 1")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--transfer-epochs", type=int, default=2)
    parser.add_argument("--image-update-steps", type=int, default=5)
    parser.add_argument("--view-transfer-epochs", type=float, default=12.8,
                        help="student views of each synthetic image (12.8: 40 steps of 32 at IPC 10)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hello-scaling-") as scratch:
        root = Path(scratch)
        kit = prepare(root)
        print(f"tree: {kit['images']} digits at 32 px, 10 classes; base {BASE} (random init); ConvNet-3 teacher; "
              f"IPC {args.ipc}, {args.transfer_epochs} transfer epochs, {args.image_update_steps} image-update steps, "
              f"{args.view_transfer_epochs:g} view-transfer views per image; {os.cpu_count()} CPU cores, 1 thread per process")
        results = {}
        for nproc in [1, *args.nproc]:
            output = root / f"n{nproc}.hello"
            results[nproc] = (*run(nproc, build_args(kit, output, args)), bundle_parts(output))
    counts = [1, *args.nproc]
    header = f"{'stage':<14}" + "".join(f"{f'{n} proc s':>11}" for n in counts) + "".join(f"{f'x{n}':>8}" for n in args.nproc)
    print(header)
    for stage in [*STAGES, "wall"]:
        seconds = [results[n][1] if stage == "wall" else results[n][0]["timings"].get(stage) for n in counts]
        if seconds[0] is None:
            continue
        cells = "".join(f"{s:>11.2f}" for s in seconds) + "".join(f"{seconds[0] / s:>8.2f}" for s in seconds[1:])
        print(f"{stage:<14}{cells}")
    one = results[1][2]
    for n in args.nproc:
        other = results[n][2]
        same = torch.equal(one["images"], other["images"])
        weights = max((one["weights"][k] - other["weights"][k]).abs().max().item() for k in one["weights"])
        logits = (one["logits"] - other["logits"]).abs().max().item()
        top1 = (one["logits"].argmax(1) == other["logits"].argmax(1)).float().mean().item()
        kept = [results[m][0]["view_transfer"]["kept_step"] if results[m][0]["view_transfer"] else None for m in (1, n)]
        print(f"{n} processes: synthetic images {'identical to' if same else 'DIFFERENT from'} the single-process run's; "
              f"LoRA/head weights max |diff| {weights:.2g} (largest {max(w.abs().max().item() for w in one['weights'].values()):.2g}); "
              f"logits on the images max |diff| {logits:.2g} (largest {one['logits'].abs().max().item():.2g}), "
              f"top-1 agreement {top1:.3f}; view-transfer step kept {kept[0]} (1 process) / {kept[1]}")


if __name__ == "__main__":
    main()

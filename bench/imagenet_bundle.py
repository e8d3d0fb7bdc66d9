"""An ImageNet-1K-sized bundle through the reader: write, info, verify, preview, HelloDataset.

    python bench/imagenet_bundle.py                       # IPC 50: 50,000 images of 224 px, PNG (4 GB; ~25 min here)
    python bench/imagenet_bundle.py --ipc 10 --codec jpeg
    python bench/imagenet_bundle.py --classes 100 --ipc 5 # a quick check that every step runs

Writes a bundle of ``--classes`` x ``--ipc`` stand-in images (smooth noise upsampled from 28 px; not
timed) with the ``hello-tiny-rn`` stand-in base embedded, random weights (only speed and memory are
measured: a real RN50 adds its own forward to every labelled batch), the RDED ImageNet recipe (224
px, patch shuffle 2, CutMix), then times each reader step in a fresh process and prints its wall time,
peak resident memory (VmHWM, which counts the file's pages read through the mapping) and the memory
still held when it ends (RssAnon: its own, file pages left out). One step drops the file's pages from
the page cache first (posix_fadvise), so that its epoch reads every image from the disk. Needs Linux
(/proc) and about 1.2x the file's size free on disk.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# each step runs in its own interpreter, which prints "<seconds> <peak MB>" last
PRELUDE = """
import sys, time
sys.path.insert(0, {root!r})
import hello_format  # noqa: F401
def status_mb(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":")) / 1024
started = time.perf_counter()
"""
STEPS = {
    "write": """
import torch, torch.nn.functional as F
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
from hello_format.augment import AugmentConfig
from hello_format.base import embedded_tensors
from hello_format.bundle import write_bundle
from hello_format.recipe import Recipe
from hello_format.testing import tiny_clip, tiny_projector
names = [f"{{n}} ({{i}})" for i, n in enumerate(IMAGENET_CLASSNAMES)][:{classes}]
names += [f"class {{i}}" for i in range(len(names), {classes})]
projector = tiny_projector("rn", names, seed=0)
recipe = Recipe(epochs=300, batch_size=128, student_image_size={size},
                augment=AugmentConfig(output_size={size}, patch_shuffle=2, scale=(0.5, 1.0)))
manifest = {{"format_version": "1.0", "class_names": names, "ipc": {ipc}, **projector.manifest_sections(),
            "recipe": recipe.to_manifest(),
            "provenance": {{"source_dataset": "stand-in noise", "teacher": "none", "timings": {{}},
                           "builder": {{"name": "bench/imagenet_bundle.py", "version": "0", "options": {{}}}}}}}}
count, generator = {classes} * {ipc}, torch.Generator().manual_seed(0)
images = torch.empty(count, 3, {size}, {size}, dtype=torch.uint8)
for start in range(0, count, 1000):
    coarse = torch.rand(min(count, start + 1000) - start, 3, 28, 28, generator=generator)
    images[start:start + 1000] = (F.interpolate(coarse, size={size}, mode="bilinear") * 255).round().to(torch.uint8)
labels = torch.arange({classes}).repeat_interleave({ipc})
started = time.perf_counter()   # the images are the caller's: not timed
write_bundle({path!r}, manifest, images, labels, {{**projector.bundle_tensors(), **embedded_tensors(tiny_clip("rn", 0))}},
             codec={codec!r})
""",
    "hello info": "from hello_format.cli import cli\ncli.main(['info', {path!r}], standalone_mode=False)",
    "hello verify --no-decode": "from hello_format.cli import cli\ncli.main(['verify', '--no-decode', {path!r}], standalone_mode=False)",
    "hello verify": "from hello_format.cli import cli\ncli.main(['verify', {path!r}], standalone_mode=False)",
    "hello preview (100 classes x 10)": "from hello_format.cli import cli\n"
                                         "cli.main(['preview', {path!r}, '-o', {grid!r}], standalone_mode=False)",
    "HelloDataset(path)": "from hello_format import HelloDataset\nHelloDataset({path!r}, device='cpu')",
    "an epoch of hard-label batches, the file not cached": """
import os
from hello_format import HelloDataset
file = os.open({path!r}, os.O_RDONLY)   # its pages dropped from the page cache: the first epoch reads from disk
os.fsync(file)
os.posix_fadvise(file, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(file)
started = time.perf_counter()
dataset = HelloDataset({path!r}, device="cpu", verify=False, soft_labels=False)
for batch in dataset.loader(batch_size=128):
    pass
""",
    "HelloDataset + up to {batches} batches of 128": """
from torch.utils.data import DataLoader
from hello_format import HelloDataset
dataset = HelloDataset({path!r}, device="cpu")
dataset.set_epoch(0)
batches = iter(DataLoader(dataset, batch_size=128, shuffle=True))
for _ in range(min({batches}, -(-len(dataset) // 128))):
    next(batches)
""",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--ipc", type=int, default=50)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--codec", default="png", choices=["png", "jpeg", "webp"])
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hello-imagenet-") as work:
        values = {**vars(args), "root": str(ROOT), "path": str(Path(work) / "bundle.hello"),
                  "grid": str(Path(work) / "grid.png")}
        print(f"{args.classes} classes x IPC {args.ipc} = {args.classes * args.ipc:,} images of {args.size} px, "
              f"{args.codec}; hello-tiny-rn stand-in base, random weights, embedded")
        print("\n| step | seconds | peak MB | held MB at the end |\n| --- | --- | --- | --- |")
        for name, body in STEPS.items():
            program = (PRELUDE + textwrap.dedent(body)).format(**values) + \
                "\nprint(f'{time.perf_counter() - started:.1f} {status_mb(\"VmHWM\"):.0f} {status_mb(\"RssAnon\"):.0f}')\n"
            done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
            seconds, peak, held = done.stdout.split()[-3:]
            print(f"| {name.format(**values)} | {seconds} | {peak} | {held} |", flush=True)
            if name == "write":
                size = Path(values["path"]).stat().st_size
                print(f"| (the file: {size:,} bytes) | | | |", flush=True)


if __name__ == "__main__":
    main()

"""The data stage at ImageNet scale: what ``scan_image_folder`` costs per file, projected to ImageNet-1K.

    python bench/scan.py                          # 1000 classes x 100 files, ~3 minutes on 2 cores
    python bench/scan.py --per-class 20 --decode-files 2000
    python bench/scan.py --per-class 20 --cold    # distinct files (2 GB), the page cache dropped before each scan (root)

Every ``hello-build`` run (a resume too) starts by scanning its image folder: listing it, then opening
each file's header (``check_headers``, threaded), or with ``--skip-bad`` decoding each file once; a
resume takes the checks an earlier run kept in the work directory (``WorkDir.memoised``). This
builds an ImageNet-shaped tree (1000 class folders of ``--per-class`` files, hard links to ``--sources``
distinct ImageNet-sized JPEGs, so it costs no disk), times each mode side by side, and projects the
per-file cost to ImageNet-1K's 1,281,167 training images, on one process and per rank under torchrun
(each rank lists every folder and checks every world_size-th file). By default the files were just
written, so they are in the page cache: the figures are the CPU's cost. ``--cold`` makes every file
a copy of its own and drops the page cache before each scan, so each header is read from the disk
(this machine's; a network file system adds more latency, which the scan's threads overlap).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import hello_format  # noqa: F401  (torchvision shim before anything imports it)
from hello_build.data import scan_image_folder
from hello_build.workdir import WorkDir

IMAGENET_TRAIN = 1_281_167


def photo_like(seed: int, size=(500, 375)) -> Image.Image:
    """A JPEG-sized stand-in for a photograph: smooth colour fields plus texture (about ImageNet's 110 KB at q 90)."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(size)
    fields = [np.sin(2 * np.pi * (rng.uniform(0.5, 3) * x + rng.uniform(0.5, 3) * y + rng.uniform())) for _ in range(3)]
    pixels = 127 + 80 * np.stack(fields, axis=-1) + rng.normal(0, 18, (height, width, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def make_tree(root: Path, classes: int, per_class: int, sources: int, copies: bool) -> int:
    """``classes`` folders of ``per_class`` hard links to (``copies``: copies of) ``sources`` JPEGs; returns a
    source's bytes."""
    originals = root / "sources"
    originals.mkdir(parents=True)
    for k in range(sources):
        photo_like(k).save(originals / f"{k}.jpg", quality=90)
    for c in range(classes):
        folder = root / "train" / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            (shutil.copyfile if copies else os.link)(originals / f"{(c + i) % sources}.jpg", folder / f"n{c:08d}_{i}.JPEG")
    return sum(path.stat().st_size for path in originals.iterdir()) // sources


def drop_page_cache() -> None:
    """Written files to disk, then the kernel's clean page cache dropped (root only)."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        raise SystemExit(f"--cold needs root to drop the page cache: {exc}") from None


def timed(run, cold: bool) -> tuple[float, object]:
    if cold:
        drop_page_cache()
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--sources", type=int, default=200, help="distinct JPEGs the files link to")
    parser.add_argument("--decode-files", type=int, default=5000, help="files the --skip-bad decode is timed on")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8], help="scan threads to time (the builder uses 8)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[8, 64], help="torchrun world sizes to project to")
    parser.add_argument("--cold", action="store_true", help="distinct files, read from the disk (drops the page cache: root)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hello-scan-"))
    try:
        file_bytes = make_tree(work, args.classes, args.per_class, args.sources, copies=args.cold)
        train = work / "train"
        files = args.classes * args.per_class
        print(f"{files:,} files in {args.classes} class folders ({'copies of' if args.cold else 'hard links to'} "
              f"{args.sources} JPEGs of 500x375, {file_bytes / 1e3:.0f} kB each); {os.cpu_count()} CPUs; "
              f"{'page cache dropped before each scan' if args.cold else 'page cache warm'}")
        rows = []   # (scan, files, seconds, whether ranks share the work: each checks every world_size-th file)
        seconds, _ = timed(lambda: scan_image_folder(train, check_headers=False), args.cold)
        rows.append(("list only", files, seconds, False))
        for threads in args.threads:
            seconds, index = timed(lambda: scan_image_folder(train, threads=threads), args.cold)
            assert len(index) == files and not index.bad
            rows.append((f"headers, {threads} thread(s)", files, seconds, True))
        kept, reuses = WorkDir(work / "workdir"), []

        def memo(*args):
            tensors, _, reused = kept.memoised("scan", *args)
            reuses.append(reused)
            return tensors

        scan_image_folder(train, memo=memo)
        kept.finish("stage", {}, {}, 0.0)   # as a build's first finished stage keeps the scan's checks
        seconds, index = timed(lambda: scan_image_folder(train, memo=memo), args.cold)
        assert len(index) == files and not index.bad and reuses == [False, True]
        rows.append(("headers kept by an earlier run (a resume)", files, seconds, False))
        subset = work / "decode"
        per_class = max(1, args.decode_files // args.classes)
        for folder in sorted(train.iterdir()):
            (subset / folder.name).mkdir(parents=True)
            for path in sorted(folder.iterdir())[:per_class]:
                os.link(path, subset / folder.name / path.name)
        decoded = per_class * args.classes
        seconds, index = timed(lambda: scan_image_folder(subset, skip_bad=True), args.cold)
        assert len(index) == decoded and not index.bad
        rows.append(("decode (--skip-bad), 8 threads", decoded, seconds, True))
        listing = rows[0][2] / files
        print("\n| scan | files | seconds | us a file | ImageNet-1K, 1 process | "
              + " | ".join(f"per rank of {n}" for n in args.ranks) + " |")
        print("| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in args.ranks) + " |")
        for name, count, seconds, shared in rows:
            per_file = seconds / count
            # every rank lists every folder (and reads the kept checks); it checks its share of the files
            ranks = [IMAGENET_TRAIN * (listing + (per_file - listing) / n if shared else per_file) / 60 for n in args.ranks]
            print(f"| {name} | {count:,} | {seconds:.1f} | {per_file * 1e6:.0f} | {IMAGENET_TRAIN * per_file / 60:.1f} min | "
                  + " | ".join(f"{m:.1f} min" for m in ranks) + " |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

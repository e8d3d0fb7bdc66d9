"""Writing a bundle at ImageNet scale: what encoding its images costs, on one thread and on the writer's.

    python bench/write.py                       # 1,000 images of 224 px per codec, ~2 minutes on 2 cores
    python bench/write.py --images 200 --codecs png

``write_bundle`` encodes each synthetic image (PNG by default, JPEG or WebP with ``--codec``) on
``codecs.default_threads()`` threads: the CPUs this process may use, at most 16. This times
``codecs.encode_images`` on 224-px stand-ins for synthetic images (smooth noise upsampled from 28 px:
RDED's patches are photographs, neither flat nor noise) on 1 thread and on the default, side by side,
and projects the time to ImageNet-1K's 10,000 (IPC 10) and 50,000 (IPC 50) images.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

import hello_format  # noqa: F401  (torchvision shim before anything imports it)
from hello_format import codecs

IPC_IMAGES = {"IPC 10": 10_000, "IPC 50": 50_000}


def stand_ins(count: int, size: int = 224, seed: int = 0) -> torch.Tensor:
    """uint8 [count, 3, size, size]: noise at 1/8 of the side, upsampled bilinearly, plus a little grain."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, size // 8, size // 8, generator=generator) * 255
    smooth = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    grain = torch.randn(count, 3, size, size, generator=generator) * 6
    return (smooth + grain).clamp(0, 255).to(torch.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--codecs", nargs="+", default=["png", "jpeg", "webp"])
    args = parser.parse_args()
    images = stand_ins(args.images)
    threads = codecs.default_threads()
    print(f"{args.images:,} images of 3x224x224; {os.cpu_count()} CPUs; the writer's threads here: {threads}")
    print("\n| codec | threads | seconds | ms an image | MB an image | ImageNet-1K " + " | ".join(IPC_IMAGES) + " | speed-up |")
    print("| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in IPC_IMAGES) + " | --- |")
    for codec in args.codecs:
        timed = {}
        for count in dict.fromkeys((1, threads)):
            started = time.perf_counter()
            blobs = codecs.encode_images(images, codec, threads=count)
            timed[count] = time.perf_counter() - started
            per_image = timed[count] / args.images
            megabytes = sum(map(len, blobs)) / args.images / 1e6
            projected = " | ".join(f"{n * per_image / 60:.1f} min" for n in IPC_IMAGES.values())
            print(f"| {codec} | {count} | {timed[count]:.1f} | {1000 * per_image:.1f} | {megabytes:.3f} | {projected} | "
                  f"{timed[1] / timed[count]:.2f}x |")


if __name__ == "__main__":
    main()

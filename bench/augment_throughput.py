"""Images per second of ``augment_batch`` (default recipe: crop, flip, CutMix) on CPU and CUDA.

    python bench/augment_throughput.py [--batch 256] [--repeats 5]

Stored images are uint8 at the output size (32 px as CIFAR-like sets, 224 px as ImageNet-like),
plus one 2x2 patch-shuffle row (RDED's recipe). Timing excludes the first (warm-up) call.
"""

import argparse
import time

import torch

import hello_format  # noqa: F401  (package init)
from hello_format.augment import AugmentConfig, augment_batch

CASES = [
    ("default", AugmentConfig()),
    ("rded 2x2", AugmentConfig(scale=(0.5, 1.0), patch_shuffle=2)),
]


def images_per_second(images: torch.Tensor, config: AugmentConfig, repeats: int) -> float:
    generator = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if images.is_cuda else (lambda: None)
    augment_batch(images, config, generator)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        augment_batch(images, config, generator)
    sync()
    return repeats * len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch {args.batch}")
    for device in devices:
        for size in (32, 224):
            images = torch.randint(0, 256, (args.batch, 3, size, size), dtype=torch.uint8).to(device)
            repeats = args.repeats * (20 if device == "cuda" else 1) * (10 if size == 32 else 1)
            for name, config in CASES:
                rate = images_per_second(images, config, repeats)
                print(f"{device:5s} {size:4d}px {name:9s} {rate:12,.0f} images/s  ({1e3 * args.batch / rate:8.2f} ms/batch)")


if __name__ == "__main__":
    main()

"""Train a student on a ``.hello`` bundle: the loop to copy into your own code.

Every batch is augmented on the device (crop, flip, patch shuffle, CutMix/Mixup as the bundle's
recipe says) and labelled by the bundle's projector on exactly those pixels; the student learns
from those soft labels with the recipe's loss.

    python examples/make_tiny_bundle.py tiny.hello
    python examples/train_student.py tiny.hello --epochs 2
    python examples/train_student.py cifar10.hello --epochs 200 --val cifar10/test                # top-1 at the end
    python examples/train_student.py cifar10.hello --epochs 200 --val cifar10/test --hard-labels  # the baseline
"""

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from hello_format import HelloDataset, HelloError, kl_loss, mse_ce_loss
from hello_format.limits import DATA_IMAGE_EXTENSIONS   # the files hello eval reads as images
from hello_format.recipe import SGD_MOMENTUM


class Student(nn.Module):
    """A small ConvNet; any classifier taking [B, 3, H, W] images works the same way."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def val_files(val_dir: str, class_folders: list[str]) -> list[list[Path]]:
    """Each class folder's image files under ``val_dir`` (hidden files such as .DS_Store left out),
    listed before any training so that a wrong folder costs nothing."""
    if not Path(val_dir).is_dir():   # else said to lack every class folder
        raise SystemExit(f"error: --val {val_dir}: " + ("not a folder" if Path(val_dir).exists() else "no such folder"))
    missing = [folder for folder in class_folders if not (Path(val_dir) / folder).is_dir()]
    if missing:
        raise SystemExit(f"error: {val_dir} lacks the bundle's class folder(s) {', '.join(missing[:5])}")
    return [sorted(p for p in (Path(val_dir) / folder).iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in DATA_IMAGE_EXTENSIONS)
            for folder in class_folders]


@torch.no_grad()
def top1(student: nn.Module, files_per_class: list[list[Path]], size: int, device: str) -> float:
    """Top-1 on real images (``val_files``: a list per class, in label order), resized to ``size``."""
    student.eval()
    correct = total = 0
    for label, files in enumerate(files_per_class):
        for start in range(0, len(files), 256):
            pixels = [np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
                      for f in files[start:start + 256]]
            images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float().div(255).to(device)
            correct += int((student(images).argmax(1) == label).sum())
            total += len(pixels)
    return correct / max(1, total)


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def learning_rate(text: str) -> float:
    """An argparse type: a finite number above 0."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="a .hello file or an hf:// URI")
    parser.add_argument("--epochs", type=positive, default=None, help="default: the recipe's")
    parser.add_argument("--batch-size", type=positive, default=None, help="default: the recipe's")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--lr", type=learning_rate, default=None, help="default: the recipe's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hard-labels", action="store_true", help="train on the (mixed) hard labels only: the baseline")
    parser.add_argument("--val", default=None, help="an ImageFolder of real images (the bundle's class folders) to report top-1 on")
    args = parser.parse_args()

    # Images are decoded once and kept on the device; labels come from the bundle's projector (the
    # hard-label baseline builds none: it sees the same views and pays no labelling).
    try:   # a wrong path or a damaged file: its one line, not a traceback
        ds = HelloDataset(args.bundle, device=args.device, seed=args.seed, soft_labels=not args.hard_labels)
    except HelloError as error:
        raise SystemExit(f"error: {error}") from None
    recipe = ds.recipe  # a Recipe: what the bundle's author trained students with
    loss_name = "cross-entropy on the hard labels" if args.hard_labels else recipe.loss
    print(f"{len(ds)} images, {ds.num_classes} classes, loss {loss_name}, on {ds.device}")
    folders = ds.manifest.get("provenance", {}).get("class_folders", ds.class_names)
    val = val_files(args.val, folders) if args.val else None

    torch.manual_seed(args.seed)
    student = Student(ds.num_classes).to(args.device)
    epochs = args.epochs if args.epochs is not None else recipe.epochs
    batch_size = args.batch_size if args.batch_size is not None else recipe.batch_size
    lr = args.lr if args.lr is not None else recipe.lr
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=SGD_MOMENTUM, weight_decay=recipe.weight_decay)
    else:   # recipe.optimizer is an open string: one this example does not know is said, not silently replaced
        if recipe.optimizer != "adamw":
            print(f"the recipe's optimizer {recipe.optimizer[:40]!r} is not one this example knows: AdamW instead")
        optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=recipe.weight_decay)
    steps = epochs * len(ds.loader(batch_size))   # the recipe's lr decays to 0 along a cosine, step by step
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)

    for epoch in range(epochs):
        started, total, batches = time.perf_counter(), 0.0, 0
        student.train()
        # One epoch of batches that never leave the device, seeded by (seed, epoch); start_epoch makes a
        # resumed run's epochs the same (without it each pass goes on from the last). Through torch's
        # DataLoader instead (on a GPU with num_workers=0: labelling runs there), in the DataLoader's order:
        #     loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True)
        #     ds.set_epoch(epoch); for images, soft_labels, hard_labels in loader: ...
        for batch in ds.loader(batch_size, shuffle=True, start_epoch=epoch):
            logits = student(batch.images)
            if args.hard_labels:  # soft cross-entropy on the one-hot labels, mixed like the images
                loss = torch.sum(-batch.hard_labels * F.log_softmax(logits, 1), dim=1).mean()
            elif recipe.loss == "kl":  # KL to softmax(soft / T), as SRe2L / RDED
                loss = kl_loss(logits, batch.soft_labels, recipe.temperature)
            else:  # MSE to the projector's logits + beta * CE on the (mixed) hard labels, as HeLlO
                loss = mse_ce_loss(logits, batch.soft_labels, batch.hard_labels, recipe.beta)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total, batches = total + loss.item(), batches + 1
        print(f"epoch {epoch + 1}/{epochs}  loss {total / batches:.4f}  ({time.perf_counter() - started:.1f} s)")
    if val is not None:
        size = batch.images.shape[-1]
        print(f"top-1 on {args.val}: {top1(student, val, size, args.device):.4f} "
              f"({'hard labels' if args.hard_labels else 'HelloDataset labels'})")


if __name__ == "__main__":
    main()

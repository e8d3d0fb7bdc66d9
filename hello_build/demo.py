"""`hello-build --demo`: the whole method, offline, on a real dataset that ships with scikit-learn.

scikit-learn's handwritten digits (1,797 images, 8x8, 10 classes) are upscaled to 32x32 and split
three ways: one part pretrains a tiny open_clip CLIP (the stand-in foundation model, embedded in the
bundle since nobody can download it), one part is the "original dataset" that the teacher is trained
on and that is distilled, and one part only ever measures the students. Then: build the bundle,
train one student from ``HelloDataset`` labels and one from hard labels, print both accuracies and
the storage breakdown.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

import hello_format  # noqa: F401  (torchvision shim before open_clip)
import open_clip

from hello_build.data import RealImages, scan_image_folder
from hello_build.evaluate import STUDENT_MEAN, STUDENT_STD, StudentRecipe, top1, train_student
from hello_build.foundation import pretrain_clip
from hello_build.options import BuildOptions
from hello_build.pipeline import build
import hello_format.base  # noqa: F401  (registers the tiny model configs with open_clip)
from hello_format.bundle import Bundle
from hello_format.dataset import HelloDataset, LabelledImages
from hello_format.errors import BuildError

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
BASE = "hello-tiny-vit"
SIZE = 32


def digits_split(seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The digits as uint8 [N,3,32,32] with labels, split into foundation / original / test parts."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise BuildError("the demo needs scikit-learn for its dataset: pip install scikit-learn") from None
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    images = (images.repeat(1, 3, 1, 1) * 255).round().to(torch.uint8)
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    parts = {"foundation": order[:700], "original": order[700:1400], "test": order[1400:]}
    return {name: (images[idx], labels[idx]) for name, idx in parts.items()}


def write_image_folder(root: Path, images: torch.Tensor, labels: torch.Tensor) -> Path:
    """Write uint8 images as PNG files in an ImageFolder tree (class folders named after the digits)."""
    for i, (image, label) in enumerate(zip(images, labels.tolist())):
        folder = root / DIGIT_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    return root


def run_demo(output: str | None = None, *, progress: bool = True, student_epochs: int = 60, seed: int = 0) -> dict:
    """Run the demo end to end; returns the figures it prints."""
    started = time.perf_counter()
    output = Path(output or "demo.hello")
    work = Path(tempfile.mkdtemp(prefix="hello-demo-"))
    parts = digits_split(seed)
    train_dir = write_image_folder(work / "digits" / "train", *parts["original"])
    test_dir = write_image_folder(work / "digits" / "test", *parts["test"])

    print(f"1/4 pretraining the stand-in foundation model ({BASE}) on {len(parts['foundation'][1])} held-out digits")
    torch.manual_seed(seed)
    base = open_clip.create_model(BASE)
    pretrain_clip(base, open_clip.get_tokenizer(BASE), *parts["foundation"], list(DIGIT_NAMES), steps=800, batch_size=64, seed=seed, progress=progress)
    checkpoint = work / "base.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, str(checkpoint))

    print(f"2/4 distilling {len(parts['original'][1])} digits into 10 images per class")
    options = BuildOptions(
        data=str(train_dir), output=str(output), train_teacher="convnet3", teacher_epochs=15, teacher_checkpoints=3,
        base=BASE, base_checkpoint=str(checkpoint), embed_base=True, ipc=10, factor=1, transfer_epochs=30, transfer_batch_size=32,
        transfer_lr=1e-2, crop_min_scale=0.5, candidates_per_class=40, epochs=student_epochs, student_batch_size=20, hflip=0.0, fresh=True, seed=seed,
        source_dataset="sklearn-digits (upscaled to 32x32)", workdir=str(work / "build"),
    )
    report = build(options, progress=progress)

    print(f"3/4 training ConvNet-3 students for {student_epochs} epochs on the {output.name} images")
    device = torch.device("cpu")
    val = RealImages(scan_image_folder(test_dir), SIZE)
    dataset = HelloDataset(output, device=device, seed=seed, normalize=(STUDENT_MEAN, STUDENT_STD))
    recipe = StudentRecipe.from_manifest(dataset.recipe, seed=seed)
    with_labels = top1(train_student(dataset, recipe, image_size=SIZE, device=device, progress=progress), val, device=device)
    hard = LabelledImages(dataset._images, dataset._labels, dataset.class_names, dataset.augment, None,
                          device=device, seed=seed, normalize=(STUDENT_MEAN, STUDENT_STD))
    hard_only = top1(train_student(hard, recipe, image_size=SIZE, device=device, progress=progress), val, device=device)

    with Bundle.open(output) as bundle:
        storage = bundle.storage()
    print("4/4 results")
    print(f"  teacher/projector agreement on held-out real views: {report['fidelity_before']['agreement']:.1%} (zero-shot head) -> "
          f"{report['fidelity_after']['agreement']:.1%} (after LoRA transfer)")
    print(f"  student top-1 on {len(val)} unseen digits: {with_labels:.1%} with HelloDataset labels, {hard_only:.1%} with hard labels only")
    print(f"  bundle {output}: {storage.file_bytes:,} bytes = images {storage.images_bytes:,} + label generator "
          f"{storage.label_generator_bytes:,} + embedded base {storage.base_bytes:,}")
    print(f"  stored soft labels for {student_epochs} epochs would take {storage.stored_label_bytes:,} bytes: "
          f"{storage.ratio:,.1f}x the label generator")
    print(f"  done in {time.perf_counter() - started:.0f} s")
    return {"projector_top1": with_labels, "hard_top1": hard_only, "storage": storage, "build": report}

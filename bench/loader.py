"""What labelling every augmented batch costs: HelloDataset next to the other ways of serving labels.

One run, the same stored images, augmentation (the bundle's recipe), batch size, seed and device:

    1 hard      LabelledImages without a labeller: augmentation and CutMix-mixed one-hots only
    2 hello     HelloDataset: augmentation + the bundle's projector (tiny ViT base) on every batch
    3 teacher   an online teacher (zoo convnet3 in a hello_build Teacher) labelling every batch
    4 stored    FKD / SRe2L: every view's teacher logits generated beforehand (timed apart) and
                replayed from disk (hello_build.stored_labels)

Each variant is timed twice, fastest epoch of the run, variants taking turns: the loader alone
(batches made, labels read) and a training epoch (the same batches plus a convnet3 student step,
AdamW, the recipe's loss). Storage: the stored
labels' bytes against the bundle's label generator. With CUDA, also: an RN50 projector (random
weights, 224 px, bf16) in labels/s and its overhead on a ResNet-18 student step. Prints tables; no
asserts. Goals: 2/1 <= 1.3 for a training epoch on CPU with the tiny base, and 2 faster than 4.

    python bench/loader.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import hello_format  # noqa: E402,F401  (the torchvision shim before open_clip)
from hello_build.evaluation import StudentRecipe  # noqa: E402
from hello_build.stored_labels import StoredLabels  # noqa: E402
from hello_build.teachers import Teacher  # noqa: E402
from hello_build.zoo import create_model  # noqa: E402
from hello_format.base import embedded_tensors  # noqa: E402
from hello_format.bundle import Bundle, write_bundle  # noqa: E402
from hello_format.dataset import HelloDataset, LabelledImages  # noqa: E402
from hello_format.losses import mse_ce_loss  # noqa: E402
from hello_format.recipe import Recipe  # noqa: E402
from hello_format.testing import tiny_clip, tiny_projector  # noqa: E402


def make_bundle(path: Path, images: int, classes: int, size: int, epochs: int, batch_size: int) -> Path:
    """Smooth random images, a tiny ViT projector with random LoRA, its base embedded."""
    names = [f"class{c}" for c in range(classes)]
    projector = tiny_projector("vit", names, seed=0)
    manifest = {
        "format_version": "1.0", "class_names": names, "ipc": images // classes,
        **projector.manifest_sections(),
        "recipe": Recipe(epochs=epochs, batch_size=batch_size, student_image_size=size).to_manifest(),
        "provenance": {"source_dataset": "random", "teacher": "none",
                       "builder": {"name": "bench/loader.py", "version": "0", "options": {}}, "timings": {}},
    }
    count = classes * (images // classes)
    coarse = torch.rand(count, 3, size // 4, size // 4, generator=torch.Generator().manual_seed(0))
    pixels = (F.interpolate(coarse, size=size, mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)
    labels = torch.arange(classes).repeat_interleave(images // classes)
    tensors = {**projector.bundle_tensors(), **embedded_tensors(tiny_clip("vit", 0))}
    return write_bundle(path, manifest, pixels, labels, tensors)


class StudentStep:
    """One optimisation step of a fresh convnet3 student (seeded, so every variant starts alike)."""

    def __init__(self, classes: int, size: int, device):
        torch.manual_seed(0)
        self.model = create_model("convnet3", classes, image_size=size).to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)

    def __call__(self, batch) -> None:
        logits = self.model(batch.images)
        if batch.soft_labels.shape[1] == 0:
            loss = F.cross_entropy(logits, batch.hard_labels)
        else:
            loss = mse_ce_loss(logits, batch.soft_labels, batch.hard_labels, 0.1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def fastest_epochs(variants: dict, batch_size: int, epochs: int, steps: dict | None = None) -> dict[str, float]:
    """Seconds of each variant's fastest epoch. Variants take turns epoch by epoch, so load from
    elsewhere on a shared machine falls on all of them alike (and only ever adds time: the minimum)."""
    times = {name: [] for name in variants}
    for epoch in range(epochs):
        for name, data in variants.items():
            step = steps[name] if steps else None
            started = time.perf_counter()
            for batch in data.loader(batch_size, shuffle=True, start_epoch=epoch):  # seeded by (seed, epoch)
                if step is not None:
                    step(batch)
                else:
                    float(batch.soft_labels.sum())  # the labels are read, as a loss would
            times[name].append(time.perf_counter() - started)
    return {name: min(t) for name, t in times.items()}


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def cpu_table(args, workdir: Path) -> None:
    device = torch.device("cpu")
    path = make_bundle(workdir / "bench.hello", args.images, args.classes, args.size, args.epochs, args.batch_size)
    hello = HelloDataset(path, device=device)
    images, labels, names = hello._images, hello._labels, hello.class_names
    torch.manual_seed(0)
    teacher = Teacher(create_model("convnet3", len(names), image_size=args.size), input_size=args.size,
                      num_classes=len(names)).eval().requires_grad_(False)
    variants = {
        "1 hard": LabelledImages(images, labels, names, hello.augment, None, device=device),
        "2 hello": hello,
        "3 teacher": LabelledImages(images, labels, names, hello.augment, teacher, device=device),
        "4 stored": LabelledImages(images, labels, names, hello.augment, None, device=device),
    }
    recipe = StudentRecipe(epochs=args.epochs, batch_size=args.batch_size, seed=0)
    started = time.perf_counter()
    stored = StoredLabels.prepare(workdir / "fkd", variants["4 stored"], teacher, recipe)
    generation = time.perf_counter() - started

    for name in ("1 hard", "2 hello", "3 teacher"):  # warm-up: first-call allocations, lazy inits
        next(iter(variants[name].loader(args.batch_size)))
    variants["4 stored"].labeller = stored.replay()
    loader_only = fastest_epochs(variants, args.batch_size, args.epochs)
    variants["4 stored"].labeller = stored.replay()
    steps = {name: StudentStep(len(names), args.size, device) for name in variants}
    training = fastest_epochs(variants, args.batch_size, args.epochs, steps)

    batches = len(variants["1 hard"].loader(args.batch_size))
    print(f"\nCPU, {torch.get_num_threads()} thread(s): {len(labels)} images 3x{args.size}x{args.size}, "
          f"{len(names)} classes, batch {args.batch_size} ({batches} per epoch), {args.epochs} epochs, "
          f"augment {hello.augment.to_dict()}")
    print(f"\n{'variant':<12}{'loader s/epoch':>16}{'train s/epoch':>16}   (fastest of {args.epochs} epochs)")
    for name in variants:
        print(f"{name:<12}{loader_only[name]:>16.4f}{training[name]:>16.4f}")
    print(f"{'4 generate':<12}{generation / args.epochs:>16.4f}{'':>16}  (stored labels made beforehand, per epoch)")
    print(f"\n{'ratio':<12}{'loader':>16}{'train':>16}")
    for a, b in (("2 hello", "1 hard"), ("2 hello", "4 stored")):
        label = f"{a[0]}/{b[0]}"
        print(f"{label:<12}{loader_only[a] / loader_only[b]:>16.2f}{training[a] / training[b]:>16.2f}")
    with Bundle.open(path) as bundle:
        storage = bundle.storage()
    print(f"\nstorage: stored labels (4) {human(stored.bytes_on_disk())} on disk, of which logits "
          f"{human(stored.label_bytes())} ({args.epochs} epochs); bundle label generator "
          f"{human(storage.label_generator_bytes)} (LoRA), tiny base embedded {human(storage.base_bytes)}, "
          f"images {human(storage.images_bytes)}")
    print("(stored labels are read back from the page cache: the files were just written)")


def gpu_table(args) -> None:
    if not torch.cuda.is_available():
        print("\nGPU: no CUDA here; skipped the RN50 projector labels/s and ResNet-18 step overhead")
        return
    rn50_projector_table(torch.device("cuda"), args.gpu_batch, args.gpu_iters, classes=1000)


def rn50_projector_table(device: torch.device, batch_size: int, iterations: int, classes: int) -> None:
    """RN50 projector (random weights, LoRA merged) labels/s at 224 px and its cost next to a
    ResNet-18 student step on the same batch (bf16 autocast on CUDA)."""
    import open_clip

    from hello_format import lora
    from hello_format.base import describe_base, quiet_open_clip
    from hello_format.head import SINGLE_TEMPLATE, head_lora_manifest
    from hello_format.projector import Projector

    torch.manual_seed(0)
    with quiet_open_clip():
        clip_model = open_clip.create_model("RN50").to(device)
    names = [f"class {c}" for c in range(classes)]
    projector = Projector.for_training(
        clip_model, describe_base(clip_model, architecture="RN50", source="embedded"), names,
        templates=SINGLE_TEMPLATE, lora_manifest=lora.lora_manifest(clip_model.visual),
        head_lora_manifest=head_lora_manifest(128, 128), logit_scale=100.0).eval().merge()
    student = create_model("resnet18_224", classes).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
    images = torch.rand(batch_size, 3, 224, 224, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step(soft):
        with autocast:
            logits = student(images.contiguous(memory_format=torch.channels_last))
        loss = mse_ce_loss(logits, soft, soft.softmax(1), 0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def timed(fn) -> float:
        for _ in range(2):
            fn()  # warm-up: cudnn autotuning, channels_last conversion
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        started = time.perf_counter()
        for _ in range(iterations):
            fn()
        sync()
        return (time.perf_counter() - started) / iterations

    fixed = projector.label(images)
    label_s = timed(lambda: projector.label(images))
    step_s = timed(lambda: step(fixed))
    both_s = timed(lambda: step(projector.label(images)))
    print(f"\n{device.type.upper()}: RN50 projector (random weights), {classes} classes, batch {batch_size} at 224 px"
          f"{', bf16' if device.type == 'cuda' else ''}")
    print(f"  projector labels/s               {batch_size / label_s:>10.0f}")
    print(f"  ResNet-18 student step           {step_s * 1000:>10.1f} ms")
    print(f"  label + student step             {both_s * 1000:>10.1f} ms  ({both_s / step_s:.2f}x the step alone)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--gpu-batch", type=int, default=256)
    parser.add_argument("--gpu-iters", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=None, help="where the bundle and stored labels go (default: a temp dir)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        cpu_table(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory() as workdir:
            cpu_table(args, Path(workdir))
    gpu_table(args)


if __name__ == "__main__":
    main()

"""What labelling every batch costs: the projector next to the teacher it replaces, alone and inside a
student's training step, with and without the label path's speed options (``LabelOptions``).

Two settings, measured side by side in one run (random weights: speed does not depend on them):

    cifar     32 px, 10 classes, 500 images: the CIFAR bench's stand-in base (hello-rn-w32) in a bundle
              read by HelloDataset; online teacher ConvNet-3 (the CIFAR bench's teacher); student
              ResNet-18 (32 px)
    imagenet  224 px, 1000 classes: an RN50 CLIP projector; online teacher ResNet-18 (RDED's); student
              ResNet-18 (224 px)

1. labels/s of the projector and of the teacher, each fp32, bf16 autocast, channels_last, and (with
   --compile) torch.compile; bf16's top-1 agreement with fp32 and largest logit difference.
2. seconds per training step (a ResNet-18 student, AdamW, the recipe's loss) fed by: hard labels only,
   HelloDataset (default options, then the fastest options, then labelling ahead), the online teacher,
   and (cifar) FKD/SRe2L stored labels replayed from disk. Variants take turns and the fastest round
   counts, so load from elsewhere falls on all of them alike.
3. where one HelloDataset batch's time goes (torch.profiler, cifar).

Goals (ratios, one run): HelloDataset / hard <= 1.25 per step (cifar); projector labels/s >= the
teacher's (cifar, each with its best options). The last line states both. With CUDA, every table
also runs on the GPU; bench/gpu_check.py is the GPU's correctness check.

    python bench/loader.py            # 7 minutes alone on 2 CPU cores
    python bench/loader.py --quick    # the same last line in 1 min 42 s there (2 steps an epoch: a noisier ratio)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from copy import deepcopy as copy_module
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import hello_format  # noqa: E402,F401  (the torchvision shim before open_clip)
from hello_build.evaluation import StudentRecipe  # noqa: E402
from hello_build.stored_labels import StoredLabels  # noqa: E402
from hello_build.teachers import Teacher  # noqa: E402
from hello_build.zoo import create_model  # noqa: E402
from hello_format import lora  # noqa: E402
from hello_format.augment import AugmentConfig  # noqa: E402
from hello_format.base import describe_base, embedded_tensors, quiet_open_clip  # noqa: E402
from hello_format.bundle import write_bundle  # noqa: E402
from hello_format.dataset import HelloDataset, LabelledImages  # noqa: E402
from hello_format.generator import HeadConfig, HeadLoraConfig  # noqa: E402
from hello_format.head import SINGLE_TEMPLATE  # noqa: E402
from hello_format.losses import mse_ce_loss  # noqa: E402
from hello_format.projector import Projector  # noqa: E402
from hello_format.recipe import Recipe  # noqa: E402

OPTION_SETS = {  # the label path's options, one at a time on top of fp32
    "fp32": {"precision": "fp32", "channels_last": False},
    "bf16": {"precision": "bf16", "channels_last": False},
    "channels_last": {"precision": "fp32", "channels_last": True},
    "bf16+channels_last": {"precision": "bf16", "channels_last": True},
}


@dataclass
class Setting:
    name: str
    size: int
    classes: int
    base: str
    teacher: str
    student: str


CIFAR = Setting("cifar", 32, 10, "hello-rn-w32", "convnet3", "resnet18_32")
IMAGENET = Setting("imagenet", 224, 1000, "RN50", "resnet18_224", "resnet18_224")


def projector_for(setting: Setting, device) -> Projector:
    """``setting.base`` with random weights and a random LoRA, the head's text from one template."""
    import open_clip

    torch.manual_seed(0)
    with quiet_open_clip():
        clip_model = open_clip.create_model(setting.base)
    names = [f"class {c}" for c in range(setting.classes)]
    projector = Projector.for_training(
        clip_model, describe_base(clip_model, architecture=setting.base, source="embedded"), names,
        head=HeadConfig(templates=SINGLE_TEMPLATE, logit_scale=100.0,
                        lora=HeadLoraConfig(r=min(128, setting.classes), lora_alpha=min(128, setting.classes))),
        encoder_lora=lora.encoder_config(clip_model.visual))
    with torch.no_grad():
        for name, p in projector.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)  # a LoRA that is not zero
    return projector.eval().to(device), clip_model


def teacher_for(setting: Setting, device) -> Teacher:
    torch.manual_seed(0)
    net = create_model(setting.teacher, setting.classes, image_size=setting.size)
    return Teacher(net, input_size=setting.size, num_classes=setting.classes).eval().requires_grad_(False).to(device)


def teacher_labeller(teacher: Teacher, options: dict, device):
    """The teacher's forward with the same speed options as the projector's label path."""
    if options.get("channels_last"):
        teacher.to(memory_format=torch.channels_last)

    def label(images):
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=options.get("precision") == "bf16"):
            x = images.contiguous(memory_format=torch.channels_last) if options.get("channels_last") else images
            logits = teacher(x).float()
        return logits.clone()  # an ordinary tensor, as Projector.label returns
    return label


def smooth_images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    coarse = torch.rand(count, 3, max(2, size // 8), max(2, size // 8), generator=torch.Generator().manual_seed(seed))
    return (F.interpolate(coarse, size=size, mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)


def make_bundle(path: Path, setting: Setting, images: int, epochs: int, batch_size: int) -> Path:
    projector, clip_model = projector_for(setting, "cpu")
    names = projector.class_names
    manifest = {
        "format_version": "1.0", "class_names": names, "ipc": images // setting.classes,
        **projector.manifest_sections(),
        "recipe": Recipe(epochs=epochs, batch_size=batch_size, student_image_size=setting.size).to_manifest(),
        "provenance": {"source_dataset": "random", "teacher": "none",
                       "builder": {"name": "bench/loader.py", "version": "0", "options": {}}, "timings": {}},
    }
    count = setting.classes * (images // setting.classes)
    labels = torch.arange(setting.classes).repeat_interleave(images // setting.classes)
    tensors = {**projector.bundle_tensors(), **embedded_tensors(clip_model)}
    return write_bundle(path, manifest, smooth_images(count, setting.size), labels, tensors)


def fastest(functions: dict, rounds: int) -> dict[str, float]:
    """Seconds of each function's fastest call; the functions take turns, round by round."""
    for fn in functions.values():
        fn()  # warm-up: first-call allocations, oneDNN primitives, compilation
    times = {name: float("inf") for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            started = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name] = min(times[name], time.perf_counter() - started)
    return times


def labels_per_second(setting: Setting, device, batch: int, rounds: int, compile_: bool) -> dict:
    """Table 1 for one setting: labels/s of projector and teacher under each option set."""
    projector, _ = projector_for(setting, device)
    projector.merge()
    views = torch.rand(batch, 3, setting.size, setting.size, generator=torch.Generator().manual_seed(1)).to(device)
    sets = dict(OPTION_SETS, **({"bf16+compile": {"precision": "bf16", "compile": True}} if compile_ else {}))
    functions, reference, agreement = {}, None, {}
    for name, options in sets.items():
        label = make_projector_labeller(projector, options)
        if reference is None:
            reference = label(views)
        logits = label(views)
        agreement[name] = (float((logits.argmax(1) == reference.argmax(1)).float().mean()), float((logits - reference).abs().max()))
        functions[f"projector {name}"] = lambda label=label: label(views)
    for name, options in sets.items():
        if "compile" in options:
            continue
        label = teacher_labeller(teacher_for(setting, device), options, device)
        functions[f"teacher {name}"] = lambda label=label: label(views)
    seconds = fastest(functions, rounds)
    print(f"\n{setting.name}: labels/s, batch {batch} at {setting.size} px, {setting.classes} classes, {device} "
          f"(projector {setting.base}, teacher {setting.teacher}; fastest of {rounds} rounds)")
    print(f"  {'label path':<32}{'labels/s':>10}   top-1 agreement with fp32, max |logit diff|")
    for name, s in seconds.items():
        extra = ""
        if name.startswith("projector"):
            top1, diff = agreement[name.removeprefix("projector ")]
            extra = f"   {100 * top1:.1f} %, {diff:.4f}"
        print(f"  {name:<32}{batch / s:>10.0f}{extra}")
    best = {who: max(batch / s for n, s in seconds.items() if n.startswith(who)) for who in ("projector", "teacher")}
    return {"labels_per_s": {n: batch / s for n, s in seconds.items()}, "best": best,
            "reference_scale": float(reference.abs().max())}


def make_projector_labeller(projector: Projector, options: dict):
    """A copy of the (merged) projector set up with ``options``; its ``label``."""
    copy = copy_module(projector)
    copy.prepare_labelling(options)
    return copy.label


class StudentStep:
    """One optimisation step of a fresh ResNet-18 student (seeded, so every variant starts alike)."""

    def __init__(self, setting: Setting, device):
        torch.manual_seed(0)
        self.model = create_model(setting.student, setting.classes, image_size=setting.size).to(device).train()
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


def per_step(setting: Setting, device, workdir: Path, images: int, batch: int, epochs: int, best: dict) -> dict:
    """Table 2 for one setting: seconds per student step under each way of serving labels."""
    if setting.name == "cifar":
        path = make_bundle(workdir / "bench.hello", setting, images, epochs, batch)
        hello = lambda options: HelloDataset(path, device=device, label_options=options)  # noqa: E731
        base = hello({"precision": "fp32", "channels_last": False, "prefetch": False})
        stored_images, labels, names, augment = base._images, base._labels, base.class_names, base.augment
    else:
        projector, _ = projector_for(setting, device)
        projector.merge()
        names = projector.class_names
        stored_images = smooth_images(images, setting.size)
        labels = torch.arange(images) % setting.classes
        augment = AugmentConfig()

        def hello(options):
            ds = LabelledImages(stored_images, labels, names, augment, make_projector_labeller(projector, options), device=device)
            ds.prefetch = bool(options.get("prefetch"))
            return ds
    teacher = teacher_for(setting, device)
    variants = {
        "hard labels": LabelledImages(stored_images, labels, names, augment, None, device=device),
        "HelloDataset default": hello({}),
        f"HelloDataset {best['name']}": hello({**best['options'], "prefetch": False}),
        f"HelloDataset {best['name']}, ahead": hello({**best['options'], "prefetch": True}),
        "online teacher fp32": LabelledImages(stored_images, labels, names, augment, teacher_labeller(teacher, {}, device), device=device),
        f"online teacher {best['name']}": LabelledImages(stored_images, labels, names, augment,
                                                         teacher_labeller(teacher_for(setting, device), best["options"], device), device=device),
    }
    if setting.name == "cifar":
        recipe = StudentRecipe(epochs=epochs, batch_size=batch, seed=0)
        replayed = LabelledImages(stored_images, labels, names, augment, None, device=device)
        stored = StoredLabels.prepare(workdir / "fkd", replayed, teacher_labeller(teacher, {}, device), recipe)
        variants["stored labels (replay)"] = replayed
    steps = {name: StudentStep(setting, device) for name in variants}
    seconds = {name: float("inf") for name in variants}
    for epoch in range(epochs):  # variants take turns epoch by epoch
        for name, data in variants.items():
            if name.startswith("stored"):
                data.labeller = stored.replay()
            loader = data.loader(batch, shuffle=True, start_epoch=epoch)
            started = time.perf_counter()
            for labelled in loader:
                steps[name](labelled)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            seconds[name] = min(seconds[name], (time.perf_counter() - started) / len(loader))
    hard = seconds["hard labels"]
    print(f"\n{setting.name}: seconds per {setting.student} training step, batch {batch}, {len(labels)} images, {device} "
          f"(fastest of {epochs} epochs)")
    for name, s in seconds.items():
        print(f"  {name:<40}{s:>9.4f} s   {s / hard:5.2f}x hard")
    return {"seconds": seconds, "hello_over_hard": min(s for n, s in seconds.items() if n.startswith("HelloDataset")) / hard,
            "default_over_hard": seconds["HelloDataset default"] / hard}


def profile_batch(workdir: Path, device) -> None:
    """Table 3: where one default HelloDataset batch's time goes (cifar)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    ds = HelloDataset(workdir / "bench.hello", device=device)
    generator = torch.Generator().manual_seed(0)
    indices = torch.arange(64) % len(ds)
    ds.batch(indices, generator)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        with record_function("augment"):
            view = ds.view(indices.to(device), generator)
        with record_function("normalise"):
            normalised = (view.images - ds.projector.mean) / ds.projector.std
        with torch.inference_mode(), record_function("encoder"):
            features = ds.projector.visual(normalised)
        with torch.inference_mode(), record_function("head"):
            F.normalize(features.float(), dim=-1) @ ds.projector.class_weights().t()
        with record_function("HelloDataset.label (all of the label path)"):
            ds.label(indices.to(device), view)
    total = {e.key: e.cpu_time_total for e in prof.key_averages() if e.key in
             ("augment", "normalise", "encoder", "head", "HelloDataset.label (all of the label path)")}
    print(f"\ncifar: one default HelloDataset batch of 64 on {device}, by part (torch.profiler, ms)")
    for name, us in total.items():
        print(f"  {name:<44}{us / 1000:>8.2f}")
    syncs = [e.key for e in prof.key_averages() if "Synchronize" in e.key or e.key == "aten::_local_scalar_dense"]
    print(f"  host-device syncs or scalar reads in the batch: {', '.join(syncs) or 'none'}")


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, rounds and epochs (about two minutes)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (slow to start on a CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--workdir", type=Path, default=None, help="where the bundle and stored labels go (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    scale = dict(images=100, batch=50, epochs=2, rounds=3, imagenet_batch=2, imagenet_classes=100, imagenet_steps=False) if args.quick else \
        dict(images=500, batch=64, epochs=3, rounds=5, imagenet_batch=16, imagenet_classes=1000, imagenet_steps=True)
    print(f"{device}, {torch.get_num_threads()} threads; torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as temp:
        workdir = args.workdir or Path(temp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = {}
        imagenet = dataclasses.replace(IMAGENET, classes=scale["imagenet_classes"])
        for setting, batch in ((CIFAR, scale["batch"]), (imagenet, scale["imagenet_batch"])):
            rates = labels_per_second(setting, device, batch, scale["rounds"], args.compile)
            results[setting.name] = rates
            if setting is imagenet and not scale["imagenet_steps"]:
                print("  (--quick: no imagenet training steps; 100 classes, which only changes the head's width)")
                continue
            fastest_set = max(OPTION_SETS, key=lambda n: rates["labels_per_s"][f"projector {n}"])
            best = {"name": fastest_set, "options": OPTION_SETS[fastest_set]}
            images = scale["images"] if setting is CIFAR else 2 * batch
            results[setting.name].update(per_step(setting, device, workdir, images, batch, scale["epochs"] if setting is CIFAR else 2, best))
        profile_batch(workdir, device)
    cifar, imagenet = results["cifar"], results["imagenet"]
    line = (f"per-step HelloDataset/hard: {cifar['hello_over_hard']:.2f}x; "
            f"labels/s projector/teacher: {cifar['best']['projector'] / cifar['best']['teacher']:.2f}x")
    print(f"\n(cifar setting, each side with its fastest label path; imagenet: labels/s projector/teacher "
          f"{imagenet['best']['projector'] / imagenet['best']['teacher']:.2f}x"
          + (f", per-step {imagenet['hello_over_hard']:.2f}x" if "hello_over_hard" in imagenet else "") + ")")
    print(line)
    return line


if __name__ == "__main__":
    main()

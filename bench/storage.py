"""Storage benchmark: prints measured figures (asserts nothing).

(a) label-generator bytes of ImageNet-1K-shaped bundles (1000 classes, IPC 10, 300 epochs) for an
    open_clip RN50 base (conv LoRA r 8 on every stem and bottleneck conv) and a ViT-B-16 base (attn
    + MLP LoRA r 8), head LoRA r 128 (the paper's ranks; ``--encoder-rank``, ``--head-rank``), next to
    the stored FKD-style soft labels; the deltas stored in fp16, int8 and int4 (``hello requantize``;
    random weights: the bytes depend on the shapes only);
(b) top-1 agreement of int8 / int4 projectors with the fp16 projector of REAL trained bundles, on
    augmented student views of their synthetic images (the bundle's recipe, CutMix included);
(c) lazy open time of a 10,000-image PNG bundle; (d) full decode time of its 10,000 32x32 images.

    python bench/storage.py                    # writes its bundles to a temporary directory
    python bench/storage.py --quick            # (a) for RN50 and (b) on 1,000 views only
    python bench/storage.py --bundle bench/results/cache/bundles/cifar10-ipc10-8eb8eaa132ae81be.hello
                                               # (b) runs on the trained bundles given (copied, never modified)
"""

import argparse
import re
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import hello_format  # noqa: F401  (torchvision shim before open_clip)
import open_clip
from hello_format import base as base_module
from hello_format import lora as lora_module
from hello_format.augment import apply_crops, apply_mix, draw_augment
from hello_format.bundle import Bundle, write_bundle
from hello_format.generator import DELTA_GROUP_SIZE, EncoderLoraConfig, HeadConfig, HeadLoraConfig
from hello_format.projector import Projector
from hello_format.quantize import DELTA_DTYPES
from hello_format.recipe import Recipe
from hello_format.requantize import requantize

CLASSES, IPC, EPOCHS = 1000, 10, 300
PAPER_HEAD_RANK = 128  # the builder's min(128, classes) at 1000 classes; the encoder's is EncoderLoraConfig.r
PUBLISHED_FKD_IPC10 = "5.67 GB (LPLD README, ImageNet-1K IPC 10, 300 epochs)"


def formula_parameters(visual: nn.Module, targets: str, r: int) -> int:
    """LoRA parameters from module shapes: Linear r(in+out); Conv2d r*in*k*k + out*r; MHA as peft does."""
    total = 0
    for name, module in visual.named_modules():
        if not re.fullmatch(targets, name):
            continue
        if isinstance(module, nn.MultiheadAttention):   # in_proj (d -> 3d) and out_proj (d -> d)
            d = module.embed_dim
            total += r * (d + 3 * d) + r * (d + d)
        elif isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += r * module.in_channels * k + module.out_channels * r
        elif isinstance(module, nn.Linear):
            total += r * (module.in_features + module.out_features)
    return total


def manifest_for(base_section: dict, lora_section: dict | None, *, head_lora: HeadLoraConfig | None) -> dict:
    return {
        "format_version": "1.0",
        "class_names": [f"class_{i:04d}" for i in range(CLASSES)],
        "ipc": IPC,
        "base": base_section,
        "lora": lora_section,
        "head": HeadConfig(templates=("a photo of a {}.",), logit_scale=100.0, lora=head_lora).to_manifest(),
        "recipe": Recipe(epochs=EPOCHS, batch_size=100, student_image_size=224).to_manifest(),
        "provenance": {"source_dataset": "ImageNet-1K shaped (benchmark)", "teacher": "none",
                       "builder": {"name": "bench/storage.py", "version": "1", "options": {}}, "timings": {}},
    }


def label_generator_bundle(architecture: str, folder: Path, encoder_rank: int, head_rank: int) -> Path:
    # random weights (shapes are what matter); QuickGELU as in the OpenAI weights the manifest names
    model = open_clip.create_model(architecture, force_quick_gelu=True)
    base_section = base_module.describe_base(model, architecture=architecture, pretrained="openai",
                                             source="open_clip")
    visual = model.visual
    encoder_lora = lora_module.encoder_config(visual, r=encoder_rank, lora_alpha=2 * encoder_rank)
    expected = formula_parameters(visual, encoder_lora.target_modules, encoder_rank)
    lora_module.inject(visual, encoder_lora)
    encoder = {f"encoder_lora.{key}": value for key, value in lora_module.export_state_dict(visual).items()}
    width = model.text_projection.shape[1] if isinstance(model.text_projection, torch.Tensor) \
        else model.text_projection.out_features
    head = {"head.lora_A": torch.zeros(head_rank, width, dtype=torch.float16),
            "head.lora_B": torch.zeros(CLASSES, head_rank, dtype=torch.float16)}
    head["head.lora_A"].normal_(0, 0.02)   # fp16 bytes do not depend on values; int8/int4 scales must not all be 0
    # ImageNet-shaped label side; the images are stand-ins (1x8x8) since only N matters here
    images = torch.zeros(CLASSES * IPC, 1, 8, 8, dtype=torch.uint8)
    labels = torch.arange(CLASSES * IPC) % CLASSES
    manifest = manifest_for(base_section, encoder_lora.to_manifest(),
                            head_lora=HeadLoraConfig(r=head_rank, lora_alpha=head_rank))
    path = write_bundle(folder / f"{architecture}.hello", manifest, images,
                        labels, {**encoder, **head}, codec="raw")
    with Bundle.open(path) as bundle:
        s = bundle.storage()
    encoder_params = sum(t.numel() for t in encoder.values())
    head_params = sum(t.numel() for t in head.values())
    print(f"{architecture}: encoder LoRA r {encoder_rank} on {len(encoder) // 2} modules "
          f"(targets {encoder_lora.target_modules})")
    print(f"  encoder LoRA parameters   {encoder_params:>12,}  (formula from module shapes: {expected:,})")
    print(f"  head LoRA parameters      {head_params:>12,}  (r {head_rank}: {head_rank} x {width} + {CLASSES} x {head_rank})")
    print(f"  label generator bytes     {s.label_generator_bytes:>12,}  ({s.label_generator_bytes / 1e6:.2f} MB fp16)")
    print(f"  stored soft labels bytes  {s.stored_label_bytes:>12,}  ({s.stored_label_bytes / 1e9:.2f} GB = "
          f"{s.stored_label_bytes / 2**30:.2f} GiB; N {CLASSES * IPC} x {EPOCHS} epochs x {CLASSES} x 2 B)")
    print(f"  ratio stored / generator  {s.ratio:>12,.0f}x")
    return path


def dtype_table(path: Path, folder: Path, group_size: int) -> None:
    """The same generator requantized: label-generator bytes (tensors, spec 11) and header bytes per dtype."""
    print(f"  {'deltas':<22}{'label generator':>16}{'header':>10}{'file':>12}  ratio")
    for name, dtype in DELTA_DTYPES.items():
        target = folder / f"{path.stem}-{name}.hello"
        requantize(path, target, dtype, group_size, overwrite=True)
        with Bundle.open(target) as bundle:
            s = bundle.storage()
        label = name if name == "fp16" else f"{name} (group {group_size})"
        print(f"  {label:<22}{s.label_generator_bytes:>16,}{s.header_bytes:>10,}{s.file_bytes:>12,}  "
              f"{s.ratio:,.0f}x  ({s.label_generator_bytes / 1e6:.3f} MB)")


def student_views(images: torch.Tensor, recipe: Recipe, views: int, batch: int = 250):
    """``views`` seeded student views of ``images`` under ``recipe``'s augmentation, in batches: (the
    views as the student sees them, CutMix/Mixup included; the same crops without the mix)."""
    generator = torch.Generator().manual_seed(0)
    batches, unmixed = [], []
    for start in range(0, views, batch):
        chosen = torch.randint(0, len(images), (min(batch, views - start),), generator=generator)
        draw = draw_augment(len(chosen), *images.shape[-2:], recipe.augment, generator)   # augment_batch's draws
        crops = apply_crops(images[chosen], draw.crops, draw.flips, draw.size, draw.patch_order)
        unmixed.append(crops)
        batches.append(apply_mix(crops.clone(), draw.mix))
    return batches, unmixed


@torch.no_grad()
def agreement(path: Path, folder: Path, group_size: int, views: int, batch: int = 250) -> None:
    """Top-1 agreement and logit error of the int8 / int4 projectors against the fp16 one, on
    ``views`` augmented student views of the bundle's synthetic images (seeded; CutMix as recorded),
    and top-1 agreement on the same crops without CutMix/Mixup (mixed views hold near-ties)."""
    source = folder / path.name
    shutil.copyfile(path, source)   # the cache is read-only to this benchmark
    with Bundle.open(source) as bundle:
        images, recipe = bundle.images(), Recipe.from_manifest(bundle.manifest["recipe"])
        reference = Projector.from_bundle(bundle)
        dtype = bundle.manifest["lora"]["dtype"] if bundle.manifest["lora"] else bundle.manifest["head"]["lora"]["dtype"]
    print(f"{path.name}: {len(images)} synthetic images, {bundle.num_classes} classes, deltas stored as {dtype}; "
          f"{views:,} views (recipe augmentation, seed 0)")
    batches, unmixed = student_views(images, recipe, views, batch)
    expected = [reference.label(view) for view in batches]
    expected_unmixed = [reference.label(view) for view in unmixed]
    for name, dtype in DELTA_DTYPES.items():
        if name == "fp16":
            continue
        target = folder / f"{path.stem}-{name}.hello"
        done = requantize(source, target, dtype, group_size, overwrite=True)
        with Bundle.open(target) as bundle:
            projector = Projector.from_bundle(bundle)
        logits = [projector.label(view) for view in batches]
        same = sum(int((a.argmax(1) == b.argmax(1)).sum()) for a, b in zip(logits, expected))
        same_unmixed = sum(int((projector.label(v).argmax(1) == b.argmax(1)).sum()) for v, b in zip(unmixed, expected_unmixed))
        error = max(float((a - b).abs().max()) for a, b in zip(logits, expected))
        spread = max(float(b.abs().max()) for b in expected)
        print(f"  {name} (group {group_size}): label generator {done.generator_bytes_before:,} -> "
              f"{done.generator_bytes_after:,} bytes; top-1 agreement with fp16 {100 * same / views:.2f} % "
              f"({same:,}/{views:,}), {100 * same_unmixed / views:.2f} % without CutMix/Mixup; max |logit difference| "
              f"{error:.4f} (max |logit| {spread:.2f})")


def smooth_noisy_images(n: int, size: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    base = (x * 4 + y * 2).expand(n, 3, size, size) + torch.randint(0, 100, (n, 3, 1, 1), generator=generator)
    noise = torch.randint(0, 24, (n, 3, size, size), generator=generator)
    return ((base + noise) % 256).to(torch.uint8)


def png_timings(folder: Path) -> None:
    n, classes = 10_000, 100
    manifest = manifest_for({"source": "local", "architecture": "hello-tiny-vit", "pretrained": None,
                             "checkpoint": None, "config": None, "fingerprint": "sha256:" + "0" * 64,
                             "image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3}, None, head_lora=None)
    manifest.update(class_names=[f"c{i}" for i in range(classes)], ipc=n // classes)
    images = smooth_noisy_images(n)
    began = time.perf_counter()
    path = write_bundle(folder / "png10k.hello", manifest, images, torch.arange(n) % classes, codec="png")
    write_s = time.perf_counter() - began
    print(f"PNG bundle: {n:,} images 3x32x32, file {path.stat().st_size / 1e6:.1f} MB, write {write_s:.2f} s")
    began = time.perf_counter()
    bundle = Bundle.open(path)
    print(f"  (c) lazy open (header + manifest + checks)   {1000 * (time.perf_counter() - began):8.1f} ms")
    for threads in (None, 1):
        began = time.perf_counter()
        decoded = bundle.images(threads=threads)
        elapsed = time.perf_counter() - began
        label = "default threads" if threads is None else f"{threads} thread"
        print(f"  (d) full decode, {label:<16}             {elapsed:8.2f} s  "
              f"({n / elapsed:,.0f} images/s, exact: {torch.equal(decoded, images)})")
    began = time.perf_counter()
    bundle.verify()
    print(f"  verify (sha256 of every tensor)              {1000 * (time.perf_counter() - began):8.1f} ms")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="RN50 bytes and 1,000 agreement views only, no PNG timings")
    parser.add_argument("--bundle", type=Path, nargs="*", default=[], help="trained bundles for (b)")
    parser.add_argument("--views", type=int, default=None, help="agreement views per bundle [default: 10,000; --quick 1,000]")
    parser.add_argument("--group-size", type=int, default=DELTA_GROUP_SIZE)
    parser.add_argument("--encoder-rank", type=int, default=EncoderLoraConfig.r, help="encoder LoRA rank of (a)")
    parser.add_argument("--head-rank", type=int, default=PAPER_HEAD_RANK, help="head LoRA rank of (a)")
    args = parser.parse_args(argv)
    views = args.views or (1_000 if args.quick else 10_000)
    torch.manual_seed(0)
    print(f"(a) label generator vs stored soft labels, ImageNet-1K shape: {CLASSES} classes, IPC {IPC}, "
          f"{EPOCHS} epochs; published FKD figure: {PUBLISHED_FKD_IPC10}")
    with tempfile.TemporaryDirectory(prefix="hello-bench-") as tmp:
        folder = Path(tmp)
        for architecture in ("RN50",) if args.quick else ("RN50", "ViT-B-16"):
            generator = label_generator_bundle(architecture, folder, args.encoder_rank, args.head_rank)
            dtype_table(generator, folder, args.group_size)
        print("(b) quantised vs fp16 projector on trained bundles")
        for path in args.bundle:
            agreement(path, folder, args.group_size, views)
        if not args.bundle:
            print("  skipped: no trained bundle (run bench/cifar10.py, or pass --bundle)")
        if not args.quick:
            png_timings(folder)


if __name__ == "__main__":
    main()

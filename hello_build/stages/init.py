"""Synthetic-image initialisation, RDED style, or loading an existing distilled image set.

For each class (following RDED, Sun et al. CVPR 2024): draw ``candidates_per_class`` real images
of the build's training part (seeded; the hold-out stays unseen), take ``crops_per_image`` random
square crops of each (RandomResizedCrop boxes in ``candidate_crop_scale``, by default 1 / factor to 1,
so whole images at factor 1; RDED uses (0.08, 1)), score every crop by the teacher's cross-entropy on the true
class, keep each image's best crop, then keep the ``ipc * factor**2`` most confident images. Each is downsampled to a
patch of ``size / factor`` and ``factor x factor`` patches are stitched into one image: patch position
k of image i holds the (k * ipc + i)-th most confident crop, as in RDED.

Differences from RDED, by design: real images are decoded at ``size`` (shorter side resized, centre
square; recorded as ``source_size``, the pixels the sources below are in) before cropping, and crops are scored at full resolution (``size x size``),
the same ``p_full`` the optional image-update stage matches features against; RDED scores the small
patch zero-padded to full size. Each patch's source is recorded as (sample position, top, left,
height, width) in ``source_size`` pixels, so ``source_crops`` recomputes any full-resolution crop
exactly instead of holding them all in memory.

Memory is bounded by one decoding batch plus one class's selected crops. Every class draws from its
own seeded stream, so the result does not depend on the batch size, the workers, or on which
classes a rank processes (``classes=shard_indices(num_classes, rank, world)``, then
``InitResult.concatenate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hello_build.data import (ImageFolderIndex, RealImages, decode_image, per_class_indices, real_image_loader,
                              scan_image_folder, shard_indices, stream_seed)
from hello_build.options import BuildOptions
from hello_build.stages.context import BuildContext
from hello_build.teachers import evaluating, final_or_mean
from hello_build.workdir import unreadable
from hello_build.errors import BuildError
from hello_format.text import shortened
from hello_format.augment import sample_crops

SOURCE_FIELDS = ("sample", "top", "left", "height", "width")  # columns of InitResult.sources
CROP_RATIO = (1.0, 1.0)  # candidate crops keep the (square) image's aspect, as RDED's crop of a share of each side


@dataclass
class InitResult:
    """Stitched images and where each patch came from."""

    images: torch.Tensor  # uint8 [N, 3, size, size], class-major, ipc per class
    labels: torch.Tensor  # int64 [N]
    sources: torch.Tensor  # int64 [N, factor**2, 5]: SOURCE_FIELDS per patch, patch order = patch_layout
    losses: torch.Tensor  # float32 [N, factor**2]: the teacher's cross-entropy of each patch's source crop
    size: int
    factor: int
    source_size: int

    @staticmethod
    def concatenate(parts: Sequence["InitResult"]) -> "InitResult":
        """Join results of disjoint class shards, ordered by label (stable)."""
        if not parts:
            raise BuildError("no initialisation results to join")
        labels = torch.cat([p.labels for p in parts])
        order = torch.argsort(labels, stable=True)
        first = parts[0]
        return InitResult(images=torch.cat([p.images for p in parts])[order], labels=labels[order],
                          sources=torch.cat([p.sources for p in parts])[order],
                          losses=torch.cat([p.losses for p in parts])[order], size=first.size,
                          factor=first.factor, source_size=first.source_size)


def patch_layout(size: int, factor: int) -> list[tuple[int, int, int, int]]:
    """``(top, left, height, width)`` of each patch in a stitched image, row-major; when ``size`` is not
    a multiple of ``factor`` the first rows/columns are one pixel larger (as RDED)."""
    base, extra = divmod(size, factor)
    extents = [base + 1 if i < extra else base for i in range(factor)]
    starts = [sum(extents[:i]) for i in range(factor)]
    return [(starts[r], starts[c], extents[r], extents[c]) for r in range(factor) for c in range(factor)]


def initialise_synthetic(
    index: ImageFolderIndex, teacher: torch.nn.Module, options: BuildOptions, *, size: int,
    batch_size: int = 64, classes: Sequence[int] | None = None,
    indices: Sequence[int] | None = None, device: str | torch.device,
    progress: bool | Callable[[int, int], None] = False,
) -> InitResult:
    """RDED-style synthetic images (``options.ipc`` per class, ``size`` pixels) for ``classes`` (default
    all) of ``index``, drawn from the samples at ``indices`` (default all; a build passes its training
    part). Settings from ``options``: ``ipc``, ``factor``,
    ``candidates_per_class`` (raised to ``ipc * factor**2`` when smaller), ``crops_per_image``,
    ``crop_scale`` (``candidate_crop_scale``), ``seed``, ``num_workers``; crops are square (``CROP_RATIO``).

    ``teacher`` maps float images in [0, 1] to logits over ``index.num_classes``; a ``TeacherSet``
    ranks as ``options.init_teacher`` says (``final_or_mean``), every crop by the same judge. It scores in eval
    mode and gets its modes back. ``batch_size`` real images are decoded at a time (``num_workers``
    processes; at ``size`` pixels), their crops scored in chunks of ``batch_size``.
    ``device``: where crops are cut, resized and scored (put the teacher there). ``progress``: True shows a
    bar; a callable gets ``(images scored, images to score)``. BuildError when a class has fewer than
    ``ipc * factor**2`` real images, or naming a real image that fails to decode (the scan leaves bad
    files out: ``scan_image_folder``'s ``skip_bad``).
    """
    _validate(options, size, batch_size)
    classes = list(range(index.num_classes)) if classes is None else [int(c) for c in classes]
    if not classes:
        return _empty_result(size, options.factor, size)
    needed = options.ipc * options.factor ** 2
    members = per_class_indices(index)
    if indices is not None:
        allowed = set(int(i) for i in indices)
        members = [[p for p in positions if p in allowed] for positions in members]
    short = [(index.class_names[c], len(members[c])) for c in classes if len(members[c]) < needed]
    if short:
        name, count = short[0]
        raise BuildError(f"class {name!r} has {count} usable real images but ipc {options.ipc} with {options.factor}x"
                         f"{options.factor} patches needs {needed} distinct ones ({len(short)} class(es) short); "
                         "lower --ipc or --factor")
    plans = [_plan_class(members[c], c, options, size) for c in classes]
    positions = [p for plan in plans for p in plan["positions"]]
    loader = real_image_loader(index, size, batch_size, indices=positions, num_workers=options.num_workers)
    score = final_or_mean(teacher, options.init_teacher == "last")
    bar = tqdm(total=len(positions), desc="score crops", disable=progress is not True, leave=False)
    losses = torch.empty(len(positions))
    best_boxes = torch.empty(len(positions), 4, dtype=torch.int64)
    boxes = torch.cat([plan["boxes"] for plan in plans])
    owners = torch.cat([torch.full((len(plan["positions"]),), c) for plan, c in zip(plans, classes)])
    cursor = 0
    with evaluating(teacher), torch.no_grad():
        for images, labels in loader:
            span = slice(cursor, cursor + len(labels))
            batch_losses, batch_boxes = _score_crops(score, images, owners[span], boxes[span], size, crops_per_candidate(options),
                                                       batch_size, device)
            losses[span], best_boxes[span] = batch_losses, batch_boxes
            cursor += len(labels)
            bar.update(len(labels))
            if callable(progress):
                progress(cursor, len(positions))
    bar.close()
    parts, start = [], 0
    for plan, label in zip(plans, classes):
        count = len(plan["positions"])
        parts.append(_stitch_class(index, label, plan["positions"], losses[start:start + count],
                                   best_boxes[start:start + count], size, size, options))
        start += count
    return InitResult.concatenate(parts)


def candidate_crop_scale(options: BuildOptions) -> tuple[float, float]:
    """The area range of the candidate crops: ``options.crop_scale``, else ``(1 / factor, 1)``. A crop
    is resized to its patch, ``size / factor`` pixels a side: at factor 1 anything smaller than the
    whole image is upsampled (blurred and zoomed in, as no test image is), so whole images are taken;
    at RDED's factor 2 crops of half the area and up are still downsampled."""
    if options.crop_scale:
        return float(options.crop_scale[0]), float(options.crop_scale[1])
    return 1.0 / max(1, options.factor), 1.0


def crops_per_candidate(options: BuildOptions) -> int:
    """``crops_per_image``, or 1 when every crop is the whole (square) image: one score suffices."""
    return 1 if candidate_crop_scale(options)[0] == 1.0 else options.crops_per_image


def candidates_per_class(options: BuildOptions) -> int:
    """``candidates_per_class``, raised to ``ipc * factor**2`` (the patches a class needs) when smaller."""
    return max(options.candidates_per_class, options.ipc * options.factor ** 2)


def check_patch_size(size: int, factor: int) -> None:
    """BuildError unless ``factor x factor`` patches of an image ``size`` pixels wide are at least a pixel each."""
    if size < factor:
        raise BuildError(f"image size {size} is smaller than --factor {factor}: patches would be empty")


def _validate(options: BuildOptions, size: int, batch_size: int) -> None:
    if options.ipc < 1 or options.factor < 1 or options.crops_per_image < 1 or batch_size < 1:
        raise BuildError("ipc, factor, crops_per_image and batch_size must all be >= 1")
    check_patch_size(size, options.factor)
    low, high = candidate_crop_scale(options)
    if not 0.0 < low <= high <= 1.0:
        raise BuildError(f"crop scale must satisfy 0 < min <= max <= 1, got {(low, high)}")


def _plan_class(members: list[int], label: int, options: BuildOptions, source_size: int) -> dict:
    """The seeded candidates of one class and their crop boxes [k, crops_per_image, 4]."""
    generator = torch.Generator().manual_seed(stream_seed(options.seed, label))
    count = min(len(members), candidates_per_class(options))
    order = torch.randperm(len(members), generator=generator)[:count].tolist()
    crops = crops_per_candidate(options)
    boxes = sample_crops(count * crops, source_size, source_size, candidate_crop_scale(options), CROP_RATIO, generator)
    return {"positions": [members[i] for i in order], "boxes": boxes.view(count, crops, 4)}


def crop_resize(image: torch.Tensor, box: Sequence[int], out_hw: tuple[int, int]) -> torch.Tensor:
    """float [3, h, w] in [0, 1]: ``box`` (top, left, height, width) of uint8 ``image`` resized
    (bilinear, antialiased)."""
    top, left, height, width = (int(v) for v in box)
    region = image[None, :, top:top + height, left:left + width].float() / 255.0
    if tuple(region.shape[-2:]) == tuple(out_hw):
        return region[0]
    return F.interpolate(region, size=out_hw, mode="bilinear", align_corners=False, antialias=True)[0].clamp_(0, 1)


def _score_crops(teacher, images, labels, boxes, size, crops_per_image, batch_size, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: the lowest teacher cross-entropy over its crops, and that crop's box."""
    images = images.to(device)
    crops = torch.stack([crop_resize(image, box, (size, size)) for image, image_boxes in zip(images, boxes)
                         for box in image_boxes])
    targets = labels.repeat_interleave(crops_per_image)
    losses = []
    for chunk, chunk_targets in zip(crops.split(batch_size), targets.split(batch_size)):
        logits = teacher(chunk)
        losses.append(F.cross_entropy(logits.float(), chunk_targets.to(logits.device), reduction="none"))
    losses = torch.cat(losses)
    losses = losses.float().cpu().view(len(images), crops_per_image)
    best = losses.argmin(dim=1)
    rows = torch.arange(len(images))
    return losses[rows, best], boxes[rows, best]


def _stitch_class(index, label, positions, losses, boxes, size, source_size, options) -> InitResult:
    chosen = torch.argsort(losses, stable=True)[:options.ipc * options.factor ** 2]   # initialise_synthetic drew enough
    layout = patch_layout(size, options.factor)
    patches = options.factor ** 2
    images = torch.zeros(options.ipc, 3, size, size, dtype=torch.uint8)
    sources = torch.zeros(options.ipc, patches, len(SOURCE_FIELDS), dtype=torch.int64)
    patch_losses = torch.zeros(options.ipc, patches)
    for rank, candidate in enumerate(chosen.tolist()):
        patch, image_index = divmod(rank, options.ipc)
        top, left, height, width = layout[patch]
        source = decode_image(index.samples[positions[candidate]][0], source_size)
        pixels = crop_resize(source, boxes[candidate], (height, width))
        images[image_index, :, top:top + height, left:left + width] = _to_uint8(pixels)
        sources[image_index, patch] = torch.tensor([positions[candidate], *boxes[candidate].tolist()])
        patch_losses[image_index, patch] = losses[candidate]
    labels = torch.full((options.ipc,), label, dtype=torch.int64)
    return InitResult(images, labels, sources, patch_losses, size, options.factor, source_size)


def _to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def _empty_result(size: int, factor: int, source_size: int) -> InitResult:
    return InitResult(torch.zeros(0, 3, size, size, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64),
                      torch.zeros(0, factor ** 2, len(SOURCE_FIELDS), dtype=torch.int64),
                      torch.zeros(0, factor ** 2), size, factor, source_size)


def source_crops(index: ImageFolderIndex, sources: torch.Tensor, size: int, source_size: int) -> torch.Tensor:
    """The full-resolution crops (uint8 [..., 3, size, size]) behind ``sources`` (int64 [..., 5], e.g.
    ``InitResult.sources`` or a slice of it), recomputed from the real images: the ``p_full`` of the
    image-update stage. Each distinct real image is decoded once per call."""
    flat = sources.reshape(-1, len(SOURCE_FIELDS))
    decoded: dict[int, torch.Tensor] = {}
    out = torch.empty(len(flat), 3, size, size, dtype=torch.uint8)
    for row, (sample, *box) in enumerate(flat.tolist()):
        if sample not in decoded:
            decoded[sample] = decode_image(index.samples[sample][0], source_size)
        out[row] = _to_uint8(crop_resize(decoded[sample], box, (size, size)))
    return out.view(*sources.shape[:-1], 3, size, size)


def load_init_images(directory, classes: Sequence[str], size: int, *, skip_bad: bool,
                     follow_external_links: bool, log: Callable[[str], None]) -> tuple[torch.Tensor, torch.Tensor]:
    """An existing distilled image set (ImageFolder layout) as (uint8 [N, 3, size, size], int64 [N]).

    Its class folders must be exactly ``classes`` (the real data's folder names); labels follow
    ``classes``' order. Images are resized like real ones (shorter side -> size, centre square).
    ``skip_bad``, ``follow_external_links``: as ``scan_image_folder``'s; the files its scan leaves out
    are said in one ``log`` line (they are not the data's, so not in ``provenance.skipped_images``).
    """
    found = scan_image_folder(directory, skip_bad=skip_bad, follow_external_links=follow_external_links)
    if found.bad:
        log(f"--init-images: {found.skipped()}")
    missing = [c for c in classes if c not in found.classes]
    extra = [c for c in found.classes if c not in set(classes)]
    if missing or extra:
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else "") if missing else "",
            f"unknown {', '.join(extra[:10])}" + (" ..." if len(extra) > 10 else "") if extra else "") if part)
        raise BuildError(f"init images in {directory} do not match the data's class folders ({detail})")
    relabel = torch.tensor([list(classes).index(name) for name in found.classes], dtype=torch.int64)
    dataset = RealImages(found, size)
    images = torch.empty(len(dataset), 3, size, size, dtype=torch.uint8)
    for position in range(len(dataset)):
        images[position], _ = dataset[position]
    labels = relabel[torch.tensor(found.targets(), dtype=torch.int64)]
    order = torch.argsort(labels, stable=True)
    return images[order], labels[order]


def run(ctx: BuildContext) -> tuple[dict, dict]:
    """RDED-style synthetic images, or the given ``--init-images``; the images, labels and sources are the tensors."""
    options = ctx.options
    if options.init_images:
        images, labels = load_init_images(options.init_images, ctx.index.classes, ctx.image_size, skip_bad=options.skip_bad,
                                          follow_external_links=options.follow_external_links, log=ctx.log)
        result = {"images": len(labels), "source": Path(options.init_images).name, "source_size": None}   # no crops
        return result, {"images": images, "labels": labels}
    group = ctx.group
    classes = None if group is None else shard_indices(ctx.index.num_classes, group.rank, group.world_size)
    crops = options.crops_per_image
    ctx.log(f"init: scoring {crops} crop{'s' * (crops != 1)} of each of up to {options.candidates_per_class} "
            f"candidate images a class (judged by --init-teacher {options.init_teacher}), "
            f"keeping {options.ipc} a class")
    made = initialise_synthetic(ctx.index, ctx.teachers, options, size=ctx.image_size, device=ctx.device,
                                progress=ctx.progress, classes=classes, indices=ctx.train.indices)
    if group is not None:  # each rank scored its classes: join them (the same images as one process picks)
        parts = ctx.work.gather("init", {"images": made.images, "labels": made.labels, "sources": made.sources,
                                         "losses": made.losses})
        made = InitResult.concatenate([InitResult(**part, size=made.size, factor=made.factor, source_size=made.source_size)
                                       for part in parts])
    result = {"images": len(made.labels), "source_size": made.source_size}
    return result, {"images": made.images, "labels": made.labels, "sources": made.sources}


def load(ctx: BuildContext, record: dict) -> None:
    """The synthetic images and labels into ``ctx``, checked as this build made them: uint8 images at its
    size, int64 labels of its classes, each patch's source a training image (a work directory copied from
    elsewhere is not trusted further than its shapes; ``--init-images`` keeps no sources)."""
    size, classes = ctx.image_size, ctx.index.num_classes
    # the sources' pixels: the image update decodes every source image at this size (100,000 px: 30 GB each)
    source_size, expected = record["result"]["source_size"], None if ctx.options.init_images else size
    if type(source_size) is not type(expected) or source_size != expected:
        raise unreadable(ctx.work.path / "init.json",
                         f"source_size {shortened(source_size)}, this build's is {expected}")
    kept = {"images": torch.uint8, "labels": torch.int64,
            **({} if ctx.options.init_images else {"sources": torch.int64})}
    # the shapes are checked from the header, before a sparse file's billions of images are read: RDED's images
    # are ipc a class (initialise_synthetic refuses a class short of them); --init-images' as many as the
    # record says, no more than its folder holds (the stage key holds the folder's digest), and no sources
    if ctx.options.init_images:
        count, patches = record["result"]["images"], 0
        held = len(scan_image_folder(ctx.options.init_images, check_headers=False,
                                     follow_external_links=ctx.options.follow_external_links))
        if type(count) is not int or not 0 < count <= held:
            raise unreadable(ctx.work.path / "init.json", f"images {shortened(count)}, its folder holds {held}")
        shapes = {"images": (count, 3, size, size), "labels": (count,)}
    else:
        count, patches = ctx.options.ipc * classes, ctx.options.factor ** 2
        shapes = {"images": (count, 3, size, size), "labels": (count,), "sources": (count, patches, len(SOURCE_FIELDS))}
    synthetic = ctx.work.load_tensors("init", shapes, dtypes=kept)
    images, labels = synthetic["images"], synthetic["labels"]
    sources = synthetic.get("sources", torch.zeros(len(images), 0, len(SOURCE_FIELDS), dtype=torch.int64))
    fits = ((not len(labels) or 0 <= int(labels.min()) <= int(labels.max()) < classes)
            and (not sources.numel() or 0 <= int(sources.min()) and int(sources[..., 0].max()) < len(ctx.index)))
    if not fits:
        raise unreadable(ctx.work.path / "init.safetensors", f"not uint8 images [N, 3, {size}, {size}] with int64 labels "
                         f"in [0, {classes}) and sources among the {len(ctx.index):,} images")
    _, top, left, height, width = sources.unbind(-1)
    # height <= size - top, not top + height <= size: a top and height of 2**62 each sum past int64 to a negative
    if not bool(((height >= 1) & (width >= 1) & (height <= size - top) & (width <= size - left)).all()):
        raise unreadable(ctx.work.path / "init.safetensors", f"not sources of {patches} patches an image with boxes "
                         f"inside the {size} px sources (top, left, height, width)")
    ctx.images, ctx.labels, ctx.sources = images, labels, sources

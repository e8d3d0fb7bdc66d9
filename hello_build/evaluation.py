"""Train a student under a label regime and measure top-1 on real validation images (`hello eval`).

Every regime runs through the same code: the same stored images (or a same-sized real subset), the
same augmentation, the same student, optimizer and schedule. Only where the soft labels come from
differs:

    projector    the bundle's label generator on each augmented batch (HeLlO)
    hard         no soft labels: cross-entropy on the (CutMix-mixed) hard labels
    teacher      the original teacher on each augmented batch (RDED style, online)
    stored       FKD style: one teacher label per view per epoch, generated beforehand to disk
                 (``stored_labels`` layout; in ``stored_dir``, else a temporary directory removed
                 afterwards) and read back while training replays the same views
    random-real  a random real subset of the same size per class, labelled by the projector
                 (DD-Ranking's comparison for the distilled images themselves)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from hello_build.data import RealImages, in_class_order, per_class_indices, scan_image_folder, shard_indices
from hello_build.distributed import Group
from hello_build.regimes import DEFAULT_REGIME, PROJECTOR_REGIMES, REGIMES, TEACHER_REGIMES
from hello_build.zoo import DEFAULT_STUDENT, DEFAULT_STUDENT_SEED, MAX_STUDENT_SEED, activation_bytes, create_model, zoo_names
from hello_format import __version__, limits
from hello_format.container import dtype_name, is_json_int, is_json_number
from hello_format.hub.resolver import open_bundle
from hello_format.augment import IMAGENET_MEAN, IMAGENET_STD
from hello_format.base import image_hw
from hello_format.dataset import LabelledImages
from hello_format.labelling import autocast, resolve_precision
from hello_format.errors import DeviceError
from hello_format.files import temporary_folder
from hello_format.runtime import cosine_lr, resolve_device
from hello_build.errors import BuildError
from hello_format.losses import kl_loss, mse_ce_loss
from hello_format.projector import Projector
from hello_format.recipe import LOSSES, OPTIMIZERS, SGD_MOMENTUM, Recipe, unread_loss_fields
from hello_format.text import bound, first_line, shortened, warn

EPOCH_LINES = 20  # at most this many epoch lines per student (the demo trains 600 epochs)
STUDENT_PRECISION = "fp32"  # students train in fp32 unless asked, on every device (hello eval --precision)
VAL_BATCH = 256  # validation images per batch, fewer where one view's activations are large (val_batch_size)
STUDENT_MEAN, STUDENT_STD = IMAGENET_MEAN, IMAGENET_STD  # what the zoo's students see
# What a bundle's recipe may make one evaluation cost (a stranger's file sets the view size, the batch
# size and the classes; --student and --batch-size override them). Legitimate runs stay far below:
# ConvNet-3 at 224 px for ImageNet-1K has 100M parameters; a batch of 1,024 ImageNet-1K labels is 1M
# values, and 1,024 images at 224 px are 51M pixels.
MAX_STUDENT_PARAMETERS = 2**28  # 1 GiB of fp32 weights
MAX_BATCH_LABELS = 2**28        # rows x classes of one batch: its soft labels and its mixed targets, 1 GiB each in fp32
# the student's activations for one batch (the fp32 outputs of its layers, sized on the meta device), at most
# the larger of these: a real bundle's recipe stays far inside (ResNet-18 at 224 px, batch 256: 7.6 GB from
# an ImageNet-1K file of 100 MB or more; ConvNet-3 at 32 px, batch 64: 143 MB), a 185 KB file of 8x8 images
# viewed at 4,096 px (110 GB for three ConvNet-3 views) does not
MIN_BATCH_ACTIVATION_BYTES = 2**32
BATCH_ACTIVATION_BYTES_PER_FILE_BYTE = 4_096
# a whole run of the file's own epochs (--epochs, the user's choice, is not bounded): every view's
# activations, every validation image's (scored at the view size), every step's fp32 parameters and, where
# a projector or teacher labels, its activations for every view, at most the larger of these. ConvNet-3
# students of a 22 MB CIFAR-10 IPC 50 bundle, scored on its 10,000 test images, compute 3.6e11 bytes
# (about 5 CPU minutes), 8.3e11 with its 32 px projector; of a 250 KB zero-shot IPC 10 bundle with an RN50
# base at 224 px, 4.7e12; ResNet-18 on an ImageNet-1K IPC 10 file of 150 MB or more (50,000 validation
# images), 5.5e14 with an RN50 projector; a 5 KB file asking a million epochs of ten 32 px views in batches
# of one (10M steps), 3.5e13 without one
MIN_RUN_BYTES = 2**43
RUN_BYTES_PER_FILE_BYTE = 2**24
# a labeller's fp32 activations per pixel of its input: RN50's 3,026 (ViT-B/16 1,930, ResNet-18 596; meta device)
LABELLER_BYTES_PER_PIXEL = 3_072


@dataclass(frozen=True)
class StudentRecipe(Recipe):
    """The bundle's recipe plus what only an evaluation chooses: the student architecture and the seed."""

    arch: str = DEFAULT_STUDENT
    seed: int = DEFAULT_STUDENT_SEED


def check_recipe(recipe: StudentRecipe) -> None:
    """Refuse a loss or optimizer hello eval does not train with (the file's open string is never trained as
    another; an unknown loss was trained as mse_ce) and, for overrides from Python, values of the wrong kind
    or outside the bounds a bundle's recipe is held to (``limits.RECIPE_*``; a negative lr failed mid-run)."""
    if recipe.optimizer not in OPTIMIZERS:
        raise BuildError(f"recipe.optimizer {shortened(recipe.optimizer)} is not one hello eval trains with "
                         f"({', '.join(OPTIMIZERS)}); choose one with --optimizer")
    if recipe.loss not in LOSSES:
        raise BuildError(f"recipe.loss {shortened(recipe.loss)} is not one of {', '.join(LOSSES)}")
    integers = {**limits.RECIPE_INTEGERS, "seed": (0, MAX_STUDENT_SEED)}
    for name, (low, high) in {**integers, **limits.RECIPE_NUMBERS}.items():
        value, integer, open_low = getattr(recipe, name), name in integers, name in limits.RECIPE_ABOVE_LOW
        if not ((is_json_int(value) if integer else is_json_number(value))
                and (low < value if open_low else low <= value) and value <= high):
            raise BuildError(f"recipe.{name} must be {'an integer' if integer else 'a number'} in "
                             f"{'(' if open_low else '['}{bound(low)}, {bound(high)}] (got {shortened(value)})")


def train_student(data: LabelledImages, recipe: StudentRecipe, *, image_size: int, device, progress: bool = True,
                  precision: str = STUDENT_PRECISION, group: Group | None = None) -> torch.nn.Module:
    """Train a fresh zoo student on ``data``'s augmented, labelled batches (soft labels if it has any).

    With ``progress``: a bar over all steps and a line (mean loss, lr) for every epoch of a short run,
    for every ``ceil(epochs / EPOCH_LINES)``-th epoch and the last of a long one. ``precision``: bf16
    runs the student's forward under bf16 autocast (fp32 weights). In a ``group``
    (torchrun), every rank trains on its rows of the same global batches under DDP, each rank's loss
    weighted by its share of the batch: the gradient, hence the student, is the single-process one
    up to the order of floating-point sums (BatchNorm students: on CUDA with SyncBatchNorm; on CPUs
    their batch statistics are per rank). Seeded by ``recipe.seed``; the caller's global RNG is left as it was."""
    check_recipe(recipe)
    device = torch.device(device)
    cuda_index = (torch.cuda.current_device() if device.index is None else device.index) if device.type == "cuda" else None
    with torch.random.fork_rng(devices=[] if cuda_index is None else [cuda_index]):
        torch.manual_seed(recipe.seed)
        return _trained(data, recipe, image_size, device, progress, precision, group)


def _trained(data, recipe, image_size, device, progress, precision, group) -> torch.nn.Module:
    student = create_model(recipe.arch, data.num_classes, image_size=image_size).to(device)
    cuda = torch.device(device).type == "cuda"
    if group is not None and cuda:
        student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(student)  # batch statistics over all ranks' rows
    model = student if group is None else DistributedDataParallel(student, device_ids=[device] if cuda else None)
    world = 1 if group is None else group.world_size
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=SGD_MOMENTUM,
                                    weight_decay=recipe.weight_decay)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    loader = data.loader(recipe.batch_size, shuffle=True, seed=recipe.seed, epochs=recipe.epochs, start_epoch=0,
                         split_batches=True)
    sizes = loader.batch_sizes()
    total, per_epoch = len(loader), len(sizes)   # the loader refuses to have no batch
    model.train()
    bar = tqdm(total=total, desc=f"student {recipe.arch}", disable=not progress, leave=False)
    epoch_loss = 0.0
    for step, batch in enumerate(loader):
        for param_group in optimizer.param_groups:
            param_group["lr"] = cosine_lr(recipe.lr, step, total)
        with autocast(device, precision):
            logits = model(batch.images).float()
        share = len(logits) * world / sizes[step % per_epoch]  # DDP averages over ranks: this weights by rows
        loss = _loss(logits, batch, recipe) * share if len(logits) else logits.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        epoch_loss += loss.item() / world
        bar.update(1)
        if (step + 1) % per_epoch == 0:
            if group is not None:
                epoch_loss = group.sum([epoch_loss])[0]  # the ranks' shares add up to the batch's mean loss
            epoch = (step + 1) // per_epoch
            if not math.isfinite(epoch_loss):   # every rank holds the same sum: all stop together
                bar.close()
                raise BuildError(f"student {recipe.arch} diverged: loss {epoch_loss} in epoch {epoch} "
                                 f"(lr {recipe.lr:g}, recipe loss {recipe.loss}); no accuracy to report")
            if progress and (epoch % math.ceil(recipe.epochs / EPOCH_LINES) == 0 or epoch == recipe.epochs):
                tqdm.write(f"epoch {epoch}/{recipe.epochs}: loss {epoch_loss / per_epoch:.4f}, "
                           f"lr {optimizer.param_groups[0]['lr']:.2e}", file=sys.stderr)
            epoch_loss = 0.0
    bar.close()
    return student.eval()


def _loss(logits: torch.Tensor, batch, recipe: StudentRecipe) -> torch.Tensor:
    """The recipe's loss, a mean over the batch's rows."""
    if batch.soft_labels.shape[1] == 0:
        return F.cross_entropy(logits, batch.hard_labels)
    if recipe.loss == "kl":
        return kl_loss(logits, batch.soft_labels, recipe.temperature)
    return mse_ce_loss(logits, batch.soft_labels, batch.hard_labels, recipe.beta)


@torch.no_grad()
def top1(model: torch.nn.Module, val: RealImages, *, device, group: Group | None = None,
         batch_size: int = VAL_BATCH) -> float:
    """Top-1 accuracy on real images, normalised as the student saw them in training (in a ``group``,
    each rank scores every world_size-th image and the counts are summed), ``batch_size`` images at a time."""
    mean = torch.tensor(STUDENT_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STUDENT_STD, device=device).view(1, 3, 1, 1)
    mine = val if group is None else torch.utils.data.Subset(val, shard_indices(len(val), group.rank, group.world_size))
    correct = 0
    for images, labels in torch.utils.data.DataLoader(mine, batch_size=batch_size):
        x = (images.to(device).float() / 255 - mean) / std
        correct += (model(x).argmax(1).cpu() == labels).sum().item()
    if group is not None:
        correct = group.sum([correct])[0]
    return correct / max(1, len(val))


def val_batch_size(activations_per_view: int) -> int:
    """Validation images per batch for a student whose layers output ``activations_per_view`` bytes per view
    (``activation_bytes``): ``VAL_BATCH``, fewer where that batch would hold more than
    ``MIN_BATCH_ACTIVATION_BYTES``, so a bundle's view size (``recipe.augment.output_size``) cannot make
    one batch of the user's images tens of gigabytes (ConvNet-3 at 448 px: 6.6 GB for 64 images)."""
    return max(1, min(VAL_BATCH, MIN_BATCH_ACTIVATION_BYTES // max(1, activations_per_view)))


def evaluate(
    bundle_path,
    val_dir,
    *,
    regime: str = DEFAULT_REGIME,
    recipe_overrides: dict | None = None,
    teacher=None,
    real_dir=None,
    follow_external_links: bool = False,
    skip_bad: bool = False,
    stored_dir=None,
    device=None,
    checkpoint=None,
    allow_remote_base: bool = False,
    precision: str | None = None,
    progress: bool = True,
    group: Group | None = None,
) -> dict:
    """Train one student from the bundle under ``regime`` and return its result (JSON-ready).
    ``allow_remote_base``: accept a base config that makes open_clip fetch a model it names.
    ``precision``: the student's and its labels' (``hello_format.labelling``; ``auto``: bf16 on CUDA); None:
    the student and a teacher's labels at ``STUDENT_PRECISION``, the projector's labels at its label path's
    own default (``LabelOptions``: bf16 on CUDA). The result records both (``label_precision``: None for hard labels).
    ``group``: the torchrun job this process is part of (``distributed.join``); every rank returns the result.
    ``follow_external_links``: follow symbolic links that lead out of ``val_dir`` and ``real_dir`` (``scan_image_folder``).
    ``skip_bad``: decode every image of ``val_dir`` and ``real_dir`` once before training and leave the
    unreadable ones out (the result counts them: ``val_skipped``); without it a validation image that fails
    to decode fails the run when it is scored, after training.
    ``teacher``: the teacher and stored regimes' labeller, a module (``hello_build.teachers.load_teacher``).
    ``recipe_overrides``: fields of ``StudentRecipe`` to train with instead of the bundle's (``check_recipe``)."""
    if regime not in REGIMES:
        raise BuildError(f"unknown label regime {regime!r}; choose one of {', '.join(REGIMES)}")
    teacher, real_dir, stored_dir = regime_inputs(regime, teacher, real_dir, stored_dir,
                                                  tell=group is None or group.is_main)
    base_flags = [flag for flag, value in (("--base-checkpoint", checkpoint), ("--allow-remote-base", allow_remote_base))
                  if value and regime not in PROJECTOR_REGIMES]
    if base_flags and (group is None or group.is_main):   # as regime_inputs says of the inputs
        warn(f"hello: the {regime} regime builds no projector: it does not use {' or '.join(base_flags)}")
    if real_dir is not None and _overlap(real_dir, val_dir) and (group is None or group.is_main):
        warn(f"hello: --real {real_dir} and --val {val_dir} share images: the random-real student is "
             "scored on images it may have trained on")
    if teacher is not None and not callable(teacher):   # a path was an AttributeError deep in labelling
        raise BuildError(f"evaluate() takes the teacher as a module, not {shortened(str(teacher))}: load it with "
                         "hello_build.teachers.load_teacher(path, arch=..., num_classes=..., image_size=...), "
                         "as hello eval --teacher FILE does")
    try:
        device = group.device if group is not None else resolve_device(device)
    except DeviceError as exc:
        raise BuildError(f"--device: {exc}") from None
    asked, precision = precision, resolve_precision(precision or STUDENT_PRECISION, device)
    if teacher is not None:
        teacher = teacher.to(device).eval()
    started = time.perf_counter()
    labelled = regime in PROJECTOR_REGIMES
    with open_bundle(bundle_path, verify=True) as bundle:
        fields = [f.name for f in dataclasses.fields(StudentRecipe)]
        unknown = sorted(set(recipe_overrides or {}) - set(fields))
        if unknown:   # a misspelt override was a TypeError from the dataclass
            raise BuildError(f"unknown recipe override {shortened(unknown[0])}; the recipe's fields: {', '.join(fields)}")
        recipe = StudentRecipe.from_manifest(bundle.manifest["recipe"], **(recipe_overrides or {}))
        if recipe.arch not in zoo_names():
            raise BuildError(f"unknown student architecture {recipe.arch!r}; choose one of {', '.join(zoo_names())}")
        check_recipe(recipe)   # before anything is decoded or built
        unused = unused_recipe_fields(regime, recipe)
        said = [name for name in unused if (recipe_overrides or {}).get(name) is not None]
        if said and (group is None or group.is_main):   # as regime_inputs says of the inputs
            warn(f"hello: the {regime} regime{'' if regime == 'hard' else f' with the {recipe.loss} loss'} "
                 f"does not use {' or '.join('--' + name for name in said)}")
        recipe.augment.patch_factor(*bundle.image_shape[2:])   # an override's factor too, as HelloDataset checks it
        size = recipe.augment.view_size(*bundle.image_shape[-2:])[1]   # square: check_cost refuses other views
        val_index = in_class_order(scan_image_folder(val_dir, skip_bad=skip_bad, follow_external_links=follow_external_links),
                                   bundle.class_folders, "validation folder")
        # what was compared (the JSON's inputs), read before training: a sampled file gone later costs no run
        inputs = {"bundle_manifest_sha256": bundle.manifest_sha256, "val_images": len(val_index),
                  "val_listing_sha256": val_index.listing_digest}
        # from the manifest and the validation folder's listing: nothing is decoded or built for a bundle
        # the check refuses
        activations_per_view = check_cost(
            recipe, bundle.image_shape, len(bundle.class_names), size,
            _label_size(regime, bundle.manifest["base"], teacher, size), bundle.file_size, val_images=len(val_index),
            file_epochs=(recipe_overrides or {}).get("epochs") is None,
            world_size=group.world_size if group is not None and torch.device(device).type != "cuda" else 1)
        if regime == "random-real" and bundle.image_shape[2] != bundle.image_shape[3]:
            raise BuildError(f"the bundle's images are {bundle.image_shape[2]}x{bundle.image_shape[3]}: the random-real "
                             "regime decodes its real images as squares of the bundle's side")
        names, folders = bundle.class_names, bundle.class_folders
        real_index = None
        if regime == "random-real":   # its real images instead of the bundle's, refused before the projector is built
            images, labels, real_index = _random_real(real_dir, folders, bundle.labels, bundle.image_shape[3], recipe.seed,
                                                      follow_external_links, skip_bad)
            inputs.update(real=str(real_dir), real_listing_sha256=real_index.listing_digest)
        else:   # as HelloDataset reads them: each on first use, never through the mapping
            images, labels = bundle.lazy_images(device), bundle.labels
        projector = Projector.from_bundle(bundle, device=device, checkpoint=checkpoint, allow_remote_base=allow_remote_base,
                                          progress=progress) if labelled else None
    augment = recipe.augment
    val = RealImages(val_index, size)

    label_precision = None if regime == "hard" else precision
    teacher_labels = _no_grad(teacher, precision) if regime in TEACHER_REGIMES else None   # online, or stored first
    if labelled:  # the library's label path (bf16 on CUDA) unless asked
        label_precision = projector.prepare_labelling({"precision": precision} if asked else None).precision
        labeller = projector.label
    elif regime == "teacher":
        labeller = teacher_labels
    else:
        labeller = None  # hard: none; stored: set below, once the labels are on disk
    data = LabelledImages(images, labels, names, augment, labeller, device=device, seed=recipe.seed, normalize=(STUDENT_MEAN, STUDENT_STD),
                          rank=group.rank if group else 0, world_size=group.world_size if group else 1)
    stored_sizes = {}
    with contextlib.ExitStack() as scope:
        if regime == "stored":
            from hello_build.stored_labels import STORED_DTYPE, StoredLabels

            directory = stored_dir
            if directory is None and (group is None or group.is_main):
                directory = scope.enter_context(temporary_folder("hello-stored-"))   # gone on SIGTERM too
            if group is not None and stored_dir is None:  # rank 0's temporary directory (one node; else --stored-dir)
                directory = group.broadcast_text(directory)
            stored = StoredLabels.prepare(directory, data, teacher_labels, recipe, group=group, progress=progress)
            stored_sizes = {"stored_label_bytes": stored.label_bytes(), "stored_disk_bytes": stored.bytes_on_disk(),
                            "stored_label_dtype": dtype_name(STORED_DTYPE)}   # the teacher's labels, rounded
            data.labeller = stored.replay()
        training = time.perf_counter()
        model = train_student(data, recipe, image_size=size, device=device, progress=progress, precision=precision,
                              group=group)
        train_seconds = time.perf_counter() - training
    accuracy = top1(model, val, device=device, group=group, batch_size=val_batch_size(activations_per_view))
    if teacher is not None:
        inputs["teacher"] = getattr(teacher, "description", type(teacher).__name__)
    return {
        "regime": regime, "top1": accuracy, "student": recipe.arch, "epochs": recipe.epochs, "seed": recipe.seed,
        "world_size": group.world_size if group else 1, "precision": precision, "label_precision": label_precision,
        "images": len(labels), "classes": len(names),
        # what the student trained with: unused fields null, the size of its views (the file's own is informational)
        "recipe": {**asdict(recipe), **dict.fromkeys(unused), "student_image_size": size},
        "seconds": round(time.perf_counter() - started, 2), "train_seconds": round(train_seconds, 2), **stored_sizes,
        **({"val_images": len(val_index), "val_skipped": len(val_index.bad)} if skip_bad else {}),
        **({"real_skipped": len(real_index.bad)} if skip_bad and real_index is not None else {}),
        "bundle": str(bundle_path), "val": str(val_dir), "inputs": inputs,
        "environment": {"device": str(device), "hello": __version__, "torch": torch.__version__},
    }


def unused_recipe_fields(regime: str, recipe: StudentRecipe) -> list[str]:
    """The recipe's loss fields the student's loss does not read (``_loss``): hard labels train with
    cross-entropy alone; ``kl`` has no ``beta``, ``mse_ce`` no ``temperature``."""
    if regime == "hard":
        return ["loss", "temperature", "beta"]
    return list(unread_loss_fields(recipe.loss))


def check_cost(recipe: StudentRecipe, shape: tuple[int, ...], num_classes: int, size: int,
               label_size: tuple[int, int] | None, file_bytes: int, *, val_images: int = 0, file_epochs: bool = True,
               world_size: int = 1) -> int:
    """BuildError unless training ``recipe``'s student on images of ``shape`` (N, C, H, W) at ``size`` px,
    then scoring it on ``val_images`` real images, stays within the bounds above: checked before anything
    is allocated (the student is sized on the meta device). ``label_size``: the input size of what labels
    each view (the projector's base, or the teacher), None for hard labels; ``file_bytes``:
    the bundle's size; ``file_epochs``: the run's length is the file's (else the user chose it);
    ``world_size``: the ranks whose BatchNorm sees only their own share of a batch (DDP on CPUs).
    Returns the student's activation bytes per view (``activation_bytes``), which size validation batches."""
    count, _, height, width = shape
    if recipe.augment.output_size is None and height != width:
        raise BuildError(f"the bundle's images are {height}x{width} and recipe.augment.output_size is unset: "
                         "hello eval trains a student on square views")
    with torch.device("meta"):
        student = create_model(recipe.arch, num_classes, image_size=size)
    parameters = sum(p.numel() for p in student.parameters())
    if parameters > MAX_STUDENT_PARAMETERS:
        raise BuildError(f"a {recipe.arch} student for {num_classes:,} classes at {size} px has {parameters:,} "
                         f"parameters (at most {MAX_STUDENT_PARAMETERS:,}): choose another --student")
    rows = min(recipe.batch_size, count)
    last = count % rows or rows   # the epoch's last batch
    for batch in sorted({rows, last}):
        share = max(1, batch // world_size)   # a rank's smallest non-empty share (shares differ by one at most)
        try:
            with torch.no_grad():
                student.train()(torch.empty(share, 3, size, size, device="meta"))
        except ValueError as exc:   # BatchNorm refuses one value per channel in training
            ranks = f", {share} on a rank of {world_size}" if world_size > 1 else ""
            raise BuildError(f"a {recipe.arch} student cannot train on a batch of {batch} of the {count:,} views at "
                             f"{size} px{ranks} ({first_line(exc)}): pass another --batch-size or --student") from None
    if rows * num_classes > MAX_BATCH_LABELS:
        raise BuildError(f"a batch of {rows:,} images x {num_classes:,} classes is {rows * num_classes:,} labels "
                         f"(at most {MAX_BATCH_LABELS:,}): pass a smaller --batch-size")
    if label_size is not None and rows * label_size[0] * label_size[1] > limits.MAX_BATCH_BASE_PIXELS:
        raise BuildError(f"a batch of {rows:,} images labelled at {label_size[0]}x{label_size[1]} px is "
                         f"{rows * label_size[0] * label_size[1]:,} pixels to label (at most "
                         f"{limits.MAX_BATCH_BASE_PIXELS:,}): pass a smaller --batch-size")
    per_view = activation_bytes(student, size)
    activations, most = rows * per_view, max(MIN_BATCH_ACTIVATION_BYTES, BATCH_ACTIVATION_BYTES_PER_FILE_BYTE * file_bytes)
    if activations > most:
        raise BuildError(f"a batch of {rows:,} {recipe.arch} views at {size} px holds {activations:,} bytes of "
                         f"activations (at most {most:,} for this {file_bytes:,}-byte file): pass a smaller "
                         "--batch-size or another --student")
    steps, views = recipe.epochs * math.ceil(count / max(1, recipe.batch_size)), recipe.epochs * count
    labelling = 0 if label_size is None else views * label_size[0] * label_size[1] * LABELLER_BYTES_PER_PIXEL
    run = (views + val_images) * per_view + steps * 4 * parameters + labelling
    most = max(MIN_RUN_BYTES, RUN_BYTES_PER_FILE_BYTE * file_bytes)
    if file_epochs and run > most:
        labelled = "" if label_size is None else f", each labelled at {label_size[0]}x{label_size[1]} px"
        scored = f", then {val_images:,} validation images at {size} px" if val_images else ""
        raise BuildError(f"the recipe's {recipe.epochs:,} epochs are {steps:,} steps over {views:,} {recipe.arch} views "
                         f"at {size} px{labelled}{scored}: {run:,} bytes of activations and weights to compute (at most "
                         f"{most:,} for this {file_bytes:,}-byte file): choose the run's length with --epochs")
    return per_view


def _label_size(regime: str, base: dict, teacher, view_size: int) -> tuple[int, int] | None:
    """What each view is resized to for its labels: the projector's base size, the teacher's input size
    (a module without one sees the views as they are), or None for hard labels."""
    if regime in PROJECTOR_REGIMES:
        return image_hw(base["image_size"])
    if regime in TEACHER_REGIMES:
        side = getattr(teacher, "input_size", None) or view_size
        return side, side
    return None


def _random_real(real_dir, folders, labels, size, seed, follow_external_links, skip_bad):
    """A random real subset with as many images per class as the bundle has, decoded at its size: its
    images, their labels and the folder's index."""
    index = in_class_order(scan_image_folder(real_dir, skip_bad=skip_bad, follow_external_links=follow_external_links),
                           folders, "real-image folder")
    generator = torch.Generator().manual_seed(seed)
    chosen, chosen_labels = [], []
    for label, positions in enumerate(per_class_indices(index)):
        count = int((labels == label).sum())
        if count > len(positions):
            raise BuildError(f"class {folders[label]} has {len(positions)} real images, fewer than the bundle's {count}")
        pick = torch.randperm(len(positions), generator=generator)[:count]
        chosen += [positions[i] for i in pick.tolist()]
        chosen_labels += [label] * count
    real = RealImages(index, size, chosen)
    return torch.stack([real[i][0] for i in range(len(real))]), torch.tensor(chosen_labels), index


def _overlap(folder, other) -> bool:
    """Whether one folder is, or lies inside, the other."""
    a, b = Path(folder).resolve(), Path(other).resolve()
    return a == b or a in b.parents or b in a.parents


def _no_grad(model, precision: str):
    """``model`` as a labeller: its logits (at ``precision``) are targets, never part of the student's graph."""

    def labeller(images):
        with torch.no_grad(), autocast(images.device, precision):
            return model(images).float()

    return labeller


def regime_inputs(regime: str, teacher, real_dir, stored_dir, *, tell: bool = True) -> tuple:
    """``(teacher, real_dir, stored_dir)`` as ``regime`` uses them: BuildError for one it needs and lacks,
    None with one warning line for one it does not use (a script may pass the same inputs to every
    regime, but none is dropped unsaid; ``tell``: this process says so, rank 0 of a torchrun job).
    ``teacher`` may be a module or the file it is loaded from."""
    if regime in TEACHER_REGIMES and teacher is None:
        raise BuildError(f"the {regime} regime labels with the original teacher: pass --teacher FILE (as for hello-build)")
    if regime == "random-real" and real_dir is None:
        raise BuildError("the random-real regime draws real images: pass --real DIR (the training ImageFolder, same class folders)")
    unused = [flag for flag, value, users in (("--teacher", teacher, TEACHER_REGIMES), ("--real", real_dir, ("random-real",)),
                                               ("--stored-dir", stored_dir, ("stored",))) if value is not None and regime not in users]
    if unused and tell:
        warn(f"hello: the {regime} regime does not use {' or '.join(unused)}")
    return (teacher if regime in TEACHER_REGIMES else None, real_dir if regime == "random-real" else None,
            stored_dir if regime == "stored" else None)

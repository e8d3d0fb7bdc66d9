"""The stage machinery: what every stage of one build reads (``BuildContext``), what a stage is
(``Stage``), which options a stage's result depends on (``stage_key``) and how a recorded result is
reused or made (``run_stage``). The declared list of stages is ``hello_build.stages.plan.STAGES``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hello_build.data import ImageFolderIndex, RealImages
from hello_build.distributed import Group
from hello_build.options import BuildOptions
from hello_build.teachers import factory_source, is_factory
from hello_build.workdir import WorkDir, unreadable
from hello_format.augment import AugmentConfig
from hello_format.digests import file_sha256
from hello_format.projector import Projector
from hello_format.text import cut, first_line

# The order in which results depend on each other; an option's ``stage`` (hello_build.options) is the
# first of these it changes. "data" and "base" are the build's set-up; "recipe" (the student's view)
# comes before "text_head" because the head's fidelity is measured on student views.
ORDER = ("data", "base", "teacher", "recipe", "text_head", "transfer", "init", "image_update", "view_transfer")
# what comes before a stage in ORDER but is not read by it: the teachers alone choose the synthetic images,
# so a new text head or LoRA transfer does not choose them again (at ImageNet's scale, hours of teacher passes)
NOT_READ = {"init": ("text_head", "transfer")}


def stage_key(options: BuildOptions, name: str, listing: str) -> dict:
    """Options that stage ``name``'s result depends on (its own and those of every earlier stage it reads), what
    the files they name hold, so that a teacher, base or adapter replaced at the same path is not
    mistaken for the one an earlier run used, and the data's ``listing`` (``ImageFolderIndex.listing_digest``),
    so that images added to or removed from the data folder are not split as the earlier run split them
    (in place of the folder's path: the same images copied elsewhere, a node's local disk, resume)."""
    # the data folder by its listing, from the scan every run makes (hashing a dataset per run would cost
    # more than most stages), not by its path
    read = tuple(group for group in ORDER[: ORDER.index(name) + 1] if group not in NOT_READ.get(name, ()))
    return {**options_key(options, read, leave_out=("data",)), "data_listing": listing}


def options_key(options: BuildOptions, stages: tuple[str, ...], *, leave_out: tuple[str, ...] = ()) -> dict:
    """The options ``stages`` read but ``leave_out``, and under ``contents`` what the files they name hold
    (``_content_digest``)."""
    key = {option: value for option, value in options.stage_key(stages).items() if option not in leave_out}
    named = {option: value if isinstance(value, list) else [value] for option, value in key.items()
             if option in options.path_fields() and value}
    return {**key, "contents": {option: [_content_digest(v) for v in values] for option, values in sorted(named.items())}}


def _content_digest(value: str) -> str | None:
    """sha256 of a file; of the names, sizes and modification times of a folder's files; of a
    ``module:factory`` teacher's module file (its own file, not what it imports); else None."""
    path = Path(value)
    if not path.exists() and is_factory(value):
        source = factory_source(value)
        return None if source is None else _file_digest(source)
    if path.is_file():
        return _file_digest(path)
    if path.is_dir():
        listing = sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                         for p in path.rglob("*") if p.is_file())
        return hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    return None


def _file_digest(path: Path) -> str:
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """Hashed once per file state (size and modification time) in a process: every stage's key asks."""
    return file_sha256(path)


@dataclass
class BuildContext:
    """What the stages of one build read and fill in: the options (resolved), data, models, work directory."""

    options: BuildOptions
    work: WorkDir
    index: ImageFolderIndex
    train: RealImages                # the real images the transfers see
    holdout: RealImages              # the real images fidelity is measured on
    device: torch.device
    image_size: int
    augment: AugmentConfig           # the student's view (the recipe's), also the transfers' view of real images
    projector: Projector
    progress: bool
    log: Callable[[str], None]
    group: Group | None = None       # the torchrun job this process is part of (None: alone)
    teachers: object = None          # a TeacherSet, from the teacher stage
    images: torch.Tensor | None = None   # the synthetic images (uint8 [N, 3, S, S]) and their labels
    labels: torch.Tensor | None = None
    sources: torch.Tensor | None = None  # each patch's source (init.SOURCE_FIELDS), for the image update
    results: dict = field(default_factory=dict)   # each stage's recorded result, by name
    timings: dict = field(default_factory=dict)   # seconds per step, for the manifest


@dataclass(frozen=True)
class Stage:
    """One step of the build: ``run(ctx) -> (result, tensors)`` makes its result (JSON-able dict, tensors
    or None), kept in the work directory; ``load(ctx, record)`` puts a result (fresh or resumed; None
    when the stage is off) into the context. ``when(options)``: whether it runs in this build.
    ``fields``: the result's fields the build reads (a resumed record without one is refused)."""

    name: str
    run: Callable[[BuildContext], tuple[dict, dict | None]]
    load: Callable[[BuildContext, dict | None], None]
    when: Callable[[BuildOptions], bool] = lambda options: True
    fields: tuple[str, ...] = ()


def run_stage(ctx: BuildContext, stage: Stage) -> dict | None:
    """The recorded result of ``stage`` (reused when its options are unchanged, else made by ``stage.run``),
    then loaded into ``ctx``; None when the stage is off. A result's ``resumed_seconds`` (time earlier,
    interrupted runs of the stage spent) is added to its time."""
    record, resumed = None, False
    if stage.when(ctx.options):
        key = stage_key(ctx.options, stage.name, ctx.index.listing_digest)
        record, changed = ctx.work.lookup(stage.name, key, stage.fields)
        resumed = record is not None
        if resumed:
            ctx.log(f"{stage.name}: reused from {ctx.work.path} (its options unchanged; {record['seconds']:.0f} s when it ran)")
        if changed:   # a work directory of another build (or an older version): say why nothing is reused
            shown = ", ".join(cut(name, 40) for name in changed[:6])
            shown += f" and {len(changed) - 6} more" if len(changed) > 6 else ""
            ctx.log(f"{stage.name}: rerun: the record in {ctx.work.path} was made with other {shown}")
        if record is None:
            ctx.work.forget(stage.name)   # before its tensors are overwritten: never an old record over new tensors
            started = time.perf_counter()
            result, tensors = stage.run(ctx)
            seconds = time.perf_counter() - started + result.pop("resumed_seconds", 0.0)
            record = ctx.work.finish(stage.name, key, result, seconds, tensors=tensors)
        ctx.timings[stage.name] = record["seconds"]
        ctx.results[stage.name] = record["result"]
    try:
        stage.load(ctx, record)
    except (KeyError, TypeError, IndexError, ValueError) as exc:   # a resumed result's field of another shape or type
        if not resumed:
            raise
        reason = f"{type(exc).__name__}: {first_line(exc)[:120]}"
        raise unreadable(ctx.work.path / f"{stage.name}.json", reason) from None
    if ctx.projector is not None:   # between stages it labels: in eval mode whether its stage ran or was reused
        ctx.projector.eval()
    return record

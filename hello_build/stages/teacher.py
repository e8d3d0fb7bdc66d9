"""Stage "teacher": the teacher(s) the projector learns to imitate.

Given files are loaded (nothing to record); with ``--train-teacher`` a zoo teacher is trained on the
non-held-out images and the checkpoints of its trajectory kept as weak teachers, recorded in the work
directory like every stage's result, so a rerun reuses them. Under torchrun the training is DDP
(``teacher_training.train_teacher``).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from hello_build import teachers as teacher_io
from hello_build.teacher_training import TeacherTraining, train_teacher
from hello_build.stages.context import BuildContext, stage_key
from hello_build.workdir import unreadable
from hello_build.zoo import create_model
from hello_format.text import first_unsafe_char, shortened

# a trained teacher's description (about 200 characters) as its record may hold it: it is logged and
# becomes the bundle's provenance.teacher, so a copied work directory's text is bounded and printable
MAX_DESCRIPTION_CHARS = 1_000


def trains(options) -> bool:
    """Whether this build trains its teacher (the stage's result) instead of loading given files."""
    return options.train_teacher is not None


def training(options) -> TeacherTraining:
    """How ``--train-teacher`` trains (``teacher_training.TeacherTraining``): ``--teacher-X`` is the config's ``X``."""
    return TeacherTraining(**options.section(TeacherTraining, "teacher_"))


def run(ctx: BuildContext) -> tuple[dict, dict]:
    """Train a teacher of ``--train-teacher``'s architecture; its kept checkpoints are the tensors."""
    options = ctx.options
    _folder(ctx)   # the final teacher's (_leave_final_file): a folder of the user's is refused before the training
    epochs = options.teacher_epochs
    ctx.log(f"teacher: training {options.train_teacher} for {epochs} epochs on {len(ctx.train.indices)} images, "
            f"{options.teacher_checkpoints} checkpoint(s) kept as weak teachers")
    started = time.perf_counter()

    def epoch_done(epoch: int, loss: float) -> None:   # a line an epoch, as the transfer logs (in place of a bar)
        seconds = time.perf_counter() - started
        ctx.log(f"teacher epoch {epoch}/{epochs}: loss {loss:.4f} ({seconds / epoch:.0f} s/epoch, "
                f"about {seconds / epoch * (epochs - epoch):.0f} s left)")

    trained = train_teacher(
        ctx.index, options.train_teacher, training(options), input_size=ctx.image_size, indices=ctx.train.indices,
        seed=options.seed, device=ctx.device, num_workers=options.num_workers,
        precision=options.precision, progress=epoch_done, group=ctx.group,
    )
    tensors = {f"{k}/{name}": v for k, t in enumerate(trained) for name, v in t.net.state_dict().items()}
    return {"checkpoints": len(trained), "description": [t.description for t in trained]}, tensors


def _folder(ctx: BuildContext) -> Path:
    """The stage's folder in the work directory (``WorkDir.stage_dir``), discarded with the stage."""
    return ctx.work.stage_dir("teacher", stage_key(ctx.options, "teacher", ctx.index.listing_digest), log=ctx.log)


def _leave_final_file(ctx: BuildContext, final: teacher_io.Teacher) -> None:
    """The final trained teacher as a file hello eval's teacher regimes load, in the stage's folder:
    written (rank 0) after the training, and again by a rerun that reuses the stage when it is gone."""
    arch = ctx.options.train_teacher
    path = _folder(ctx) / f"teacher_{arch}.safetensors"
    if (ctx.group is None or ctx.group.is_main) and not path.exists():
        teacher_io.save_teacher(final, path, arch)
    ctx.log(f"teacher: the final {arch} is {path} (hello eval --regime teacher --teacher FILE)")


def load(ctx: BuildContext, record: dict | None) -> None:
    """``ctx.teachers``: the trained checkpoints of ``record``, or (no record) the given teacher files."""
    options, classes = ctx.options, ctx.index.num_classes
    if record is not None:
        count, descriptions = record["result"]["checkpoints"], record["result"]["description"]
        if not (isinstance(count, int) and isinstance(descriptions, list)
                and 1 <= count <= min(len(descriptions), training(options).checkpoints)
                and all(isinstance(text, str) and len(text) <= MAX_DESCRIPTION_CHARS and first_unsafe_char(text) is None
                        for text in descriptions[:count])):
            raise unreadable(ctx.work.path / "teacher.json", f"{shortened(count)} checkpoints, described by "
                                                               f"{shortened(descriptions)}")
        with torch.random.fork_rng(devices=[]), torch.device("meta"):   # each checkpoint's names and shapes
            shaped = create_model(options.train_teacher, classes, image_size=ctx.image_size).state_dict()
        state = ctx.work.load_tensors("teacher", {f"{k}/{n}": tuple(v.shape)
                                                  for k in range(count) for n, v in shaped.items()})
        members = [teacher_io.zoo_teacher(options.train_teacher, classes,
                                          {n.split("/", 1)[1]: v for n, v in state.items() if n.startswith(f"{k}/")},
                                          input_size=ctx.image_size, description=descriptions[k])
                   for k in range(count)]
        _leave_final_file(ctx, members[-1])
    else:
        started = time.perf_counter()
        members = [teacher_io.load_teacher(path, arch=options.teacher_arch, num_classes=classes,
                                           image_size=ctx.image_size, trust_code=options.trust_teacher_code)
                   for path in options.teacher]
        ctx.timings["teacher"] = time.perf_counter() - started
    for member in members:
        teacher_io.check_teacher(member, classes)
    combined = f" ({options.teacher_combine})" if options.teacher_combine is not None else ""   # None: never combined
    ctx.log(f"teachers: {len(members)}{combined}: {members[-1].description}")
    ctx.teachers = teacher_io.TeacherSet([m.to(ctx.device).eval() for m in members], combine=options.teacher_combine,
                                         seed=options.seed)

"""Run the HeLlO stages from an image folder and teacher(s) to a ``.hello`` bundle.

    teacher(s) -> text-guided head -> LoRA transfer -> synthetic init -> image update
        -> synthetic-view transfer -> write

Each stage's result is kept in the work directory (``hello_build.workdir``); a rerun with the same
options resumes after the last finished stage (and inside the transfer, after the last epoch).
Timings, fidelity before/after the transfer and every option used go into the manifest.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

import hello_format
import open_clip
from hello_build import teachers as teacher_io
from hello_build.data import ImageFolderIndex, RealImages, holdout_split, scan_image_folder
from hello_build.options import BuildOptions
from hello_build.stages.image_update import ImageUpdateOptions, run_image_update
from hello_build.stages.init import initialise_synthetic, load_init_images, source_crops
from hello_build.stages.transfer import (TransferOptions, ViewTransferOptions, fidelity, load_lora_state, lora_state,
                                         run_transfer, run_view_transfer, view_agreement)
from hello_build.workdir import WorkDir
from hello_format.augment import AugmentConfig
from hello_format.base import create_base, describe_base, embedded_tensors
from hello_format.bundle import Bundle, write_bundle
from hello_build.errors import BuildError
from hello_format.head import DEFAULT_TEMPLATES, SINGLE_TEMPLATE, head_lora_manifest
from hello_format.lora import default_targets, lora_manifest
from hello_format.manifest import FORMAT_VERSION
from hello_format.projector import Projector
from hello_format.recipe import Recipe

# The order results depend on each other; an option's stage is the first one that reads it (the
# student-view options of "recipe" shape the views the fidelity of "text_head" is measured on).
STAGES = ("data", "base", "teacher", "recipe", "text_head", "transfer", "init", "image_update", "view_transfer")


def _key(options: BuildOptions, stage: str) -> dict:
    """Options that ``stage``'s result depends on: its own and those of every earlier stage."""
    return options.stage_key(STAGES[: STAGES.index(stage) + 1])


def student_recipe(options: BuildOptions, image_size: int) -> Recipe:
    """The student recipe the bundle records; its view is also the transfer's view of real images."""
    augment = AugmentConfig(
        output_size=image_size, scale=(options.crop_min_scale, 1.0), hflip=options.hflip,
        patch_shuffle=options.patch_shuffle, cutmix=options.cutmix, mixup=options.mixup,
    )
    return Recipe(loss=options.loss, temperature=options.temperature, beta=options.beta, epochs=options.epochs,
                  batch_size=options.student_batch_size, lr=options.student_lr, student_image_size=image_size,
                  augment=augment)


@dataclass
class _Run:
    """What every stage of one build reads: the options, the data, the models and the work directory."""

    options: BuildOptions
    work: WorkDir
    index: ImageFolderIndex
    device: torch.device
    image_size: int
    augment: AugmentConfig
    teachers: teacher_io.TeacherSet
    projector: Projector
    progress: bool
    log: Callable[[str], None]
    timings: dict = field(default_factory=dict)

    def stage(self, name: str, run) -> dict:
        """The recorded result of stage ``name``, running ``run() -> (result, tensors)`` if needed. A
        result's ``resumed_seconds`` (time earlier, interrupted runs of the stage spent) is added to its time."""
        key = _key(self.options, name)
        record = self.work.result(name, key)
        if record is None:
            started = time.perf_counter()
            result, tensors = run()
            seconds = time.perf_counter() - started + result.pop("resumed_seconds", 0.0)
            record = self.work.finish(name, key, result, seconds, tensors=tensors)
        self.timings[name] = record["seconds"]
        return record


def build(options: BuildOptions, *, progress: bool = True, log=None) -> dict:
    """Distil ``options.data`` into ``options.output``; returns a summary (fidelity, timings, sizes)."""
    log = log or (lambda message: tqdm.write(message))
    _check(options)
    device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    timings: dict[str, float] = {}

    started = time.perf_counter()
    index = scan_image_folder(options.data, options.class_names, skip_bad=options.skip_bad)
    if index.bad:
        log(f"skipped {len(index.bad)} unreadable image(s), e.g. {index.bad[0]}")
    _check_data(options, index)
    timings["data"] = time.perf_counter() - started

    started = time.perf_counter()
    clip_model, base_section = _load_base(options, device)
    size = base_section["image_size"]
    options = _resolved(options, index, clip_model, int(size if isinstance(size, int) else size[0]))
    image_size = options.image_size
    timings["base"] = time.perf_counter() - started

    train_idx, holdout_idx = holdout_split(index, options.holdout, options.seed)
    work = WorkDir(options.workdir_path(), fresh=options.fresh)
    teachers = _teachers(options, index, train_idx, image_size, device, work, timings, progress, log)
    log(f"data: {len(index)} images, {index.num_classes} classes ({len(train_idx)} train / {len(holdout_idx)} held out); device {device}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)  # peft and the head draw their LoRA A init from the global RNG
        projector = _projector(options, clip_model, base_section, index, device)
    run = _Run(options, work, index, device, image_size, student_recipe(options, image_size).augment, teachers, projector,
               progress, log, timings)
    holdout = RealImages(index, image_size, holdout_idx, skip_bad=options.skip_bad)

    train = RealImages(index, image_size, train_idx, skip_bad=options.skip_bad)
    before = _text_head_stage(run, holdout)
    after = _transfer_stage(run, train, holdout)
    images, labels, init = _init_stage(run)
    images, image_update = _image_update_stage(run, images, labels, init)
    view_transfer = _view_transfer_stage(run, images, labels, train, holdout)

    started = time.perf_counter()
    agreement = _synthetic_agreement(run, images)
    run.log(f"agreement with the final teacher on fresh student views of the synthetic images: {agreement['agreement']:.3f} "
            f"({agreement['views']} views)")
    manifest = _manifest(run, before, after, agreement, image_update, view_transfer, _images_per_class(labels, index.num_classes))
    tensors = projector.bundle_tensors()
    if options.embed_base:
        tensors.update(embedded_tensors(clip_model))
    path = write_bundle(options.output, manifest, images, labels, tensors, codec=options.codec, quality=options.quality)
    timings["write"] = time.perf_counter() - started
    with Bundle.open(path) as bundle:
        storage = bundle.storage()
    log(f"wrote {path}: {storage.file_bytes:,} bytes; label generator {storage.label_generator_bytes:,} bytes "
        f"vs {storage.stored_label_bytes:,} bytes of stored soft labels ({storage.ratio:,.0f}x)")
    return {"output": str(path), "skipped_images": len(index.bad), "fidelity_before": before, "fidelity_after": after,
            "view_transfer": view_transfer, "synthetic_agreement": agreement["agreement"], "timings": timings, "file_bytes": storage.file_bytes,
            "label_generator_bytes": storage.label_generator_bytes}


def _measure(run: _Run, holdout) -> dict:
    return fidelity(run.projector, run.teachers, holdout, run.augment, batch_size=run.options.transfer_batch_size, device=run.device)


def _text_head_stage(run: _Run, holdout) -> dict:
    """Stage 1: the untrained projector is CLIP's zero-shot classifier; measure its fidelity."""
    record = run.stage("text_head", lambda: ({"fidelity": _measure(run, holdout)}, None))
    run.log(f"zero-shot head: {_describe(record['result']['fidelity'])}")
    return record["result"]["fidelity"]


def _transfer_stage(run: _Run, train, holdout) -> dict:
    """Stage 2: train the LoRA to imitate the teacher(s) on the real images (resumable per epoch)."""
    options = run.options

    def transfer():
        started = time.perf_counter()
        history, seconds = run_transfer(
            run.projector, run.teachers, train, run.augment,
            TransferOptions(epochs=options.transfer_epochs, batch_size=options.transfer_batch_size, lr=options.transfer_lr,
                            lambda_ce=options.lambda_ce, seed=options.seed, loss=options.transfer_loss),
            checkpoint_dir=run.work.stage_dir("transfer", _key(options, "transfer")), device=run.device,
            num_workers=options.num_workers, progress=run.progress, log=run.log,
        )
        resumed = max(0.0, seconds - (time.perf_counter() - started))
        return {"loss": history, "fidelity": _measure(run, holdout), "resumed_seconds": resumed}, lora_state(run.projector)

    record = run.stage("transfer", transfer)
    load_lora_state(run.projector, run.work.load_tensors("transfer"))
    run.log(f"after transfer: {_describe(record['result']['fidelity'])}")
    return record["result"]["fidelity"]


def _init_stage(run: _Run) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Stage 3: RDED-style synthetic images, or the given --init-images; returns (images, labels, record)."""
    options = run.options

    def initialise():
        if options.init_images:
            images, labels = load_init_images(options.init_images, run.index.classes, run.image_size, skip_bad=options.skip_bad)
            return {"images": len(labels), "source": Path(options.init_images).name}, {"images": images, "labels": labels}
        made = initialise_synthetic(
            run.index, run.teachers, size=run.image_size, ipc=options.ipc, factor=options.factor,
            candidates_per_class=options.candidates_per_class, crops_per_image=options.crops_per_image,
            crop_scale=tuple(options.crop_scale), seed=options.seed, num_workers=options.num_workers,
            skip_bad=options.skip_bad, device=run.device, progress=run.progress,
        )
        result = {"images": len(made.labels), "source_size": made.source_size, "skipped": len(made.skipped)}
        return result, {"images": made.images, "labels": made.labels, "sources": made.sources}

    record = run.stage("init", initialise)
    synthetic = run.work.load_tensors("init")
    return synthetic["images"], synthetic["labels"], {**record, "sources": synthetic.get("sources")}


def _image_update_stage(run: _Run, images, labels, init: dict) -> tuple[torch.Tensor, dict | None]:
    """Stage 4 (optional): move the stored pixels towards their patches' full-resolution sources."""
    options = run.options
    if options.image_update_steps <= 0:
        return images, None

    def update():
        boxes, source_size = init["sources"], init["result"]["source_size"]
        updated, result = run_image_update(
            images, lambda rows: source_crops(run.index, boxes[rows], run.image_size, source_size), options.factor,
            run.projector.encode, ImageUpdateOptions(steps=options.image_update_steps, lr=options.image_update_lr),
            device=run.device, progress=run.progress,
        )
        result["agreement_before"] = _synthetic_agreement(run, images)["agreement"]
        result["agreement_after"] = _synthetic_agreement(run, updated)["agreement"]
        return result, {"images": updated}

    record = run.stage("image_update", update)
    result = record["result"]
    run.log(f"image update: feature error {result['feature_mse_before']:.4g} -> {result['feature_mse_after']:.4g}")
    return run.work.load_tensors("image_update")["images"], result


def _view_transfer_stage(run: _Run, images, labels, train, holdout) -> dict | None:
    """Stage 5 (ours): fit the LoRA on teacher-labelled student views of the synthetic images too."""
    options = run.options
    if options.view_transfer_steps <= 0:
        return None

    def view_transfer():
        result = run_view_transfer(
            run.projector, run.teachers, images, labels, train, run.augment,
            ViewTransferOptions(steps=options.view_transfer_steps, batch_size=options.transfer_batch_size,
                                lr=options.view_transfer_lr, lambda_ce=options.lambda_ce, seed=options.seed,
                                loss=options.transfer_loss, real_fraction=options.view_transfer_real_fraction,
                                target=options.view_transfer_target, eval_every=options.view_transfer_eval_every),
            device=run.device, num_workers=options.num_workers, progress=run.progress, log=run.log,
        )
        return {**result, "fidelity": _measure(run, holdout)}, lora_state(run.projector)

    record = run.stage("view_transfer", view_transfer)
    load_lora_state(run.projector, run.work.load_tensors("view_transfer"))
    result = record["result"]
    run.log(f"after synthetic-view transfer (step {result['kept_step']} kept): held-out real views {_describe(result['fidelity'])}")
    return result


def _check(options: BuildOptions) -> None:
    if not options.data or not options.output:
        raise BuildError("give the training image folder and the output path")
    if options.ipc < 1 or options.factor < 1:
        raise BuildError(f"--ipc and --factor must be at least 1 (got {options.ipc}, {options.factor})")
    if not (options.teacher or options.train_teacher):
        raise BuildError("give a teacher (--teacher FILE, repeatable) or --train-teacher ARCH")
    if options.teacher and options.train_teacher:
        raise BuildError("give either --teacher or --train-teacher, not both")
    if not 0 <= options.view_transfer_real_fraction < 1 or options.view_transfer_eval_every < 1:
        raise BuildError("--view-transfer-real-fraction must be in [0, 1) (some synthetic views in every batch) and "
                         f"--view-transfer-eval-every at least 1 (got {options.view_transfer_real_fraction}, "
                         f"{options.view_transfer_eval_every})")
    if options.init_images and options.image_update_steps > 0:
        raise BuildError("--image-update-steps needs the patches' sources: it cannot be used with --init-images")
    if not options.base_config and open_clip.get_model_config(options.base) is None:
        raise BuildError(f"unknown base architecture {options.base!r}: not an open_clip model config; "
                         "name one (e.g. RN50, ViT-B-16) or give a custom one with --base-config FILE")


def _check_data(options: BuildOptions, index) -> None:
    """What the scanned data must allow, checked before any work starts."""
    if options.init_images:
        found = scan_image_folder(options.init_images, check_headers=False).classes
        if found != index.classes:
            missing = [c for c in index.classes if c not in found]
            extra = [c for c in found if c not in index.classes]
            raise BuildError(f"--init-images {options.init_images} has class folders that do not match {options.data} "
                             f"(missing: {', '.join(missing[:10]) or 'none'}; unknown: {', '.join(extra[:10]) or 'none'})")
        return
    needed = options.ipc * options.factor ** 2
    counts = {name: 0 for name in index.class_names}
    for _, label in index.samples:
        counts[index.class_names[label]] += 1
    short = [name for name, count in counts.items() if count < needed]
    if short:
        raise BuildError(f"class {short[0]!r} has {counts[short[0]]} images but --ipc {options.ipc} with --factor {options.factor} "
                         f"needs {needed} ({len(short)} class(es) short); lower --ipc or --factor")


def _resolved(options: BuildOptions, index, clip_model, base_size: int) -> BuildOptions:
    """The options as this build uses them, so the bundle records what was actually used: defaults
    that depend on the data or base filled in, options of a path not taken (training a teacher when
    teachers were given) set to None."""
    head_rank = options.head_rank or min(128, index.num_classes)
    trained = options.train_teacher is not None
    return dataclasses.replace(
        options, image_size=options.image_size or base_size, head_rank=head_rank,
        head_alpha=options.head_alpha or float(head_rank),
        lora_targets=options.lora_targets or default_targets(clip_model.visual),
        teacher_epochs=options.teacher_epochs if trained else None,
        teacher_checkpoints=options.teacher_checkpoints if trained else None,
    )


def _projector(options: BuildOptions, clip_model, base_section: dict, index, device) -> Projector:
    """The trainable projector: CLIP's zero-shot classifier plus zero-initialised LoRA."""
    return Projector.for_training(
        clip_model, base_section, index.class_names,
        templates=list(DEFAULT_TEMPLATES if options.templates == "ensemble" else SINGLE_TEMPLATE),
        lora_manifest=lora_manifest(clip_model.visual, r=options.lora_rank, lora_alpha=options.lora_alpha,
                                    target_modules=options.lora_targets),
        head_lora_manifest=head_lora_manifest(options.head_rank, options.head_alpha),
        logit_scale=float(clip_model.logit_scale.exp().item()), train_logit_scale=options.train_logit_scale,
    ).to(device)


def _load_base(options: BuildOptions, device: torch.device):
    """The CLIP base as the options name it; returns (model, manifest base section)."""
    config = json.loads(Path(options.base_config).read_text()) if options.base_config else None
    if options.base_checkpoint:
        source, pretrained = ("embedded" if options.embed_base else "local"), None
    else:
        source, pretrained = "open_clip", options.pretrained
    request = {"source": "local" if options.base_checkpoint else "open_clip", "architecture": options.base,
               "pretrained": pretrained, "config": config, "checkpoint": options.base_checkpoint}
    model = create_base(request, checkpoint=options.base_checkpoint, device=device)
    section = describe_base(model, architecture=options.base, pretrained=pretrained, source=source, config=config,
                            checkpoint=Path(options.base_checkpoint).name if options.base_checkpoint and source == "local" else None)
    return model, section


def _teachers(options, index, train_idx, image_size, device, work, timings, progress, log):
    """Load the teacher(s), or train one on the non-held-out images and keep its trajectory."""
    started = time.perf_counter()
    if options.train_teacher:
        key = _key(options, "teacher")
        done = work.result("teacher", key)
        if done is None:
            trained = teacher_io.train_teacher(
                index, options.train_teacher, epochs=options.teacher_epochs, keep=options.teacher_checkpoints,
                input_size=image_size, indices=train_idx, seed=options.seed, device=device,
                num_workers=options.num_workers, skip_bad=options.skip_bad, progress=progress,
            )
            tensors = {f"{k}/{name}": v for k, t in enumerate(trained) for name, v in t.net.state_dict().items()}
            done = work.finish("teacher", key, {"checkpoints": len(trained), "description": [t.description for t in trained]},
                               time.perf_counter() - started, tensors=tensors)
        state = work.load_tensors("teacher")
        members = [teacher_io.zoo_teacher(options.train_teacher, index.num_classes, {n.split("/", 1)[1]: v for n, v in state.items() if n.startswith(f"{k}/")},
                                          input_size=image_size, description=done["result"]["description"][k])
                   for k in range(done["result"]["checkpoints"])]
        timings["teacher"] = done["seconds"]
    else:
        members = [teacher_io.load_teacher(path, arch=options.teacher_arch, num_classes=index.num_classes, image_size=image_size, trust_code=options.trust_teacher_code) for path in options.teacher]
        timings["teacher"] = time.perf_counter() - started
    for member in members:
        teacher_io.check_teacher(member, index.num_classes)
    log(f"teachers: {len(members)} ({options.teacher_combine}): {members[-1].description}")
    return teacher_io.TeacherSet([m.to(device).eval() for m in members], combine=options.teacher_combine, seed=options.seed)


def _describe(measured: dict) -> str:
    if not measured["images"]:
        return "fidelity not measured: no held-out images (raise --holdout)"
    return f"agreement with teacher {measured['agreement']:.3f}, KL {measured['kl']:.3f} ({measured['images']} held-out views)"


def _synthetic_agreement(run: _Run, images: torch.Tensor) -> dict:
    """Projector/teacher top-1 agreement on fresh student views (augmented, CutMixed) of the synthetic
    images, from a seed neither transfer phase draws; against the teacher the view transfer imitates."""
    return view_agreement(run.projector, run.teachers, images, run.augment, device=run.device,
                          target=run.options.view_transfer_target)


def _images_per_class(labels: torch.Tensor, num_classes: int) -> int | None:
    """The manifest's ipc: the images per class when every class has as many (--init-images sets may not)."""
    counts = torch.bincount(labels, minlength=num_classes)
    return int(counts[0]) if bool((counts == counts[0]).all()) else None


def _manifest(run: _Run, before, after, agreement, image_update, view_transfer, ipc) -> dict:
    options = run.options
    return {
        "format_version": FORMAT_VERSION,
        "class_names": list(run.index.class_names),
        "ipc": ipc,
        **run.projector.manifest_sections(),
        "recipe": student_recipe(options, run.image_size).to_manifest(),
        "provenance": {
            "source_dataset": options.source_dataset or Path(options.data).resolve().name,
            "class_folders": list(run.index.classes),
            "skipped_images": len(run.index.bad),
            "teacher": run.teachers.description,
            "builder": {"name": "hello-build", "version": hello_format.__version__, "options": options.recorded()},
            "timings": {k: round(v, 3) for k, v in run.timings.items()},
            "fidelity": {"before_transfer": before, "after_transfer": after, "synthetic_agreement": agreement["agreement"],
                         "synthetic_views": agreement["views"], "synthetic_target": run.options.view_transfer_target,
                         **({"after_view_transfer": view_transfer["fidelity"],
                             "view_transfer_kept_step": view_transfer["kept_step"]} if view_transfer else {}),
                         **({"image_update": image_update} if image_update else {})},
        },
    }

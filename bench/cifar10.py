"""CIFAR-10 benchmark: student top-1 under every label regime, against the bytes each regime's labels cost.

    python bench/cifar10.py                       # the full grid (hours on a CPU)
    python bench/cifar10.py --ipc 10 --seeds 0 --students convnet3 --student-epochs 150 ...

Protocol (all splits fixed by --split-seed, all models seeded):
- CIFAR-10's 50,000 training images are split in two halves, per class. One half pretrains the
  stand-in foundation model (a small open_clip CLIP, ``hello_build.foundation.pretrain_clip`` on
  class-caption prompts; nobody can download it, so it is embedded in the bundles). The other half is
  the "original dataset": the teacher is trained on it and it is what gets distilled.
- Teacher: ConvNet-3 trained on the original half (minus the builder's 5 % fidelity hold-out); its
  ``--teacher-checkpoints`` evenly spaced trajectory checkpoints are the builder's weak teachers, the final one is
  the teacher of the ``teacher`` and ``stored`` regimes.
- ``hello-build`` (``hello_build.pipeline.build``) distils the original half into an IPC-n bundle.
- Every regime then trains a fresh student through ``hello_build.evaluation.evaluate`` (the code behind
  ``hello eval``); the 10,000 test images are only ever used for the reported accuracies.

With ``--delta-dtype int8|int4`` each bundle is also requantized (``hello requantize``, calibrated as
``hello-build`` calibrates by default; cached beside it) and the projector regime runs on that copy too,
reported as the regime ``projector (int4)``.

Every expensive artifact (unpacked data, foundation, teacher, bundles, each student run) is cached
under --cache by a hash of its inputs, so a rerun only computes what changed. Outputs in --out:
``results.json``, ``table.md``, ``accuracy_vs_label_bytes.png``. Skips (exit 0) where the data is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"
ARCHIVES = {
    "train.tar.gz": "45a63b9dd7542b37404b94f3e6f0269562f89fe2ff16ed505e6a327bb8c68449",
    "test.tar.gz": "f225cabdd5279430dd56749e356119671fe0cd2bf543e78d20c27af441d80951",
}
ALL_REGIMES = ("projector", "hard", "teacher", "stored", "random-real")
# regimes that read only a bundle's images, hard labels and recipe, never its label generator
IMAGE_ONLY_REGIMES = ("hard", "teacher", "stored")
SIZE = 32
# wall-clock start, shared with the worker processes of --jobs so their log lines use one clock
STARTED = float(os.environ.setdefault("HELLO_BENCH_STARTED", str(time.time())))


def say(message: str) -> None:
    print(f"[{time.time() - STARTED:7.0f} s] {message}", flush=True)


def key_of(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def trained_on(args) -> dict:
    """What a cache key adds for the device an artifact is trained on: nothing for the CPU (so keys
    cached before GPU runs stay valid), the device's type elsewhere (a GPU's arithmetic gives other weights)."""
    import torch

    kind = torch.device(args.device).type
    return {} if kind == "cpu" else {"device": kind}


def cached_json(path: Path, compute):
    """``compute()`` once; its JSON result is kept at ``path``. Every run returns what the file holds, so
    a first run and a rerun see the same types (lists, not tuples; string keys)."""
    if not path.is_file():
        from hello_format.files import atomic_target

        text = json.dumps(compute(), indent=1, sort_keys=True, default=str)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_target(path) as temp:
            temp.write_text(text)
    return json.loads(path.read_text())


# -- data -------------------------------------------------------------------------------------------

def unpack(data: Path, cache: Path) -> Path:
    """The archives, checked against their published sha256 and unpacked once into ``cache/cifar10``."""
    root = cache / "cifar10"

    def run():
        from hello_format.digests import file_sha256

        for name, expected in ARCHIVES.items():
            if file_sha256(data / name) != expected:
                raise SystemExit(f"error: {data / name} does not match its published sha256; re-copy it")
            with tarfile.open(data / name) as archive:
                archive.extractall(root, filter="data")
        return dict(ARCHIVES)

    cached_json(root / "unpacked.json", run)
    return root


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy where they are on different filesystems); a
    symbolic link an earlier bench left there is replaced."""
    if target.is_symlink():
        target.unlink()
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def split_halves(root: Path, seed: int):
    """Per class, a seeded half of the training images for the foundation, the other half as the
    original dataset (an ImageFolder of hard links, copies across filesystems: the builder follows no
    symbolic link out of a folder). Returns (original_dir, foundation images, labels, classes)."""
    import torch
    from safetensors.torch import load_file, save_file

    from hello_build.data import decode_image, per_class_indices, scan_image_folder

    out = root / f"split-{seed}"
    original = out / "original"
    tensors = out / "foundation.safetensors"
    if not tensors.is_file():
        index = scan_image_folder(root / "train", check_headers=False)
        generator = torch.Generator().manual_seed(seed)
        foundation = []
        for label, positions in enumerate(per_class_indices(index)):
            order = torch.randperm(len(positions), generator=generator).tolist()
            half = len(positions) // 2
            foundation += [positions[i] for i in order[:half]]
            folder = original / index.classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            for i in order[half:]:
                source = Path(index.samples[positions[i]][0])
                link_or_copy(source, folder / source.name)
        images = torch.stack([decode_image(index.samples[i][0], SIZE) for i in foundation])
        labels = torch.tensor([index.samples[i][1] for i in foundation])
        save_file({"images": images, "labels": labels}, str(tensors), metadata={"classes": json.dumps(index.classes)})
    for link in [path for path in original.rglob("*") if path.is_symlink()]:   # a split an earlier bench linked
        link_or_copy(Path(os.path.realpath(link)), link)
    from safetensors import safe_open

    with safe_open(str(tensors), framework="pt") as handle:
        classes = json.loads(handle.metadata()["classes"])
    loaded = load_file(str(tensors))
    return original, loaded["images"], loaded["labels"], classes


def held_out(original: Path):
    """What the bench's screening scripts score students on, never test: the builder's hold-out of the
    original half (the builder's holdout, seed 0, as the bench's builds at their default --build-seed) and the foundation half beside it
    (``split_halves``'s tensors). Returns (the original half's index, its training positions, the
    hold-out as RealImages, the foundation half as a TensorDataset)."""
    import torch
    from safetensors.torch import load_file

    from hello_build.data import RealImages, holdout_split, scan_image_folder
    from hello_build.options import BuildOptions

    index = scan_image_folder(original, check_headers=False)
    train_idx, held = holdout_split(index, BuildOptions.holdout, 0)
    half = load_file(str(original.parent / "foundation.safetensors"))
    foundation_half = torch.utils.data.TensorDataset(half["images"], half["labels"])
    foundation_half.size = SIZE  # what ``top1`` sizes its batches by, as RealImages carries it
    return index, train_idx, RealImages(index, SIZE, held), foundation_half


# -- foundation and teacher -------------------------------------------------------------------------

def accuracy(model, index, *, batch_size: int = 500) -> float:
    """Top-1 of ``model`` (float images in [0, 1] -> logits) on a scanned ImageFolder."""
    import torch

    from hello_build.data import real_image_loader

    correct = 0
    with torch.no_grad():
        for images, labels in real_image_loader(index, SIZE, batch_size):
            correct += (model(images.float() / 255).argmax(1) == labels).sum().item()
    return correct / len(index)


def agreement(model, other, index, *, batch_size: int = 500) -> float:
    """Top-1 agreement of two models (float images in [0, 1] -> logits) on a scanned ImageFolder."""
    import torch

    from hello_build.data import real_image_loader

    same = 0
    with torch.no_grad():
        for images, _ in real_image_loader(index, SIZE, batch_size):
            views = images.float() / 255
            same += (model(views).argmax(1) == other(views).argmax(1)).sum().item()
    return same / len(index)


def foundation(args, cache: Path, images, labels, classes, test_index) -> tuple[Path, dict]:
    """Pretrain the stand-in CLIP on the foundation half; its zero-shot top-1 (ensemble prompts) on test."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from hello_build.foundation import pretrain_clip
    from hello_format.base import describe_base
    from hello_format.generator import HeadConfig
    from hello_format.head import DEFAULT_TEMPLATES
    from hello_format.projector import Projector

    inputs = {"arch": args.foundation_arch, "steps": args.foundation_steps, "batch": args.foundation_batch,
              "lr": args.foundation_lr, "split_seed": args.split_seed, "token_embedding": "frozen", **trained_on(args)}
    folder = cache / "foundation" / key_of(inputs)
    checkpoint = folder / "base.safetensors"

    def run():
        say(f"foundation: pretraining {args.foundation_arch} for {args.foundation_steps} steps on {len(labels)} images")
        started = time.perf_counter()
        torch.manual_seed(0)
        model = open_clip.create_model(args.foundation_arch)
        model.token_embedding.requires_grad_(False)  # CPU time: captions use a handful of tokens
        pretrain_clip(model, open_clip.get_tokenizer(args.foundation_arch), images, labels, classes,
                      steps=args.foundation_steps, batch_size=args.foundation_batch, lr=args.foundation_lr, seed=0,
                      device=args.device, progress=lambda step, loss: say(f"foundation: step {step}/{args.foundation_steps} loss {loss:.3f} "
                                                      f"({time.perf_counter() - started:.0f} s)"))
        seconds = time.perf_counter() - started
        model = model.cpu()  # zero-shot and the linear probe run on the CPU, as the cached ones did
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
        zero_shot = Projector(model, describe_base(model, architecture=args.foundation_arch, source="local"), classes,
                              head=HeadConfig(templates=DEFAULT_TEMPLATES, logit_scale=100.0),
                              encoder_lora=None).eval()
        return {"inputs": inputs, "seconds": round(seconds, 1), "zero_shot_top1": accuracy(zero_shot.label, test_index),
                "parameters": sum(p.numel() for p in model.parameters()), "images": len(labels)}

    info = cached_json(folder / "info.json", run)
    say(f"foundation: zero-shot top-1 on test {info['zero_shot_top1']:.3f} ({info['seconds']} s)")
    return checkpoint, info


def linear_probe(args, checkpoint: Path, original: Path, test_index) -> dict:
    """CLIP's other yardstick: a logistic-regression head on the frozen image features, fitted on a
    seeded ``--probe-images`` subset of the original half (weight decay chosen on a held-out tenth
    of that subset), scored on test. Cached beside the foundation."""
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
    import open_clip

    from hello_build.data import RealImages, per_class_indices, scan_image_folder

    def run():
        started = time.perf_counter()
        model = open_clip.create_model(args.foundation_arch)
        model.load_state_dict(load_file(str(checkpoint)))
        model.eval()
        mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
        index = scan_image_folder(original, check_headers=False)
        generator = torch.Generator().manual_seed(args.split_seed)
        per_class = args.probe_images // index.num_classes
        chosen = [p for positions in per_class_indices(index)
                  for p in [positions[i] for i in torch.randperm(len(positions), generator=generator)[:per_class].tolist()]]

        @torch.no_grad()
        def features(dataset):
            feats, labels = [], []
            for images, y in torch.utils.data.DataLoader(dataset, batch_size=500):
                feats.append(F.normalize(model.encode_image((images.float() / 255 - mean) / std), dim=-1))
                labels.append(y)
            return torch.cat(feats), torch.cat(labels)

        x, y = features(RealImages(index, SIZE, chosen))
        x_test, y_test = features(RealImages(test_index, SIZE))
        held = torch.arange(len(y)) % 10 == 0

        def fit(x, y, decay):
            head = torch.nn.Linear(x.shape[1], index.num_classes)
            optimizer = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

            def closure():
                optimizer.zero_grad()
                loss = F.cross_entropy(head(x * 10), y) + decay * head.weight.square().sum()
                loss.backward()
                return loss

            optimizer.step(closure)
            return head

        top = lambda head, x, y: (head(x * 10).argmax(1) == y).float().mean().item()  # noqa: E731
        decays = (1e-5, 1e-4, 1e-3, 1e-2)
        held_out = {d: top(fit(x[~held], y[~held], d), x[held], y[held]) for d in decays}
        decay = max(decays, key=held_out.get)
        return {"images": len(y), "weight_decay": decay, "held_out_top1": held_out[decay],
                "test_top1": top(fit(x, y, decay), x_test, y_test), "seconds": round(time.perf_counter() - started, 1)}

    info = cached_json(checkpoint.parent / f"probe-{args.probe_images}.json", run)
    say(f"foundation: linear probe top-1 on test {info['test_top1']:.3f} ({info['images']} images, weight decay {info['weight_decay']:g})")
    return info


def teacher(args, cache: Path, original: Path, test_index) -> tuple[list[Path], dict]:
    """ConvNet-3 trained on the original half minus the builder's hold-out; its trajectory checkpoints."""
    from hello_build.data import holdout_split, scan_image_folder
    from hello_build.options import BuildOptions
    from hello_build.teacher_training import TeacherTraining, train_teacher
    from hello_build.teachers import load_teacher

    inputs = {"arch": "convnet3", "epochs": args.teacher_epochs, "keep": args.teacher_checkpoints,
              "split_seed": args.split_seed, "holdout": BuildOptions.holdout, "seed": args.build_seed, **trained_on(args)}
    folder = cache / "teacher" / key_of(inputs)

    def run():
        index = scan_image_folder(original, check_headers=False)
        train_idx, _ = holdout_split(index, BuildOptions.holdout, args.build_seed)
        say(f"teacher: training convnet3 for {args.teacher_epochs} epochs on {len(train_idx)} images")
        started = time.perf_counter()
        trained = train_teacher(index, "convnet3", TeacherTraining(epochs=args.teacher_epochs, checkpoints=args.teacher_checkpoints),
                                seed=args.build_seed, indices=train_idx, input_size=SIZE, work_dir=folder, device=args.device,
                                progress=lambda epoch, loss: say(f"teacher: epoch {epoch} loss {loss:.3f}"))
        seconds = time.perf_counter() - started
        paths = sorted(str(p) for p in folder.glob("teacher_convnet3_epoch*.safetensors"))
        final = load_teacher(paths[-1])
        return {"inputs": inputs, "seconds": round(seconds, 1), "checkpoints": paths, "images": len(train_idx),
                "test_top1": accuracy(final, test_index), "file_bytes": Path(paths[-1]).stat().st_size,
                "epochs": [t.description for t in trained]}

    info = cached_json(folder / "info.json", run)
    say(f"teacher: test top-1 {info['test_top1']:.3f} ({info['seconds']} s)")
    return [Path(p) for p in info["checkpoints"]], info


# -- bundles and students ---------------------------------------------------------------------------

# The paper's component ablation at the first IPC: each of rows 1-5 adds one part; its options on top of
# the main build's (None: the main build itself). "teachers": "last" keeps only the final teacher. Row 6,
# the paper's first (added later, so that recorded commands keep their row numbers): the head alone
# fitted to the weak-teacher trajectory on frozen features, a linear probe (head rank = class count).
ABLATION = (
    ("text-initialised head only", {"transfer_epochs": 0, "view_transfer_epochs": 0}),
    ("+ LoRA transfer, final teacher only", {"teachers": "last", "view_transfer_epochs": 0}),
    ("+ weak-teacher trajectory", {"view_transfer_epochs": 0}),
    ("+ synthetic-view transfer (hello's default)", None),
    ("+ image update", {"image_update_steps": 100}),
    ("linear-probe head only (no encoder LoRA)", {"lora_rank": 0, "view_transfer_epochs": 0}),
)


# build options read only after the real transfer: builds differing in these share a work directory
LATE_OPTIONS = ("view_transfer_epochs", "view_transfer_lr", "view_transfer_real_fraction", "view_transfer_checks",
                "view_transfer_keep", "image_update_steps", "crop_scale")


def crop_scale(args) -> list[float]:
    """The candidate crops' area range the builds use: ``--crop-scale``, else the builder's default."""
    from hello_build.options import BuildOptions
    from hello_build.stages.init import candidate_crop_scale

    return list(candidate_crop_scale(BuildOptions(factor=args.factor, crop_scale=args.crop_scale)))


def build_settings(args, variant: dict) -> dict:
    """The build options the bench sets (and keys its cached bundles by): its arguments, then ``variant``'s.
    (Keys changed when the view transfer's budget became per image: no bundle cached before matches.)"""
    return {"transfer_epochs": args.transfer_epochs, "transfer_lr": args.transfer_lr,
            "view_transfer_epochs": args.view_transfer_epochs, "view_transfer_lr": args.view_transfer_lr,
            "view_transfer_real_fraction": args.view_transfer_real_fraction,
            "view_transfer_checks": args.view_transfer_checks, "view_transfer_keep": args.view_transfer_keep,
            "crop_scale": crop_scale(args), "prior_weight": args.prior_weight,
            **transfer_options(args), **variant}


def transfer_options(args) -> dict:
    """``--transfer-loss`` and ``--lora-rank`` as build options, for keys too, each only when it is not the
    builder's default (so the keys of bundles cached before the option existed stay)."""
    from hello_build.options import BuildOptions

    return {**({} if args.transfer_loss == BuildOptions.transfer_loss else {"transfer_loss": args.transfer_loss}),
            **({} if args.lora_rank == BuildOptions.lora_rank else {"lora_rank": args.lora_rank})}


def bundle(args, cache: Path, original: Path, base: Path, teachers: list[Path], ipc: int, upstream: dict, test_index,
           variant: dict | None = None) -> tuple[Path, dict]:
    """``hello-build`` on the original half, with ``variant``'s options (an ablation row) over the
    bench's. The work directory is shared by every build whose real transfer is the same (a later
    stage that differs reruns; the transfer runs once). Also the projector's own test top-1."""
    from hello_build.options import BuildOptions
    from hello_build.pipeline import build
    from hello_format.bundle import Bundle
    from hello_format.projector import Projector

    variant = dict(variant or {})
    chosen = [teachers[-1]] if variant.pop("teachers", None) == "last" else teachers
    settings = build_settings(args, variant)
    # a variant that changes the real transfer (or anything before it) gets a work directory of its own
    early = {name: value for name, value in variant.items() if name not in LATE_OPTIONS}
    shared = {**upstream, "transfer_epochs": settings["transfer_epochs"], "transfer_lr": args.transfer_lr,
              "build_seed": args.build_seed, "teachers": len(chosen), **transfer_options(args), **early}
    inputs = {**shared, **settings, "ipc": ipc, "factor": args.factor, "student_epochs": args.student_epochs["default"]}
    key = key_of(inputs)
    path = cache / "bundles" / f"cifar10-ipc{ipc}-{key}.hello"

    def run():
        say(f"build: IPC {ipc} {settings}")
        options = BuildOptions(
            data=str(original), output=str(path), teacher=[str(t) for t in chosen], base=args.foundation_arch,
            pretrained=None, base_checkpoint=str(base), embed_base=True, ipc=ipc, factor=args.factor,
            epochs=args.student_epochs["default"], seed=args.build_seed, **settings,
            source_dataset="CIFAR-10 (JPEG copy), one half of the training split", device=args.device,
            num_workers=args.num_workers, workdir=str(cache / "build" / key_of(shared)),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        report = build(options, progress=False, log=lambda m: say(f"build: {m}"))
        with Bundle.open(path) as opened:
            storage = opened.storage()
            projector = Projector.from_bundle(opened)
        # stage times as recorded in the work directory (a resumed stage counts the time it took)
        return {"inputs": inputs, "seconds": round(sum(report["timings"].values()), 1), "timings": report["timings"],
                "fidelity_before": report["fidelity_before"], "fidelity_after": report["fidelity_after"],
                "view_transfer": report["view_transfer"], "fidelity_with_prior": report["fidelity_with_prior"],
                "synthetic_agreement": report["synthetic_agreement"],
                "synthetic_agreement_unmixed": report["synthetic_agreement_unmixed"], "storage": vars(storage),
                "projector_test_top1": accuracy(projector.label, test_index)}

    info = cached_json(path.with_suffix(".json"), run)
    say(f"build: IPC {ipc}: {info['storage']['file_bytes']:,} bytes, synthetic agreement {info['synthetic_agreement']:.3f}, "
        f"projector test top-1 {info['projector_test_top1']:.3f}")
    return path, info


def images_of(bundle_path: Path) -> str:
    """The digests of a bundle's images and hard labels, and its recipe: all that the regimes in IMAGE_ONLY_REGIMES read of it,
    so that bundles differing only in their label generator share those runs."""
    from hello_format.bundle import Bundle

    with Bundle.open(bundle_path) as opened:
        digests, recipe = opened.manifest["integrity"]["tensors"], opened.manifest["recipe"]
    return "images:" + key_of({"recipe": recipe, **{name: digests[name] for name in digests
                                                    if name.startswith(("images.", "labels"))}})


def requantized(args, cache: Path, path: Path, info: dict, test_index) -> tuple[Path, dict]:
    """``path`` with its deltas stored as ``--delta-dtype`` (``hello requantize``), cached beside the
    bundles; with its storage, projector test top-1 and top-1 agreement with the fp16 projector on
    the test images."""
    from hello_format.bundle import Bundle
    from hello_format.calibration import CalibrationConfig
    from hello_format.projector import Projector
    from hello_format.quantize import DELTA_DTYPES
    from hello_format.requantize import requantize

    calibration = CalibrationConfig(steps=args.delta_calibration_steps, objective=args.delta_calibration_objective)
    inputs = {"bundle": path.name, "delta_dtype": args.delta_dtype, "group_size": args.delta_group_size}
    if calibration.steps:
        inputs["calibration"] = calibration.to_dict()
    target = cache / "bundles" / f"{path.stem}-{args.delta_dtype}-g{args.delta_group_size}-{key_of(inputs)[:8]}.hello"

    def run():
        say(f"requantize: {path.name} -> {args.delta_dtype} (group size {args.delta_group_size}; "
            f"{f'calibrated {calibration.steps} steps, {calibration.objective}' if calibration.steps else 'rounded'})")
        done = requantize(path, target, DELTA_DTYPES[args.delta_dtype], args.delta_group_size, overwrite=True,
                          calibration=calibration)   # 0 steps: rounded
        with Bundle.open(path) as fp16, Bundle.open(target) as opened:
            reference, projector = Projector.from_bundle(fp16), Projector.from_bundle(opened)
            storage = opened.storage()
        return {**info, "inputs": {**info["inputs"], **inputs}, "storage": vars(storage), "calibration": done.calibration,
                "projector_test_top1": accuracy(projector.label, test_index),
                "test_agreement_with_fp16": agreement(projector.label, reference.label, test_index)}

    quantised = cached_json(target.with_suffix(".json"), run)
    say(f"requantize: {target.name}: label generator {quantised['storage']['label_generator_bytes']:,} bytes, projector "
        f"test top-1 {quantised['projector_test_top1']:.3f}, agreement with fp16 {quantised['test_agreement_with_fp16']:.4f}")
    return target, quantised


def student_recipe(args, regime: str, student: str, epochs: int, seed: int) -> dict:
    """One run's overrides of the bundle's recipe: the bench's student, epochs and seed, and ``--student-beta``
    unless the regime trains on hard labels alone (its loss is the CE, whatever beta)."""
    recipe = {"arch": student, "epochs": epochs, "seed": seed}
    if args.student_beta is not None and regime != "hard":
        recipe["beta"] = args.student_beta
    return recipe


def student_run(args, cache: Path, bundle_path: Path, bundle_info: dict, teacher_path: Path, teacher_info: dict,
                original: Path, test_dir: Path, regime: str, student: str, seed: int) -> dict | None:
    """One ``hello eval`` run, cached; with the bytes its labels cost. None with --report-only when not cached."""
    epochs = student_epochs(args.student_epochs, student, bundle_info["inputs"]["ipc"])
    inputs = {"bundle": images_of(bundle_path) if regime in IMAGE_ONLY_REGIMES else bundle_path.name,
              "regime": regime, "student": student, "seed": seed, "epochs": epochs,
              "teacher": teacher_info["inputs"] if regime in ("teacher", "stored") else None, **trained_on(args)}
    recipe = student_recipe(args, regime, student, epochs, seed)
    if "beta" in recipe:   # runs under the bundle's own beta keep their keys
        inputs["beta"] = recipe["beta"]
    key = key_of(inputs)
    record_path = cache / "evals" / f"{key}.json"
    if args.report_only and not record_path.is_file():
        say(f"eval: {bundle_path.name} {regime} {student} seed {seed}: not run (--report-only)")
        return None

    def run():
        from hello_build.evaluation import evaluate
        from hello_build.teachers import load_teacher

        say(f"eval: {bundle_path.name} {regime} {student} seed {seed}")
        stored_dir = cache / "stored" / key
        result = evaluate(
            bundle_path, test_dir, regime=regime, device=args.device, progress=False,
            teacher=load_teacher(teacher_path) if regime in ("teacher", "stored") else None,
            real_dir=original if regime == "random-real" else None, stored_dir=stored_dir if regime == "stored" else None,
            recipe_overrides=recipe,
        )
        result["label_bytes"] = {"hard": 0, "teacher": teacher_info["file_bytes"]}.get(
            regime, result.get("stored_label_bytes", bundle_info["storage"]["label_generator_bytes"]))
        return {**result, "eval_inputs": result["inputs"], "inputs": inputs}   # the bench's key inputs, and hello eval's

    record = cached_json(record_path, run)
    say(f"eval: {bundle_path.name} {regime} {student} seed {seed}: top-1 {record['top1']:.4f} ({record['train_seconds']} s training)")
    return record


def student_pool(jobs: int):
    """``jobs`` worker processes that split the CPU threads between them and end themselves when the
    bench that started them is gone (killed: a pool's workers would otherwise outlive it, training on)."""
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // jobs)
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_start,
                               initargs=(threads, os.getpid()))


def _worker_start(threads: int, bench: int) -> None:
    """A --jobs worker's share of the CPU threads (evaluate's imports register the model configs), and a
    watch that exits it once its parent is no longer the process ``bench``."""
    import threading

    import torch

    torch.set_num_threads(threads)
    threading.Thread(target=_exit_when_orphaned, args=(bench,), name="orphan watch", daemon=True).start()


def _exit_when_orphaned(bench: int, every_s: float = 1.0) -> None:
    while os.getppid() == bench:
        time.sleep(every_s)
    os._exit(1)


def run_students(args, jobs: list[tuple]) -> list[dict | None]:
    """Every ``student_run`` argument tuple, in order; with --jobs N in N processes sharing the cores."""
    if args.jobs == 1 or args.report_only:
        return [student_run(args, *job) for job in jobs]
    with student_pool(args.jobs) as pool:
        futures = [pool.submit(student_run, args, *job) for job in jobs]
        return [future.result() for future in futures]


# -- report -----------------------------------------------------------------------------------------

def unmixed_text(bundle_info: dict) -> str:
    """The agreement cell's suffix, e.g. ' (90.1 % without CutMix)', where the build measured it (bundles
    cached before it did not)."""
    unmixed = bundle_info.get("synthetic_agreement_unmixed")
    return "" if unmixed is None else f" ({100 * unmixed:.1f} % without CutMix)"


def summarise(records: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["ipc"], r["student"], r["regime"]), []).append(r)
    rows = []
    for (ipc, student, regime), runs in groups.items():
        tops = [r["top1"] for r in runs]
        rows.append({"ipc": ipc, "student": student, "regime": regime, "runs": len(runs), "top1_mean": statistics.mean(tops),
                     "top1_std": statistics.stdev(tops) if len(tops) > 1 else 0.0, "label_bytes": runs[0]["label_bytes"],
                     "train_seconds": statistics.mean(r["train_seconds"] for r in runs)})
    order = {r: i for i, r in enumerate(ALL_REGIMES)}   # a requantized bundle's "projector (int4)" after them
    return sorted(rows, key=lambda r: (r["ipc"], r["student"], order.get(r["regime"], len(order)), r["regime"]))


def ablation_row(name: str, ipc: int, student: str, info: dict, runs: list[dict]) -> dict:
    """One row of the component ablation: its students' top-1 and what its labels cost to store."""
    tops = [r["top1"] for r in runs]
    return {"component": name, "ipc": ipc, "student": student, "runs": len(tops),
            "top1_mean": statistics.mean(tops) if tops else None, "top1_std": statistics.stdev(tops) if len(tops) > 1 else 0.0,
            "label_bytes": info["storage"]["label_generator_bytes"], "synthetic_agreement": info["synthetic_agreement"],
            "heldout_agreement": (info.get("view_transfer") or {}).get("fidelity", info["fidelity_after"])["agreement"]}


# accuracies are ratios of counts: a difference that sits exactly on a threshold (10.00 points) must not
# fail it by a float's last bit (0.5152 - 0.4152 < 0.10 in binary floating point)
ON_THE_LINE = 1e-9


def goals(rows: list[dict], bundles: dict) -> list[dict]:
    """The project's targets, checked per (IPC, student) where the needed regimes ran (a threshold
    reached exactly is met)."""
    found = []
    by = {(r["ipc"], r["student"], r["regime"]): r for r in rows}
    for ipc, student in sorted({(r["ipc"], r["student"]) for r in rows}):
        get = lambda regime: (by.get((ipc, student, regime)) or {}).get("top1_mean")  # noqa: E731
        p, t, h, rr = get("projector"), get("teacher"), get("hard"), get("random-real")
        where = f"IPC {ipc}, {student}"
        if p is not None and t is not None:
            found.append({"goal": "projector within 1 point of the online teacher", "where": where, "value": f"{100 * (p - t):+.1f} points", "met": p - t >= -0.01 - ON_THE_LINE})
        if p is not None and h is not None and ipc <= 10:
            found.append({"goal": ">= 10 points above hard labels (IPC 10)", "where": where, "value": f"{100 * (p - h):+.1f} points", "met": p - h >= 0.10 - ON_THE_LINE})
        if p is not None and rr is not None:
            spread = 2 * max(by[(ipc, student, "projector")]["top1_std"], by[(ipc, student, "random-real")]["top1_std"])
            found.append({"goal": "distilled beats random-real under projector labels by > 2 std", "where": where,
                          "value": f"{100 * (p - rr):+.1f} points (2 std: {100 * spread:.1f})", "met": p - rr > spread})
    for ipc, info in sorted(bundles.items()):
        agreement = info["synthetic_agreement"]
        found.append({"goal": "projector/teacher agreement on fresh augmented synthetic views >= 90 %", "where": f"IPC {ipc} bundle",
                      "value": f"{100 * agreement:.1f} %", "met": agreement >= 0.9 - ON_THE_LINE})
    return found


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def markdown(results: dict) -> str:
    from hello_build.options import BuildOptions

    s = results["settings"]
    lines = [
        f"CIFAR-10, stand-in foundation `{s['foundation_arch']}` ({results['foundation']['parameters']:,} CLIP parameters, text tower included; "
        f"{s['foundation_steps']} steps on {results['foundation']['images']:,} images, {results['foundation']['seconds']:.0f} s): "
        f"zero-shot top-1 {100 * results['foundation']['zero_shot_top1']:.1f} %"
        + (f", linear probe {100 * results['foundation']['linear_probe']['test_top1']:.1f} %" if "linear_probe" in results["foundation"] else "")
        + "; "
        f"teacher ConvNet-3 ({s['teacher_epochs']} epochs on {results['teacher']['images']:,} images, {results['teacher']['seconds']:.0f} s): top-1 "
        f"{100 * results['teacher']['test_top1']:.1f} %. Students: {epochs_text(s['student_epochs'])}, seeds {s['seeds']}"
        + (f", mse_ce beta {s['student_beta']:g} (the bundles record their own)" if s.get("student_beta") is not None else "") + "; "
        f"transfer {s['transfer_epochs']} epochs at lr {s['transfer_lr']:g}"
        + (f", {s['transfer_loss']} loss" if s.get("transfer_loss", BuildOptions.transfer_loss) != BuildOptions.transfer_loss else "")
        + (f", encoder LoRA rank {s['lora_rank']}" if s.get("lora_rank", BuildOptions.lora_rank) != BuildOptions.lora_rank else "")
        + (f", then a synthetic-view transfer of {s['view_transfer_epochs']:g} views per image at lr {s['view_transfer_lr']:g}"
           f" and real fraction {s['view_transfer_real_fraction']:g}" if s.get("view_transfer_epochs") else "")
        + f"; factor {s['factor']}.",
        "",
        "| IPC | student | regime | top-1 % (mean ± std, n) | label bytes | training s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["rows"]:
        lines.append(f"| {r['ipc']} | {r['student']} | {r['regime']} | {100 * r['top1_mean']:.1f} ± {100 * r['top1_std']:.1f} ({r['runs']}) "
                     f"| {human(r['label_bytes'])} | {r['train_seconds']:.0f} |")
    lines += ["", "| IPC | bundle | images and labels | label generator | embedded base | stored labels (recipe epochs) | build s (per stage) | "
              "agreement held-out real views: zero-shot → real transfer → view transfer | agreement fresh synthetic views | projector top-1 % |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for ipc, b in sorted(results["bundles"].items(), key=lambda kv: int(kv[0])):
        st = b["storage"]
        stages = ", ".join(f"{name} {seconds:.0f}" for name, seconds in b.get("timings", {}).items() if seconds >= 1)
        after_views = (b.get("view_transfer") or {}).get("fidelity")
        lines.append(f"| {ipc} | {human(st['file_bytes'])} | {human(st['images_bytes'])} | {human(st['label_generator_bytes'])} | "
                     f"{human(st['base_bytes'])} | {human(st['stored_label_bytes'])} | {b['seconds']:.0f} ({stages}) | "
                     f"{100 * b['fidelity_before']['agreement']:.1f} → {100 * b['fidelity_after']['agreement']:.1f}"
                     + (f" → {100 * after_views['agreement']:.1f}" if after_views else "") + " % | "
                     f"{100 * b['synthetic_agreement']:.1f} %{unmixed_text(b)} | {100 * b['projector_test_top1']:.1f} |")
    if results.get("ablation"):
        lines += ["", "| component (IPC, student, projector labels) | top-1 % (mean ± std, n) | label bytes | agreement held-out real | agreement fresh synthetic views |",
                  "| --- | --- | --- | --- | --- |"]
        for a in results["ablation"]:
            top = f"{100 * a['top1_mean']:.1f} ± {100 * a['top1_std']:.1f} ({a['runs']})" if a["runs"] else "not run"
            lines.append(f"| {a['component']} (IPC {a['ipc']}, {a['student']}) | {top} | {human(a['label_bytes'])} | "
                         f"{100 * a['heldout_agreement']:.1f} % | {100 * a['synthetic_agreement']:.1f} % |")
    if results["missing"]:
        cells = sorted({(m["ipc"], m["student"]) for m in results["missing"]})
        lines += ["", f"Not run ({len(results['missing'])} student runs, --report-only): "
                  + ", ".join(f"IPC {ipc} {student}" for ipc, student in cells) + "."]
    lines += ["", "| goal | where | value | met |", "| --- | --- | --- | --- |"]
    lines += [f"| {g['goal']} | {g['where']} | {g['value']} | {'yes' if g['met'] else 'no'} |" for g in results["goals"]]
    return "\n".join(lines) + "\n"


def epochs_text(epochs: dict) -> str:
    """``{"default": 200, "resnet18_32": 60}`` -> ``200 epochs (resnet18_32: 60)``; ``@50`` reads ``IPC 50``."""
    others = ", ".join(f"{key.replace('@', ' IPC ').strip()}: {n}" for key, n in epochs.items() if key != "default")
    return f"{epochs['default']} epochs" + (f" ({others})" if others else "")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ipcs = sorted({r["ipc"] for r in rows})
    figure, axes = plt.subplots(1, len(ipcs), figsize=(6 * len(ipcs), 4.5), squeeze=False)
    colours = dict(zip(ALL_REGIMES, ("tab:blue", "tab:gray", "tab:red", "tab:orange", "tab:green")))
    markers = dict(zip(sorted({r["student"] for r in rows}), "os^D"))
    for axis, ipc in zip(axes[0], ipcs):
        for r in (r for r in rows if r["ipc"] == ipc):
            label = f"{r['regime']} ({r['student']})"
            if r["label_bytes"] == 0:
                axis.axhline(100 * r["top1_mean"], color=colours[r["regime"]], linestyle="--", label=label + ": 0 B")
                continue
            colour = colours.get(r["regime"], "tab:purple")  # a requantized projector, "projector (int4)"
            axis.errorbar(r["label_bytes"], 100 * r["top1_mean"], yerr=100 * r["top1_std"], fmt=markers[r["student"]],
                          color=colour, capsize=3, label=label)
        axis.set_xscale("log")
        axis.set_xlabel("bytes that serve the soft labels (log)")
        axis.set_ylabel("student top-1 on CIFAR-10 test (%)")
        axis.set_title(f"IPC {ipc}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# -- main -------------------------------------------------------------------------------------------

def parse(argv):
    from hello_build.options import BuildOptions
    from hello_format.calibration import OBJECTIVES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train.tar.gz and test.tar.gz")
    parser.add_argument("--cache", type=Path, default=REPO / "bench" / "results" / "cache")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "cifar10")
    parser.add_argument("--ipc", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="student seeds (init, batch order, augmentation, random-real subset)")
    parser.add_argument("--students", nargs="+", default=["convnet3", "resnet18_32"])
    parser.add_argument("--regimes", nargs="+", default=list(ALL_REGIMES), choices=ALL_REGIMES)
    parser.add_argument("--student-epochs", nargs="+", default=["300"], metavar="N|[ARCH][@IPC]=N",
                        help="student epochs, and overrides per architecture and/or IPC (e.g. 200 resnet18_32=60 @50=100 resnet18_32@50=20); "
                             "the plain N is recorded in the bundles")
    parser.add_argument("--student-beta", type=float, default=None,
                        help="the students' mse_ce beta instead of the bundle's recipe (label generators unchanged)")
    parser.add_argument("--teacher-epochs", type=int, default=BuildOptions.teacher_epochs)
    parser.add_argument("--teacher-checkpoints", type=int, default=3, help="trajectory checkpoints used as weak teachers")
    parser.add_argument("--transfer-epochs", type=int, default=BuildOptions.transfer_epochs)
    parser.add_argument("--transfer-lr", type=float, default=BuildOptions.transfer_lr, help="AdamW learning rate of the LoRA transfer")
    parser.add_argument("--transfer-loss", default=BuildOptions.transfer_loss,
                        choices=BuildOptions.__dataclass_fields__["transfer_loss"].metadata["choices"],
                        help="hello-build --transfer-loss, in both transfer phases")
    parser.add_argument("--lora-rank", type=int, default=BuildOptions.lora_rank,
                        help="hello-build --lora-rank: the encoder LoRA's rank")
    parser.add_argument("--view-transfer-epochs", type=float, default=BuildOptions.view_transfer_epochs,
                        help="hello-build --view-transfer-epochs: student views of each synthetic image the "
                             "synthetic-view transfer fits on (0: the paper's method)")
    parser.add_argument("--view-transfer-lr", type=float, default=BuildOptions.view_transfer_lr)
    parser.add_argument("--view-transfer-real-fraction", type=float, default=BuildOptions.view_transfer_real_fraction)
    parser.add_argument("--view-transfer-checks", type=int, default=BuildOptions.view_transfer_checks,
                        help="hello-build --view-transfer-checks: the view transfer's selection checks (1: only "
                             "step 0 and the final state are scored)")
    parser.add_argument("--view-transfer-keep", default=BuildOptions.view_transfer_keep,
                        choices=BuildOptions.__dataclass_fields__["view_transfer_keep"].metadata["choices"])
    parser.add_argument("--prior-weight", type=float, default=BuildOptions.prior_weight,
                        help="hello-build --prior-weight: the zero-shot projector's share of the labels (0: none, as before format 2.0)")
    parser.add_argument("--delta-dtype", default="fp16", choices=("fp16", "int8", "int4"),
                        help="also the projector regime on a copy of each bundle requantized to this dtype (hello requantize)")
    parser.add_argument("--delta-group-size", type=int, default=BuildOptions.delta_group_size,
                        help="values per scale of the requantized int8/int4 deltas")
    parser.add_argument("--delta-calibration-steps", type=int, default=BuildOptions.delta_calibration_steps,
                        help="steps calibrating the requantized values, as hello-build does (0: rounded to nearest)")
    parser.add_argument("--delta-calibration-objective", default=BuildOptions.delta_calibration_objective,
                        choices=OBJECTIVES, help="what the calibration fits (hello_format.calibration)")
    parser.add_argument("--ablation", type=int, nargs="*", default=None, metavar="ROW",
                        help="also the paper's component ablation at the first IPC (first student, projector labels): "
                             "the rows given (1-based), or every row")
    parser.add_argument("--foundation-steps", type=int, default=1000)
    parser.add_argument("--foundation-arch", default="hello-rn-w32", help="open_clip architecture of the stand-in CLIP")
    parser.add_argument("--probe-images", type=int, default=10_000, help="original-half images the linear probe is fitted on")
    parser.add_argument("--foundation-batch", type=int, default=128)
    parser.add_argument("--foundation-lr", type=float, default=2e-3)
    parser.add_argument("--crop-scale", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                        help="area range of the real crops the synthetic images are chosen among (default: the builder's, "
                             "1 / factor to 1; the bench's bundles before it: 0.5 1)")
    parser.add_argument("--factor", type=int, default=1, help="RDED patches per side of a synthetic image (RDED's own CIFAR scripts use 1)")
    parser.add_argument("--jobs", type=int, default=1, help="student runs in parallel processes, the CPU threads split between them")
    parser.add_argument("--report-only", action="store_true", help="no new student runs: report the cached ones, list the rest as missing")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--build-seed", type=int, default=0)
    parser.add_argument("--num-workers", type=int, default=BuildOptions.num_workers,
                        help="the builds' decoding processes (speed only: a build's result does not depend on it, so "
                             "neither does its cache key; on a GPU the transfer waits for decoding without them)")
    parser.add_argument("--device", default=None, help="torch device of the foundation, teacher, builds and students (default: cuda if available, else cpu)")
    args = parser.parse_args(argv)
    args.student_epochs = parse_epochs(args.student_epochs, parser)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if any(not 1 <= row <= len(ABLATION) for row in args.ablation or ()):
        parser.error(f"--ablation rows are 1 to {len(ABLATION)}")
    return args


def parse_epochs(tokens: list[str], parser) -> dict:
    """``["200", "resnet18_32=60", "@50=100"]`` -> ``{"default": 200, "resnet18_32": 60, "@50": 100}``: a plain
    number for every student, ``ARCH=N``, ``@IPC=N`` or ``ARCH@IPC=N`` for the runs they name."""
    epochs = {}
    for token in tokens:
        key, _, number = token.rpartition("=")
        arch, _, ipc = key.partition("@")
        if not number.isdigit() or int(number) < 1 or (ipc and not ipc.isdigit()) or (key or "default") in epochs:
            parser.error(f"--student-epochs: {token!r} is not N, ARCH=N, @IPC=N or ARCH@IPC=N with N >= 1 (each given once)")
        epochs[key or "default"] = int(number)
    if "default" not in epochs:
        parser.error("--student-epochs: give the default epochs as a plain number, e.g. 200 resnet18_32=60")
    return epochs


def student_epochs(epochs: dict, student: str, ipc: int) -> int:
    """The most specific of ``ARCH@IPC``, ``ARCH``, ``@IPC`` and the default."""
    for key in (f"{student}@{ipc}", student, f"@{ipc}", "default"):
        if key in epochs:
            return epochs[key]


def main(argv=None) -> int:
    args = parse(argv)
    if args.device is None:
        from hello_format.runtime import default_device

        args.device = str(default_device())
    missing = [name for name in ARCHIVES if not (args.data / name).is_file()]
    if missing:
        print(f"skipped: CIFAR-10 archives {', '.join(missing)} not found in {args.data} (pass --data DIR)")
        return 0
    import hello_format  # noqa: F401  (torchvision shim before open_clip)
    from hello_build.data import scan_image_folder
    import hello_format.base  # noqa: F401  (registers the tiny model configs with open_clip)

    say(f"settings: {vars(args)}")
    root = unpack(args.data, args.cache)
    original, images, labels, classes = split_halves(root, args.split_seed)
    test_index = scan_image_folder(root / "test", check_headers=False)
    base, foundation_info = foundation(args, args.cache, images, labels, classes, test_index)
    foundation_info = {**foundation_info, "linear_probe": linear_probe(args, base, original, test_index)}
    teachers, teacher_info = teacher(args, args.cache, original, test_index)
    upstream = {"foundation": foundation_info["inputs"], "teacher": teacher_info["inputs"]}
    paths, bundles, records, missing, ablation, quantised = {}, {}, [], [], [], {}

    def students(bundle_path, bundle_info, cells):
        """Student runs of ``cells`` (ipc, student, regime, seed) on one bundle, in order."""
        outcomes = run_students(args, [(args.cache, bundle_path, bundle_info, teachers[-1], teacher_info, original, root / "test",
                                        regime, student, seed) for _, student, regime, seed in cells])
        missing.extend(dict(zip(("ipc", "student", "regime", "seed"), cell)) for cell, record in zip(cells, outcomes) if record is None)
        return [{**record, "ipc": cell[0]} for cell, record in zip(cells, outcomes) if record is not None]

    # IPC by IPC, smallest first and seed-major, so a run stopped early leaves whole cells and whole seeds;
    # then the ablation at the first IPC
    for ipc in args.ipc:
        paths[ipc], bundles[ipc] = bundle(args, args.cache, original, base, teachers, ipc, upstream, test_index)
        records += students(paths[ipc], bundles[ipc], [(ipc, student, regime, seed) for student in args.students
                                                       for seed in args.seeds for regime in args.regimes])
        if args.delta_dtype != "fp16":
            path, quantised[ipc] = requantized(args, args.cache, paths[ipc], bundles[ipc], test_index)
            runs = students(path, quantised[ipc], [(ipc, student, "projector", seed) for student in args.students
                                                   for seed in args.seeds])
            records += [{**run, "regime": f"projector ({args.delta_dtype})"} for run in runs]
    rows_wanted = [] if args.ablation is None else args.ablation or range(1, len(ABLATION) + 1)
    for name, variant in (ABLATION[row - 1] for row in rows_wanted):
        ipc = args.ipc[0]
        path, info = (paths[ipc], bundles[ipc]) if variant is None else \
            bundle(args, args.cache, original, base, teachers, ipc, upstream, test_index, variant)
        runs = students(path, info, [(ipc, args.students[0], "projector", seed) for seed in args.seeds])
        ablation.append(ablation_row(name, ipc, args.students[0], info, runs))
    rows = summarise(records)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results = {"settings": settings,
               "command": "python bench/cifar10.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "foundation": foundation_info, "teacher": teacher_info, "bundles": bundles, "runs": records, "rows": rows,
               "ablation": ablation, "missing": missing, "goals": goals(rows, bundles), "requantized": quantised,
               "seconds": round(time.time() - STARTED, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True, default=str))
    (args.out / "table.md").write_text(markdown(results))
    if rows:   # --report-only before any student run has none to plot
        plot(rows, args.out / "accuracy_vs_label_bytes.png")
    say(f"wrote {args.out / 'results.json'}, table.md{', accuracy_vs_label_bytes.png' if rows else ''}")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

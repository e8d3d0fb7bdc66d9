"""Choose the synthetic-view transfer's settings on held-out fidelity, never on the test split.

    python bench/view_transfer_sweep.py --variant views=640 --variant views=960,real=0.25 [cifar10.py options]

Each variant rebuilds the CIFAR-10 bench's first-IPC bundle with other view-transfer options (the
foundation, teacher and real transfer come from the bench's cache; only the view-transfer stage reruns)
or other transfer options (``rank``, ``ce``, ``loss``, ``teachers``: the real transfer reruns too)
and prints the figures the choice is made on: agreement with the teacher on the *selection* views (a
fixed seed of student views, the early-stopping criterion) and on held-out real images (with the
projector's top-1 there). The report-view
agreement and the projector's test top-1 are printed too, marked as reported only. Results are appended
to ``--out``/view_transfer_sweep.json.

Last, how far imitation can go on these views: the agreement of each earlier trajectory checkpoint of
the teacher with the final teacher, on the same report views of the synthetic images.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cifar10 as bench  # noqa: E402


def _last(value: str) -> str:
    if value != "last":
        raise SystemExit(f"--variant: teachers={value!r}; only teachers=last (the final checkpoint alone) is known")
    return value


KEYS = {"views": ("view_transfer_epochs", float), "lr": ("view_transfer_lr", float),
        "real": ("view_transfer_real_fraction", float), "checks": ("view_transfer_checks", int),
        "keep": ("view_transfer_keep", str), "rank": ("lora_rank", int),
        "ce": ("lambda_ce", float), "loss": ("transfer_loss", str),   # both transfers
        "teachers": ("teachers", _last)}   # the final checkpoint only, in both transfers


def variant(text: str) -> dict:
    """``views=960,real=0.25`` -> the build options it sets."""
    options = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key not in KEYS:
            raise SystemExit(f"--variant: {key!r} is not one of {', '.join(KEYS)}")
        name, kind = KEYS[key]
        options[name] = kind(value)
    return options


def checkpoint_agreement(bundle_path: Path, checkpoints: list[Path]) -> dict[str, float]:
    """Each earlier checkpoint's top-1 agreement with the final teacher on the report views of the
    bundle's synthetic images (the views the projector's ``synthetic_agreement`` is measured on)."""
    from types import SimpleNamespace

    from hello_build.stages.view_transfer import view_agreement
    from hello_build.teachers import load_teacher
    from hello_format.bundle import Bundle
    from hello_format.recipe import Recipe

    teachers = [load_teacher(path) for path in checkpoints]  # the files carry their arch and preprocessing
    with Bundle.open(bundle_path) as opened:
        images, augment = opened.images(), Recipe.from_manifest(opened.manifest["recipe"]).augment
    final = SimpleNamespace(teachers=[teachers[-1]])
    return {path.name: view_agreement(teacher, final, images, augment, device="cpu", target="last", precision="fp32")["agreement"]
            for path, teacher in zip(checkpoints[:-1], teachers[:-1])}


# bench/cifar10.py's options for its students, which this sweep never trains: a warning names them
STUDENT_SIDE = ("seeds", "students", "regimes", "student_beta", "delta_dtype", "delta_group_size", "ablation", "jobs",
                "report_only")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    texts = []
    while "--variant" in argv:
        at = argv.index("--variant")
        texts.append(argv[at + 1])
        del argv[at : at + 2]
    args = bench.parse(argv)
    defaults = bench.parse([])
    unused = ["--" + name.replace("_", "-") for name in STUDENT_SIDE if getattr(args, name) != getattr(defaults, name)]
    if unused:   # warned, not refused: the recorded scripts pass bench/cifar10.py's arguments to both
        print(f"warning: view_transfer_sweep.py builds and measures fidelity only; it does not use {', '.join(unused)}",
              file=sys.stderr)
    if not (args.data / "train.tar.gz").is_file():
        print(f"skipped: CIFAR-10 archives not found in {args.data}")
        return 0
    import hello_format  # noqa: F401  (torchvision shim before open_clip)
    import hello_format.base  # noqa: F401
    from hello_build.data import scan_image_folder

    root = bench.unpack(args.data, args.cache)
    original, images, labels, classes = bench.split_halves(root, args.split_seed)
    test_index = scan_image_folder(root / "test", check_headers=False)
    base, foundation_info = bench.foundation(args, args.cache, images, labels, classes, test_index)
    teachers, teacher_info = bench.teacher(args, args.cache, original, test_index)
    upstream = {"foundation": foundation_info["inputs"], "teacher": teacher_info["inputs"]}
    out = args.out / "view_transfer_sweep.json"
    rows = json.loads(out.read_text()) if out.is_file() else []
    for text in texts:
        path, info = bench.bundle(args, args.cache, original, base, teachers, args.ipc[0], upstream, test_index, variant(text))
        view = info["view_transfer"]
        row = {"variant": text, "ipc": args.ipc[0], "bundle": path.name, "kept_step": view["kept_step"],
               "selection_agreement": view["kept_selection_agreement"], "selection_curve": view["selection_agreement"],
               "heldout_real_agreement": view["fidelity"]["agreement"],
               "heldout_real_projector_top1": view["fidelity"]["projector_top1"], "view_transfer_seconds": info["timings"]["view_transfer"],
               "reported_only": {"report_view_agreement": info["synthetic_agreement"], "projector_test_top1": info["projector_test_top1"]}}
        rows = [r for r in rows if (r["variant"], r.get("bundle")) != (text, path.name)] + [row]   # the bundle's name keys all its inputs
        bench.say(f"sweep {text}: selection agreement {row['selection_agreement']:.3f} (kept step {row['kept_step']}), "
                  f"held-out real {row['heldout_real_agreement']:.3f} (projector top-1 {row['heldout_real_projector_top1']:.3f}), {row['view_transfer_seconds']:.0f} s | reported only: "
                  f"report views {info['synthetic_agreement']:.3f}, projector test top-1 {info['projector_test_top1']:.3f}")
        args.out.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=1))
    if texts:
        for name, agreement in checkpoint_agreement(path, teachers).items():
            bench.say(f"ceiling: {name} agrees with the final teacher on {agreement:.3f} of the report views")
    return 0


if __name__ == "__main__":
    sys.exit(main())

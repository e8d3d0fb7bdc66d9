"""Which student recipe, for which label source? Chosen on held-out training images, never on test.

    python bench/student_recipe.py --variant beta=0.1 --variant beta=1 --regimes projector teacher --seeds 0 1

ConvNet-3 students are trained on a bundle's images under each recipe variant (the bundle's recipe
with the variant's fields changed: ``beta=1``, ``loss=kl,temperature=4``, ...) and each label source
(the bundle's projector, the final teacher online, or ``--prior-weights``: the bundle's projector
read with that ``prior_weight``, its logits interpolated toward its zero-shot projector's, the same
bundle with every delta off: the CLIP prior a reader regenerates for free), exactly as ``hello eval``
trains them, and
scored on the builder's hold-out of the original half (1,250 images no teacher, transfer or student
trained on) and on the bench's foundation half (25,000 training images no teacher or student trained
on; only the foundation's pretraining saw them), the lower-noise figure. One JSON line per run is
appended to ``--out``; runs already there are skipped, so two processes can split a grid.

``--test DIR`` (an ImageFolder such as CIFAR-10's test split) also scores each student there: for a
variant already chosen on the held-out figures, reported only. Give it its own ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cifar10 import SIZE, held_out  # noqa: E402  (the bench's image size, hold-out and foundation half)
from hello_build.data import RealImages, scan_image_folder  # noqa: E402
from hello_build.evaluation import STUDENT_MEAN, STUDENT_STD, StudentRecipe, top1, train_student  # noqa: E402
from hello_build.teachers import load_teacher  # noqa: E402
from hello_format.bundle import Bundle  # noqa: E402
from hello_format.dataset import LabelledImages  # noqa: E402
from hello_format.projector import Projector  # noqa: E402

CACHE = Path("bench/results/cache")
FIELD_TYPES = {"beta": float, "temperature": float, "loss": str, "lr": float, "weight_decay": float}  # epochs: --epochs


def parse_variant(text: str) -> dict:
    """``beta=1,loss=kl`` -> {"beta": 1.0, "loss": "kl"} (only the recipe fields in FIELD_TYPES)."""
    changes = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if name not in FIELD_TYPES:
            raise SystemExit(f"unknown recipe field {name!r}; choose from {', '.join(FIELD_TYPES)}")
        changes[name] = FIELD_TYPES[name](value)
    return changes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=CACHE / "bundles" / "cifar10-ipc10-9ff6e0e6cb64eea9.hello")
    parser.add_argument("--teacher", type=Path,
                        default=CACHE / "teacher" / "9f840154b672d4f9" / "teacher_convnet3_epoch0006.safetensors")
    parser.add_argument("--original", type=Path, default=CACHE / "cifar10" / "split-0" / "original")
    parser.add_argument("--variant", action="append", required=True, help="recipe changes, e.g. beta=1 (repeatable)")
    parser.add_argument("--regimes", nargs="*", choices=("projector", "teacher"), default=["projector", "teacher"])
    parser.add_argument("--prior-weights", type=float, nargs="*", default=[],
                        help="also label with the bundle read with each prior weight w: (1 - w) * projector + w * zero-shot")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--test", type=Path, help="also score on this ImageFolder (reported only, never chosen on)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/student-recipe/runs.jsonl"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    _, _, holdout, foundation_half = held_out(args.original)
    test = None
    if args.test:
        test_index = scan_image_folder(args.test, check_headers=False)
        test = RealImages(test_index, SIZE)
    with Bundle.open(args.bundle) as bundle:
        recipe_section, images, labels, names = bundle.manifest["recipe"], bundle.images(), bundle.labels, bundle.class_names
        projector = Projector.from_bundle(bundle)
        if test is not None and test_index.classes != bundle.class_folders:
            raise SystemExit(f"--test: its class folders {test_index.classes} are not the bundle's {bundle.class_folders}")
        mixed = {weight: Projector.from_bundle(bundle, prior_weight=weight) for weight in args.prior_weights}
    teacher = load_teacher(args.teacher).eval()

    def teacher_labels(x):
        with torch.no_grad():
            return teacher(x)

    labellers = {"projector": projector.label, "teacher": teacher_labels}
    regimes = list(args.regimes)
    for weight in args.prior_weights:
        regimes.append(f"projector+{weight:g} zero-shot")
        labellers[regimes[-1]] = mixed[weight].label

    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    for text in args.variant:
        changes = parse_variant(text)
        for regime in regimes:
            for seed in args.seeds:
                key = {"bundle": args.bundle.name, "variant": text, "regime": regime, "seed": seed, "epochs": args.epochs,
                       "teacher": args.teacher.name if regime == "teacher" else None}   # another teacher, another run
                if any({k: run.get(k) for k in key} == key for run in done):
                    continue
                recipe = StudentRecipe.from_manifest(recipe_section, epochs=args.epochs, seed=seed, **changes)
                labeller = labellers[regime]
                data = LabelledImages(images, labels, names, recipe.augment, labeller, device="cpu", seed=seed,
                                      normalize=(STUDENT_MEAN, STUDENT_STD))
                model = train_student(data, recipe, image_size=SIZE, device="cpu", progress=False)
                run = {**key, "holdout_top1": top1(model, holdout, device="cpu"),
                       "foundation_half_top1": top1(model, foundation_half, device="cpu")}
                if test is not None:
                    run["test_top1"] = top1(model, test, device="cpu")
                with open(args.out, "a") as handle:
                    handle.write(json.dumps(run) + "\n")
                done.append(run)
                print(json.dumps(run), flush=True)
    print(table(done, args.bundle.name))
    return 0


def table(runs: list[dict], bundle: str) -> str:
    """Mean (± std, per seed) foundation-half and hold-out top-1 per variant and regime, and the test top-1
    (reported only) where the runs were scored with --test."""
    cells = {}
    for run in runs:
        if run["bundle"] == bundle:
            cells.setdefault((run["variant"], run["regime"]), []).append(run)
    tested = any("test_top1" in run for group in cells.values() for run in group)
    lines = ["| recipe change | labels | foundation half top-1 % | hold-out top-1 % |"
             + " test top-1 % (reported only) |" * tested + " seeds |",
             "| --- | --- | --- | --- |" + " --- |" * tested + " --- |"]
    for (variant, regime), group in sorted(cells.items()):
        held = [r["holdout_top1"] * 100 for r in group]
        test = [r["test_top1"] * 100 for r in group if "test_top1" in r]
        tested_cell = (_mean_std(test) if len(test) == len(group) else "–") + " |"
        lines.append(f"| {variant} | {regime} | {_mean_std([r['foundation_half_top1'] * 100 for r in group])} | "
                     f"{statistics.mean(held):.2f} |{(' ' + tested_cell) * tested} {', '.join(str(r['seed']) for r in group)} |")
    return "\n".join(lines)


def _mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")


if __name__ == "__main__":
    sys.exit(main())

"""Which real crops should become the synthetic images? Screened on the builder's hold-out, never on test.

    python bench/image_selection.py --rules confident diverse random random-real --seeds 0 1 [--crop-scale 0.5 1]

On the CIFAR-10 bench's cache (its original half, teacher trajectory and IPC 10 bundle), each rule picks
``ipc`` crops per class from the same scored candidates (the init stage's: ``candidates_per_class`` real
images of the training part, ``crops_per_image`` crops each, each image's most confident crop):

    confident    RDED: the ``ipc`` crops the teachers are most confident of (the builder's rule)
    diverse      k-means (k = ipc) on the projector encoder's features of the candidates; in each
                 cluster the crop the teachers are most confident of
    random       the best crops of ``ipc`` random candidates
    random-real  ``ipc`` random whole training images (DD-Ranking's comparison, as ``hello eval``)

ConvNet-3 students are trained on each set under one label source (``--labels``: the final teacher
online, or the bundle's projector) with the bundle's recipe and scored on the builder's hold-out of the
original half (1,250 images no teacher, transfer or student trained on) and on the bench's foundation
half (25,000 training images no teacher or student trained on; only the foundation's pretraining saw
them), the lower-noise figure. Never on test. Prints one line per run and a table.
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

from cifar10 import held_out  # noqa: E402  (the bench's hold-out and foundation half)
from hello_build.data import RealImages, per_class_indices, real_image_loader  # noqa: E402
from hello_build.evaluation import STUDENT_MEAN, STUDENT_STD, StudentRecipe, top1, train_student  # noqa: E402
from hello_build.options import BuildOptions  # noqa: E402
from hello_build.stages.init import _plan_class, _score_crops, _to_uint8, candidate_crop_scale, crop_resize  # noqa: E402
from hello_build.teachers import JUDGES, TeacherSet, evaluating, final_or_mean, load_teacher  # noqa: E402
from hello_format.bundle import Bundle  # noqa: E402
from hello_format.dataset import LabelledImages  # noqa: E402
from hello_format.projector import Projector  # noqa: E402

CACHE = Path("bench/results/cache")
RULES = ("confident", "diverse", "random", "random-real")


def candidates(index, train_idx, teachers, projector, options, size):
    """Per class, scored as the init stage scores (``_score_crops``): each candidate's best crop (uint8
    [k, 3, size, size]), its teacher loss, and the projector encoder's features of it."""
    train = set(train_idx)
    out = []
    for label, positions in enumerate(per_class_indices(index)):
        plan = _plan_class([p for p in positions if p in train], label, options, size)
        crops, losses, cursor = [], [], 0
        with evaluating(teachers), torch.no_grad():
            for images, _ in real_image_loader(index, size, 64, indices=plan["positions"]):
                boxes = plan["boxes"][cursor:cursor + len(images)]
                batch_losses, best = _score_crops(final_or_mean(teachers, options.init_teacher == "last"), images, torch.full((len(images),), label), boxes,
                                                  size, boxes.shape[1], 64, "cpu")
                crops += [_to_uint8(crop_resize(image, box, (size, size))) for image, box in zip(images, best)]
                losses.append(batch_losses)
                cursor += len(images)
            crops = torch.stack(crops)
            out.append((crops, torch.cat(losses), projector.encode(crops.float() / 255)))
    return out


def kmeans(features: torch.Tensor, k: int, seed: int, iterations: int = 50) -> torch.Tensor:
    """Cluster of each row (k-means++ seeding, Lloyd iterations), seeded."""
    generator = torch.Generator().manual_seed(seed)
    centres = features[torch.randint(len(features), (1,), generator=generator)]
    while len(centres) < k:
        distance = torch.cdist(features, centres).min(dim=1).values ** 2
        centres = torch.cat([centres, features[torch.multinomial(distance / distance.sum(), 1, generator=generator)]])
    for _ in range(iterations):
        assign = torch.cdist(features, centres).argmin(dim=1)
        centres = torch.stack([features[assign == c].mean(0) if (assign == c).any() else centres[c] for c in range(k)])
    return torch.cdist(features, centres).argmin(dim=1)


def select(rule: str, losses: torch.Tensor, features: torch.Tensor, ipc: int, seed: int) -> torch.Tensor:
    """Positions of the ``ipc`` candidates ``rule`` keeps."""
    if rule == "confident":
        return torch.argsort(losses, stable=True)[:ipc]
    if rule == "random":
        return torch.arange(ipc)  # the candidates are a seeded random draw already
    if rule == "diverse":
        assign = kmeans(features, ipc, seed)
        chosen = []
        for cluster in assign.unique():
            members = torch.nonzero(assign == cluster).flatten()
            chosen.append(int(members[losses[members].argmin()]))
        rest = [int(i) for i in torch.argsort(losses, stable=True) if int(i) not in chosen]
        return torch.tensor((chosen + rest)[:ipc])
    raise SystemExit(f"unknown rule {rule!r}")


def mean_text(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values) * 100:.1f}" if len(values) > 1 else ""
    return f"{statistics.mean(values) * 100:.2f}{spread} ({', '.join(f'{v * 100:.2f}' for v in values)})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=CACHE / "bundles" / "cifar10-ipc10-ef5e328a4489c8c9.hello")
    parser.add_argument("--teachers", type=Path, nargs="+",
                        default=sorted((CACHE / "teacher" / "9f840154b672d4f9").glob("teacher_convnet3_epoch*.safetensors")))
    parser.add_argument("--original", type=Path, default=CACHE / "cifar10" / "split-0" / "original")
    parser.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES))
    parser.add_argument("--labels", choices=("teacher", "projector"), default="teacher")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--crop-scale", type=float, nargs=2, default=None,
                        help="area range of the candidate crops (default: the builder's, whole images at factor 1)")
    parser.add_argument("--init-teacher", choices=JUDGES, default=BuildOptions.init_teacher,
                        help="what ranks the candidates (hello-build --init-teacher): the teachers' mean or the final one")
    parser.add_argument("--candidates", type=int, default=BuildOptions.__dataclass_fields__["candidates_per_class"].default)
    parser.add_argument("--out", type=Path, default=Path("bench/results/image-selection"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    index, train_idx, val, foundation_half = held_out(args.original)
    teachers = TeacherSet([load_teacher(path) for path in args.teachers], combine="mean")
    final = teachers.teachers[-1]
    with Bundle.open(args.bundle) as bundle:
        recipe_section = bundle.manifest["recipe"]
        ipc = int((bundle.labels == 0).sum())
        projector = Projector.from_bundle(bundle)
    options = BuildOptions(data=".", output="x", ipc=ipc, factor=1, candidates_per_class=args.candidates,
                           crop_scale=args.crop_scale, init_teacher=args.init_teacher)
    args.crop_scale = list(candidate_crop_scale(options))
    scored = candidates(index, train_idx, teachers, projector, options, 32)
    train = set(train_idx)
    train_members = [[p for p in members if p in train] for members in per_class_indices(index)]
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for rule in args.rules:
        for seed in args.seeds:
            if rule == "random-real":
                generator = torch.Generator().manual_seed(seed)
                picks = [m[i] for m in train_members for i in torch.randperm(len(m), generator=generator)[:ipc].tolist()]
                real = RealImages(index, 32, picks)
                images = torch.stack([real[i][0] for i in range(len(real))])
            else:
                images = torch.cat([crops[select(rule, losses, features, ipc, 0)] for crops, losses, features in scored])
            labels = torch.arange(len(scored)).repeat_interleave(ipc)
            recipe = StudentRecipe.from_manifest(recipe_section, epochs=args.epochs, seed=seed)
            labeller = projector.label if args.labels == "projector" else (lambda x, t=final: t(x).detach())
            data = LabelledImages(images, labels, list(index.class_names), recipe.augment, labeller, device="cpu",
                                  seed=seed, normalize=(STUDENT_MEAN, STUDENT_STD))
            model = train_student(data, recipe, image_size=32, device="cpu", progress=False)
            accuracy = top1(model, val, device="cpu")
            wide = top1(model, foundation_half, device="cpu")
            results.setdefault(rule, []).append((accuracy, wide))
            print(json.dumps({"rule": rule, "labels": args.labels, "crop_scale": args.crop_scale,
                              "init_teacher": args.init_teacher, "seed": seed,
                              "holdout_top1": accuracy, "foundation_half_top1": wide}), flush=True)
    scale = "-".join(f"{v:g}" for v in args.crop_scale)
    judged = "" if args.init_teacher == BuildOptions.init_teacher else f"-judge{args.init_teacher}"
    with open(args.out / f"{args.labels}-scale{scale}{judged}-{'-'.join(args.rules)}.json", "w") as handle:
        json.dump(results, handle, indent=1)
    print(f"| rule (crop scale {scale}, {args.labels} labels, ranked by the {args.init_teacher} teacher) | hold-out top-1 % | "
          "foundation half top-1 % |\n| --- | --- | --- |")
    for rule, runs in results.items():
        print(f"| {rule} | {mean_text([r[0] for r in runs])} | {mean_text([r[1] for r in runs])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

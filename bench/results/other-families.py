"""Is the projector's gap to the online teacher a gap in what its labels teach, or the teacher's
affinity with students of its own architecture? Students of three families, one plain loop.

    python bench/results/other-families.py --arch convnet3 example_bn --seeds 0 1 2 3 4   # log: other-families.log
    python bench/results/other-families.py --arch resnet18 --epochs 60 --sources hello teacher

The loop is ``examples/train_student.py``'s (AdamW at the bundle recipe's lr and weight decay, batch 64,
images in [0, 1], the recipe's mse_ce loss), over the default IPC 10 bundle's images; only the label
source changes: HelloDataset (the bundle's projector with its prior mix), the online ConvNet-3 teacher
the bundle imitates (set as the dataset's labeller: the same views), or the mixed
hard labels alone. Architectures: ``convnet3`` (the teacher's own, instance norm and average pooling),
``example_bn`` (the example's BatchNorm/max-pool ConvNet), ``resnet18`` (the zoo's, 32 px stem; run
with ``--epochs 60``, the bench's ResNet-18 budget). Test top-1 is reported only; nothing is
chosen on it. One JSON line per run in ``--out``; runs already there are skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

from train_student import Student, top1  # noqa: E402  (the example's model and test scoring, unchanged)
from hello_build.teachers import load_teacher  # noqa: E402
from hello_build.zoo import create_model  # noqa: E402
from hello_format import HelloDataset, mse_ce_loss  # noqa: E402

CACHE = ROOT / "bench/results/cache"
ARCHS = {"convnet3": lambda k: create_model("convnet3", k, 32), "example_bn": lambda k: Student(k),
         "resnet18": lambda k: create_model("resnet18_32", k, 32)}


def student_run(bundle: Path, teacher_path: Path, arch: str, source: str, seed: int, epochs: int, test: Path) -> float:
    ds = HelloDataset(bundle, device="cpu", seed=seed)
    recipe = ds.recipe
    if source == "teacher":   # the same images, views and seed; only the labeller changes
        teacher = load_teacher(teacher_path).eval()

        def labeller(x):
            with torch.no_grad():
                return teacher(x)
        ds.labeller = labeller
    torch.manual_seed(seed)
    student = ARCHS[arch](ds.num_classes)
    optimizer = torch.optim.AdamW(student.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    for epoch in range(epochs):
        student.train()
        for batch in ds.loader(64, shuffle=True, start_epoch=epoch):
            logits = student(batch.images)
            if source == "hard":
                loss = torch.sum(-batch.hard_labels * F.log_softmax(logits, 1), dim=1).mean()
            else:
                loss = mse_ce_loss(logits, batch.soft_labels, batch.hard_labels, recipe.beta)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    folders = ds.manifest.get("provenance", {}).get("class_folders", ds.class_names)
    return top1(student, str(test), folders, 32, "cpu")


def finished(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=CACHE / "bundles" / "cifar10-ipc10-8d3d8997894892a6.hello")
    parser.add_argument("--teacher", type=Path,
                        default=CACHE / "teacher" / "9f840154b672d4f9" / "teacher_convnet3_epoch0006.safetensors")
    parser.add_argument("--test", type=Path, default=CACHE / "cifar10" / "test")
    parser.add_argument("--arch", nargs="+", choices=sorted(ARCHS), default=sorted(ARCHS))
    parser.add_argument("--sources", nargs="+", choices=("hello", "teacher", "hard"), default=["hello", "teacher", "hard"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/cifar10-other-families/runs.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for arch in args.arch:
        for source in args.sources:
            for seed in args.seeds:
                key = {"bundle": args.bundle.name, "arch": arch, "source": source, "seed": seed, "epochs": args.epochs}
                if any({k: run.get(k) for k in key} == key for run in finished(args.out)):  # read again: two processes may split a grid
                    continue
                run = {**key, "test_top1": student_run(args.bundle, args.teacher, arch, source, seed, args.epochs, args.test)}
                with open(args.out, "a") as handle:
                    handle.write(json.dumps(run) + "\n")
                print(json.dumps(run), flush=True)
    done = finished(args.out)
    print("| student | labels | test top-1 % | seeds |\n| --- | --- | --- | --- |")
    cells = {}
    for run in done:
        cells.setdefault((run["arch"], run["source"], run["epochs"]), []).append(run["test_top1"] * 100)
    for (arch, source, epochs), values in sorted(cells.items()):
        spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
        print(f"| {arch} ({epochs} ep) | {source} | {statistics.mean(values):.2f}{spread} | "
              f"{' / '.join(f'{v:.2f}' for v in values)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

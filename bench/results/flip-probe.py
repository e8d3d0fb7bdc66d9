"""Would labels averaged over a view and its mirror image be more accurate? No student trained.

The teacher gives a CutMixed view and its mirror image different top labels on 17 % of the student's
views (bench/README.md, "What the twin teaches"), and students follow their label source's accuracy.
This probes (P(x) + P(flip x)) / 2 for the bundle's labels P (the prior mix included) and, for scale,
for the teacher:
- top-1 on the builder's hold-out (1,250 real images no teacher, transfer or foundation saw), clean and
  as the student's augmentation sees them without CutMix (crop, flip; 5 rounds), against the true class;
- on the build's report views of the synthetic images (CutMix as the recipe): agreement with the
  teacher's top label and the mean squared logit difference to the teacher (what the students fit).

    python bench/results/flip-probe.py BUNDLE TEACHER.safetensors     # log: bench/results/flip-probe.log
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cifar10 import held_out  # noqa: E402

from hello_build.stages.view_transfer import REPORT_SEED, _view_batches  # noqa: E402
from hello_build.teachers import load_teacher  # noqa: E402
from hello_format.augment import augment_batch  # noqa: E402
from hello_format.bundle import Bundle  # noqa: E402
from hello_format.projector import Projector  # noqa: E402
from hello_format.recipe import Recipe  # noqa: E402

CACHE = Path("bench/results/cache")
bundle_path, teacher_path = sys.argv[1], sys.argv[2]
with Bundle.open(bundle_path) as bundle:
    images, augment = bundle.images(), Recipe.from_manifest(bundle.manifest["recipe"]).augment
    projector = Projector.from_bundle(bundle)
teacher = load_teacher(teacher_path)
print(f"bundle {bundle_path}, prior weight {projector.prior_weight}; teacher {teacher_path}")


def mirrored(label):
    return lambda x: (label(x) + label(x.flip(-1))) / 2


def sources():
    return {"teacher": teacher, "teacher, mirror-averaged": mirrored(teacher),
            "projector (bundle's labels)": projector.label, "projector, mirror-averaged": mirrored(projector.label)}


def top1(x, y):
    for name, label in sources().items():
        print(f"  {name}: top-1 {(label(x).float().argmax(1) == y).float().mean():.2%}")


with torch.no_grad():
    _, _, holdout, _ = held_out(CACHE / "cifar10" / "split-0" / "original")
    batches = list(torch.utils.data.DataLoader(holdout, batch_size=250))
    x8, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    print(f"builder's hold-out, {len(y)} real images, clean")
    top1(x8.float() / 255, y)
    plain = augment.replace(cutmix=0.0, mixup=0.0)
    generator = torch.Generator().manual_seed(REPORT_SEED)
    views = torch.cat([augment_batch(x8, plain, generator).images for _ in range(5)])
    print(f"the same, 5 augmented views each without CutMix ({len(views)} views)")
    top1(views, y.repeat(5))
    v = torch.cat(list(_view_batches(images, augment, seed=REPORT_SEED, rounds=10, limit=8192, device="cpu")))
    t = teacher(v).float()
    print(f"report views of the synthetic images, with CutMix ({len(v)} views)")
    for name, label in sources().items():
        logits = label(v).float()
        print(f"  {name}: agreement with the teacher {(logits.argmax(1) == t.argmax(1)).float().mean():.2%}, "
              f"logit MSE {((logits - t) ** 2).mean():.3f}")

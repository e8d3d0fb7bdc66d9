"""How accurate, and how teacher-like, are the projector's logits interpolated toward its zero-shot
projector's (the same bundle with every delta off)? Output-space interpolation, (1 - w) * projector +
w * zero-shot, on the whole-image default IPC 10 bundle, with no student trained:
- on the builder's hold-out (1,250 real images of the original half that no teacher, transfer or
  foundation saw): each source's top-1 and its agreement with the final teacher;
- on 5,000 images of the bench's foundation half, which the foundation was pretrained on: how far
  the zero-shot projector is flattered there (student_recipe.py scores students on that half);
- on the build's report views of the synthetic images (student views, with CutMix and without): top-1
  agreement with the teacher and the mean squared logit difference (what the students fit).

    python bench/results/prior-probe.py      # log: bench/results/prior-probe.log
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cifar10 import held_out  # noqa: E402

from hello_build.stages.view_transfer import REPORT_SEED, _view_batches  # noqa: E402
from hello_build.teachers import load_teacher  # noqa: E402
from hello_format.bundle import Bundle  # noqa: E402
from hello_format.projector import Projector  # noqa: E402
from hello_format.recipe import Recipe  # noqa: E402

CACHE = Path("bench/results/cache")
WEIGHTS = (0.2, 1 / 3, 0.4, 0.5)
with Bundle.open(CACHE / "bundles" / "cifar10-ipc10-9ff6e0e6cb64eea9.hello") as bundle:
    images, augment = bundle.images(), Recipe.from_manifest(bundle.manifest["recipe"]).augment
    projector, prior = Projector.from_bundle(bundle), Projector.from_bundle(bundle, prior_weight=0.5)
teacher = load_teacher(CACHE / "teacher" / "9f840154b672d4f9" / "teacher_convnet3_epoch0006.safetensors")
twin = load_teacher(CACHE / "teacher" / "second-seed1" / "teacher_convnet3_epoch0006.safetensors")


def sources(x):
    p, z = projector.label(x), prior.zero_shot(x)
    return {"projector": p, "zero-shot": z, "twin": twin(x).float(),
            **{f"(1 - {w:.2f}) projector + {w:.2f} zero-shot": (1 - w) * p + w * z for w in WEIGHTS}}


with torch.no_grad():
    _, _, holdout, half = held_out(CACHE / "cifar10" / "split-0" / "original")
    some = torch.randperm(len(half), generator=torch.Generator().manual_seed(0))[:5000]  # the half is class-sorted
    x, y = half.tensors[0][some].float() / 255, half.tensors[1][some]
    print(f"{len(y)} images of the foundation half: top-1 of the teacher {(teacher(x).argmax(1) == y).float().mean():.1%}, "
          f"the projector {(projector.label(x).argmax(1) == y).float().mean():.1%}, "
          f"the zero-shot projector {(prior.zero_shot(x).argmax(1) == y).float().mean():.1%}")
    batches = list(torch.utils.data.DataLoader(holdout, batch_size=250))
    x, y = torch.cat([b[0] for b in batches]).float() / 255, torch.cat([b[1] for b in batches])
    t = teacher(x).argmax(1)
    print(f"builder's hold-out, {len(y)} real images: teacher top-1 {(t == y).float().mean():.1%}")
    for name, logits in sources(x).items():
        print(f"  {name}: top-1 {(logits.argmax(1) == y).float().mean():.1%}, "
              f"agreement with the teacher {(logits.argmax(1) == t).float().mean():.1%}")
    for mixed in (True, False):
        views = list(_view_batches(images, augment if mixed else augment.replace(cutmix=0.0, mixup=0.0),
                                   seed=REPORT_SEED, rounds=10, limit=8192, device="cpu"))
        v = torch.cat(views)
        t = teacher(v).float()
        print(f"report views of the synthetic images, {'with' if mixed else 'without'} CutMix ({len(v)} views)")
        for name, logits in sources(v).items():
            print(f"  {name}: agreement with the teacher {(logits.argmax(1) == t.argmax(1)).float().mean():.1%}, "
                  f"logit MSE {((logits - t) ** 2).mean():.3f}")

"""On fresh student views of a demo bundle's images: does the teacher's label of a CutMixed view agree more
with the projector's label of that view, or with the lam-mix of the projector's labels of its two parts?"""
import sys
import torch
import hello_format  # noqa
from hello_format.bundle import Bundle
from hello_format.projector import Projector
from hello_format.augment import draw_augment, apply_crops, apply_mix
from hello_format.recipe import Recipe
from hello_build.teachers import load_teacher
from pathlib import Path
seed = int(sys.argv[1]); rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 300
work = Path(f"bench/results/cache/mix-of-parts/{seed}")
teacher = load_teacher(sorted((work / "teacher").glob("teacher_convnet3_epoch*.safetensors"))[-1], num_classes=10).eval()
with Bundle.open(work / "demo.hello") as bundle:
    projector = Projector.from_bundle(bundle).eval()
    images = bundle.images()
    augment = Recipe.from_manifest(bundle.manifest["recipe"]).augment
print("augment", augment)
g = torch.Generator().manual_seed(0xABCDE)
counts = dict(n=0, view=0, parts=0, teacher_parts=0, view_unmixed=0, n_mixed=0, view_m=0, parts_m=0, teacher_parts_m=0)
mse = dict(view=0.0, parts=0.0)
with torch.no_grad():
    for r in range(rounds):
        order = torch.randperm(len(images), generator=g)
        batch = images[order]
        draw = draw_augment(len(batch), batch.shape[2], batch.shape[3], augment, g)
        unmixed = apply_crops(batch, draw.crops, draw.flips, draw.size, draw.patch_order)
        mixed = apply_mix(unmixed.clone(), draw.mix)
        t_mixed = teacher(mixed).float(); p_mixed = projector(mixed).float()
        p_un = projector(unmixed).float(); t_un = teacher(unmixed).float()
        if draw.mix is None:
            parts, tparts = p_un, t_un
        else:
            lam, perm = draw.mix.lam, draw.mix.perm
            parts = lam * p_un + (1 - lam) * p_un[perm]
            tparts = lam * t_un + (1 - lam) * t_un[perm]
        top = t_mixed.argmax(1)
        counts["n"] += len(top)
        counts["view"] += int((p_mixed.argmax(1) == top).sum())
        counts["parts"] += int((parts.argmax(1) == top).sum())
        counts["teacher_parts"] += int((tparts.argmax(1) == top).sum())
        counts["view_unmixed"] += int((p_un.argmax(1) == t_un.argmax(1)).sum())
        mse["view"] += float(((p_mixed - t_mixed) ** 2).mean(1).sum()); mse["parts"] += float(((parts - t_mixed) ** 2).mean(1).sum())
        if draw.mix is not None:
            counts["n_mixed"] += len(top)
            counts["view_m"] += int((p_mixed.argmax(1) == top).sum())
            counts["parts_m"] += int((parts.argmax(1) == top).sum())
            counts["teacher_parts_m"] += int((tparts.argmax(1) == top).sum())
n, m = counts["n"], max(1, counts["n_mixed"])
print(f"views {n} (mixed {counts['n_mixed']}); agreement with the teacher's label of the view:")
print(f"  projector on the view          {counts['view']/n:.4f}   (mixed views only {counts['view_m']/m:.4f})")
print(f"  lam-mix of projector on parts  {counts['parts']/n:.4f}   (mixed views only {counts['parts_m']/m:.4f})")
print(f"  lam-mix of teacher on parts    {counts['teacher_parts']/n:.4f}   (mixed views only {counts['teacher_parts_m']/m:.4f})")
print(f"  projector vs teacher, unmixed crops {counts['view_unmixed']/n:.4f}")
print(f"  logit MSE to the teacher's view label: view {mse['view']/n:.3f}, parts {mse['parts']/n:.3f}")

"""Where projector and teacher disagree: top-1 agreement on fresh student views of a bundle's synthetic
images, with the recipe's CutMix/Mixup and on views from the same seed without it; and, for scale, the same
figures for other label sources (earlier checkpoints of the teacher's own trajectory).

    python bench/view_agreement.py BUNDLE --teacher FINAL.safetensors [--compare EARLIER.safetensors ...] [--mirror] [--val DIR]
        [--prior-weights W ...]

With ``--val`` (a 32 px ImageFolder of real images, e.g. CIFAR-10's test split: reported, never tuned
on) it also prints each source's own top-1, the final teacher's included.

The views are the build's report views (``hello_build.stages.view_transfer.REPORT_SEED``: a seed
neither transfer phase fits on), so the first line repeats the bundle's ``synthetic_agreement``.
``--mirror`` adds the final teacher itself on the mirror image of each view: how far the teacher's
own label moves under a flip, which the student's augmentation draws anyway. ``--prior-weights`` adds
the bundle read with each other prior weight w: (1 - w) projector + w zero-shot projector.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--teacher", type=Path, required=True, help="the teacher the labels imitate (a file hello-build loads)")
    parser.add_argument("--compare", type=Path, nargs="*", default=[], help="other label sources to score the same way")
    parser.add_argument("--mirror", action="store_true", help="also score the final teacher on the mirrored views")
    parser.add_argument("--val", type=Path, help="real images (ImageFolder, the bundle's classes) for each source's own top-1")
    parser.add_argument("--prior-weights", type=float, nargs="*", default=[],
                        help="also score the bundle read with each of these prior weights")
    args = parser.parse_args(argv)

    import hello_format  # noqa: F401  (torchvision shim before open_clip)
    from cifar10 import accuracy   # the CIFAR bench's top-1 on 32 px real images
    from hello_build.data import scan_image_folder
    from hello_build.stages.view_transfer import view_agreement
    from hello_build.teachers import load_teacher
    from hello_format.bundle import Bundle
    from hello_format.projector import Projector
    from hello_format.recipe import Recipe

    with Bundle.open(args.bundle) as bundle:
        images, augment = bundle.images(), Recipe.from_manifest(bundle.manifest["recipe"]).augment
        projector = Projector.from_bundle(bundle)
        mixes = {f"projector read with prior weight {w:g}": Projector.from_bundle(bundle, prior_weight=w)
                 for w in args.prior_weights}
    final = load_teacher(args.teacher)
    reference = SimpleNamespace(teachers=[final])
    unmixed = augment.replace(cutmix=0.0, mixup=0.0)
    sources = {f"projector of {args.bundle.name}": projector, **mixes, **{name_of(path, args): load_teacher(path) for path in args.compare}}
    if args.mirror:
        sources[f"{name_of(args.teacher, args)} on the mirrored views"] = Mirrored(final)
    print(f"top-1 agreement with {name_of(args.teacher, args)} on fresh student views of {len(images)} synthetic images")
    for name, source in sources.items():
        mixed = view_agreement(source, reference, images, augment, device="cpu", target="last", precision="fp32")
        plain = view_agreement(source, reference, images, unmixed, device="cpu", target="last", precision="fp32")
        print(f"  {name}: {100 * mixed['agreement']:.1f} % with the recipe's CutMix/Mixup, "
              f"{100 * plain['agreement']:.1f} % without ({mixed['views']} views each)")
    if args.val:
        val = scan_image_folder(args.val, check_headers=False)
        print(f"own top-1 on {len(val)} images of {args.val}")
        for name, source in {**sources, name_of(args.teacher, args): final}.items():
            label = source.label if isinstance(source, Projector) else source
            print(f"  {name}: {100 * accuracy(label, val):.1f} %")
    return 0


class Mirrored(torch.nn.Module):
    """A label source that is ``model`` applied to the mirror image (a horizontal flip) of each view."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model(images.flip(-1))


def name_of(path: Path, args) -> str:
    """A teacher file's name, with its folder where another file given has the same name (trajectories
    of two runs both end in ``teacher_convnet3_epoch0006.safetensors``)."""
    names = [p.name for p in [args.teacher, *args.compare]]
    return path.name if names.count(path.name) == 1 else f"{path.parent.name}/{path.name}"


if __name__ == "__main__":
    raise SystemExit(main())

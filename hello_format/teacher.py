"""A bundle's projector as an evaluation harness's teacher: ``logits = teacher(images)``.

DD-Ranking (``ddranking``) calls each teacher on every augmented batch, ``tea_model(images)``, with
images normalised by the dataset's mean/std, and averages the logits; in its training loop the call
is not under ``torch.no_grad()``, so the teacher takes care of that itself.
"""

from __future__ import annotations

import collections
from typing import Sequence

import torch
from torch import nn

from hello_format.augment import IMAGENET_MEAN, IMAGENET_STD
from hello_format.errors import HelloError
from hello_format.labelling import LabelOptions
from hello_format.projector import Projector
from hello_format.runtime import host_default
from hello_format.text import shortened



class ProjectorTeacher(nn.Module):
    """``teacher(images) -> [B, len(class_names)]`` fp32 logits in the harness's class order, without
    gradients. ``images`` are normalised with the harness's ``mean`` / ``std`` (ImageNet's by default;
    DD-Ranking's CIFAR loaders use CIFAR's own): they are taken back to [0, 1], resized to the base's
    image size when they differ (bilinear, antialiased, as every projector input) and normalised with
    the base's statistics. The logits are ``Projector.label``'s (``label_options``, which become the
    given projector's own; never non-finite)."""

    def __init__(self, projector: Projector, class_names: Sequence[str], *, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, label_options: LabelOptions | dict | None = None):
        super().__init__()
        self.projector = projector.requires_grad_(False).eval()
        order = class_order(projector.class_names, class_names)   # refuses one string, which list() would split
        # the harness's names read back from the order: class_names may be an iterator class_order has consumed
        self.class_names = [projector.class_names[i] for i in order.tolist()]
        self.label_options = label_options
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("mean", _channels(mean, "mean"), persistent=False)
        self.register_buffer("std", _channels(std, "std"), persistent=False)
        self._prepared_on = None   # the device label_options were resolved for

    @classmethod
    @host_default
    def from_bundle(cls, bundle, class_names: Sequence[str], *, device="cpu", checkpoint: str | None = None,
                    allow_remote_base: bool = False, verify: bool = True, **options) -> "ProjectorTeacher":
        """The teacher of a ``Bundle`` (or a path / ``hf://`` URI); ``verify`` as ``Projector.from_bundle``'s
        (False: the weights' sha256 is not checked); ``options`` as in the constructor."""
        projector = Projector.from_bundle(bundle, device=device, checkpoint=checkpoint,
                                          allow_remote_base=allow_remote_base, verify=verify)
        return cls(projector, class_names, **options).to(device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        device = self.mean.device
        if self._prepared_on != device:
            self.projector.prepare_labelling(self.label_options)
            self._prepared_on = device
        if not images.is_floating_point():
            raise TypeError(f"the teacher takes float images normalised with the harness's mean/std, got {images.dtype}")
        with torch.no_grad():
            unit = images.to(device, torch.float32) * self.std + self.mean
            return self.projector.label(unit).index_select(1, self.order)


def class_order(bundle_names: Sequence[str], harness_names: Sequence[str]) -> torch.Tensor:
    """Index ``i`` holds the bundle's index of ``harness_names[i]``; HelloError when the two lists are
    not the same set of names (a harness name missing from the bundle, or a bundle name left out)."""
    if isinstance(harness_names, (str, bytes)):   # iterating it would take each letter for a class
        raise HelloError(f"the teacher takes a list of class names (e.g. dataset.classes), not one string: "
                         f"pass [{shortened(harness_names)}]")
    harness_names = list(harness_names)
    index = {name: i for i, name in enumerate(bundle_names)}
    repeated = [name for name, count in collections.Counter(harness_names).items() if count > 1]
    if repeated:
        raise HelloError(f"the harness's class names repeat {shortened(repeated[0])}: each must be named once")
    missing = [name for name in harness_names if name not in index]
    extra = sorted(set(bundle_names) - set(harness_names))
    if missing or extra:
        problem = (f"the bundle has no class {shortened(missing[0])} ({len(missing)} such)" if missing
                   else f"the harness has no class {shortened(extra[0])} ({len(extra)} such)")
        raise HelloError(f"the harness's class names must be the bundle's {len(bundle_names)} names in any "
                         f"order: {problem}")
    return torch.tensor([index[name] for name in harness_names], dtype=torch.long)


def _channels(values: Sequence[float], name: str) -> torch.Tensor:
    """The harness's ``mean`` or ``std`` of [0, 1] images: 1 (grey, e.g. MNIST's) or 3 values in [0, 1]
    (std above 0)."""
    try:
        vector = torch.tensor([float(v) for v in values], dtype=torch.float32)
    except (TypeError, ValueError):
        vector = None
    if vector is None or len(vector) not in (1, 3) or not bool(((vector >= 0) & (vector <= 1)).all()) \
            or (name == "std" and not bool((vector > 0).all())):
        raise ValueError(f"{name} must be 1 or 3 per-channel values in [0, 1] (of images in [0, 1]"
                         f"{'; above 0' if name == 'std' else ''}), got {shortened(values)}")
    return vector.reshape(1, -1, 1, 1)

"""The student recipe: how students train on a bundle, the manifest's ``recipe`` section as data.

``Recipe`` is the only writer (``to_manifest``) and reader (``from_manifest``) of that section and
the only home of its defaults (the builder's options take theirs from here, except the crop scale,
0.25 for distilled images). The augmentation part
is an ``AugmentConfig``, whose own defaults say what an absent ``recipe.augment`` key means.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from hello_format.augment import AugmentConfig, AugmentError
from hello_format.text import shortened


LOSSES = ("mse_ce", "kl")  # the student losses a recipe may name (the schema's enum)
OPTIMIZERS = ("adamw", "sgd")  # the optimizers hello eval trains students with (recipe.optimizer is an open string)
SGD_MOMENTUM = 0.9  # what recipe.optimizer "sgd" means (spec section 4): SGD with this momentum, no Nesterov


def unread_loss_fields(loss: str) -> tuple[str, ...]:
    """The recipe's loss fields a student trained with ``loss`` does not read: kl has no beta, mse_ce no
    temperature."""
    return ("beta",) if loss == "kl" else ("temperature",)


@dataclass(frozen=True)
class Recipe:
    """The student side a label generator was built for (spec section 4, ``recipe.*``)."""

    loss: str = "mse_ce"              # one of LOSSES: "mse_ce": MSE to the soft labels + beta * CE (HeLlO); "kl" (SRe2L/RDED)
    temperature: float = 20.0         # temperature of the kl loss
    beta: float = 1.0                 # weight of the hard-label CE in mse_ce (chosen on held-out images: the spec's open defaults)
    epochs: int = 300                 # student epochs (also sets the stored-label comparison)
    batch_size: int = 64
    optimizer: str = "adamw"          # one of OPTIMIZERS for hello eval
    lr: float = 1e-3                  # cosine-decayed
    weight_decay: float = 0.01
    student_image_size: int | None = None   # informational (None: the stored size); readers use augment.output_size
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        if isinstance(self.augment, dict):   # its settings over the defaults (replace(): over this recipe's)
            object.__setattr__(self, "augment", AugmentConfig.from_dict(self.augment))
        if not isinstance(self.augment, AugmentConfig):   # else to_manifest and every batch fail much later
            raise AugmentError(f"augment must be an AugmentConfig or a dict of its fields, got {shortened(self.augment)}")

    def to_manifest(self) -> dict:
        """The manifest ``recipe`` section."""
        section = {f.name: getattr(self, f.name) for f in dataclasses.fields(Recipe)}
        section["augment"] = self.augment.to_dict()
        return section

    @classmethod
    def from_manifest(cls, section: dict, **overrides) -> "Recipe":
        """Read a ``recipe`` section (unknown keys ignored, absent ones default), then apply the
        ``overrides`` that are not None; ``augment`` as an ``AugmentConfig`` or a dict of changes."""
        values = {f.name: section[f.name] for f in dataclasses.fields(Recipe) if f.name in section}
        values["augment"] = AugmentConfig.from_dict(section.get("augment", {}))
        return cls(**values).replace(**overrides)

    def replace(self, **overrides) -> "Recipe":
        """A copy with the given fields changed (None leaves a field as it is)."""
        changes = {name: value for name, value in overrides.items() if value is not None}
        if isinstance(changes.get("augment"), dict):
            changes["augment"] = self.augment.replace(**changes["augment"])
        return dataclasses.replace(self, **changes)

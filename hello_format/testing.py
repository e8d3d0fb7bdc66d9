"""TEST-ONLY helpers, not part of the format (not in the ``hello_format`` face): tiny CLIP bases with
deterministic, non-degenerate random weights, for the test suite and ``examples/make_tiny_bundle.py``.
Shipped in the package only so that the example runs from an installed copy.

The tiny architectures are the open_clip configs in ``hello_format/model_configs``. open_clip's own
random init zeroes every ResNet ``bn3.weight`` (so a bottleneck's convs would not affect the output
at all); ``tiny_clip`` re-randomises every normalisation layer so that each weight matters.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from hello_format import lora
from hello_format.base import quiet_open_clip, describe_base
from hello_format.generator import HeadConfig, HeadLoraConfig
from hello_format.head import SINGLE_TEMPLATE

import open_clip

TINY_ARCHITECTURES = {"vit": "hello-tiny-vit", "rn": "hello-tiny-rn"}


def tiny_clip(family: str = "vit", seed: int = 0) -> nn.Module:
    """A tiny open_clip CLIP model ("vit" or "rn"), the same weights for the same seed, in eval mode."""
    if family not in TINY_ARCHITECTURES:
        raise ValueError(f"family must be one of {sorted(TINY_ARCHITECTURES)}, got {family!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with quiet_open_clip():
            model = open_clip.create_model(TINY_ARCHITECTURES[family])
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.weight.copy_(_uniform(module.weight.shape, 0.5, 1.5, generator))
                    module.bias.copy_(_uniform(module.bias.shape, -0.1, 0.1, generator))
                    module.running_mean.copy_(_uniform(module.running_mean.shape, -0.1, 0.1, generator))
                    module.running_var.copy_(_uniform(module.running_var.shape, 0.5, 1.5, generator))
                elif isinstance(module, nn.LayerNorm):
                    module.weight.copy_(_uniform(module.weight.shape, 0.8, 1.2, generator))
                    module.bias.copy_(_uniform(module.bias.shape, -0.05, 0.05, generator))
    return model.eval()


def tiny_base_manifest(model: nn.Module, family: str = "vit", *, source: str = "embedded") -> dict:
    """The manifest ``base`` section of a tiny model (embedded by default: no download needed)."""
    return describe_base(model, architecture=TINY_ARCHITECTURES[family], source=source)


def tiny_projector(family: str = "vit", class_names: Sequence[str] = ("cat", "dog", "bird"), *,
                   seed: int = 0, r: int = 4, head_r: int = 8, randomize_lora: bool = True,
                   templates: Sequence[str] = SINGLE_TEMPLATE, logit_scale: float = 10.0, lora_std: float = 0.05):
    """A trainable tiny projector; with ``randomize_lora`` every LoRA B is non-zero (normal, standard
    deviation ``lora_std``), so the LoRA weights change the output (as they would after training)."""
    from hello_format.projector import Projector

    model = tiny_clip(family, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # peft and the head draw their LoRA A init from the global RNG
        projector = Projector.for_training(
            model, tiny_base_manifest(model, family), class_names,
            head=HeadConfig(templates=templates, logit_scale=logit_scale, lora=HeadLoraConfig(r=head_r, lora_alpha=head_r)),
            encoder_lora=lora.encoder_config(model.visual, r=r, lora_alpha=2 * r))
    if randomize_lora:
        generator = torch.Generator().manual_seed(seed + 2)
        with torch.no_grad():
            for name, parameter in projector.named_parameters():
                if "lora_B" in name:
                    parameter.copy_(lora_std * torch.randn(parameter.shape, generator=generator))
    return projector


def _uniform(shape, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)

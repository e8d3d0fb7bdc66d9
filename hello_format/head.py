"""The text-guided head: class text embeddings (CLIP's zero-shot classifier) plus a low-rank delta."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

import hello_format  # noqa: F401  (installs the torchvision op shim before open_clip loads)
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

DEFAULT_TEMPLATES: tuple[str, ...] = tuple(template("{}") for template in OPENAI_IMAGENET_TEMPLATES)
SINGLE_TEMPLATE: tuple[str, ...] = ("a photo of a {}.",)


@torch.no_grad()
def text_embeddings(model: nn.Module, tokenizer, class_names: Sequence[str],
                    templates: Sequence[str], *, batch_size: int = 1024, progress: bool | None = False) -> torch.Tensor:
    """``[C, d]`` float32: per class, the mean over templates of L2-normalised text embeddings,
    renormalised (open_clip's ``build_zero_shot_classifier``, transposed). ``progress``: a bar on stderr
    counting classes (ImageNet's 1000 classes x 80 templates are 80,000 prompts: minutes on a CPU);
    None: where someone watches (a terminal or a notebook, as tqdm decides)."""
    if not templates:
        raise ValueError("head templates are empty: give at least one, e.g. 'a photo of a {}.'")
    device = next(model.parameters()).device
    per_class = max(1, batch_size // len(templates))  # whole classes per batch: memory holds one batch and the means
    means = []
    with tqdm(total=len(class_names), desc=f"text head ({len(templates)} prompts a class)", unit="class",
              disable=None if progress is None else not progress, leave=False) as bar:
        for start in range(0, len(class_names), per_class):
            names = class_names[start:start + per_class]
            tokens = tokenizer([template.format(name) for name in names for template in templates]).to(device)
            encoded = model.encode_text(tokens, normalize=True).float()
            means.append(encoded.reshape(len(names), len(templates), -1).mean(dim=1))
            bar.update(len(names))
    return F.normalize(torch.cat(means), dim=-1)


class HeadLoRA(nn.Module):
    """Low-rank delta of the class weights: ``(lora_alpha / r) * lora_B @ lora_A``, ``[C, d]``.

    ``lora_A`` ``[r, d]`` starts Kaiming-uniform (as peft does), ``lora_B`` ``[C, r]`` at zero, so a
    new head is exactly the text-initialised classifier.
    """

    def __init__(self, num_classes: int, dim: int, r: int, lora_alpha: float):
        super().__init__()
        if r < 1:
            raise ValueError(f"head LoRA rank must be >= 1, got {r}")
        self.r, self.lora_alpha = int(r), float(lora_alpha)
        self.scaling = self.lora_alpha / self.r
        self.lora_A = nn.Parameter(torch.empty(r, dim))
        self.lora_B = nn.Parameter(torch.zeros(num_classes, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def delta(self) -> torch.Tensor:
        return self.scaling * (self.lora_B @ self.lora_A)

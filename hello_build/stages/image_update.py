"""Stage 4 (optional), image-level update: make the down-sampled patches look like their sources.

Each synthetic image stitches factor x factor patches that were down-sampled from real crops, so the
projector sees less than the teacher saw when the crop was chosen. Following the method, the stored
pixels are optimised so that the encoder's features of every up-sampled patch match those of its
full-resolution source: MSE(E(up(p_small)), E(p_full)), with E the transferred image encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hello_build.stages.init import patch_layout


@dataclass(frozen=True)
class ImageUpdateOptions:
    """The update's settings; steps and lr default in hello_build.options."""

    steps: int
    lr: float
    batch_size: int = 64


def split_patches(images: torch.Tensor, factor: int) -> list[torch.Tensor]:
    """The factor x factor patches of stitched images [N, C, S, S], row-major, as laid out by the init
    stage (when S is not a multiple of factor, the first rows and columns are a pixel larger)."""
    return [images[:, :, top : top + h, left : left + w] for top, left, h, w in patch_layout(images.shape[-1], factor)]


def run_image_update(
    images: torch.Tensor,
    sources: Callable[[slice], torch.Tensor],
    factor: int,
    encoder,
    options: ImageUpdateOptions,
    *,
    device: torch.device,
    progress: bool = True,
) -> tuple[torch.Tensor, dict]:
    """Optimise uint8 ``images`` [N,C,S,S] towards their full-resolution sources; ``sources(rows)``
    gives uint8 [n, factor*factor, C, R, R] for a slice of images (recomputed per batch, so memory is
    bounded by the batch); ``encoder`` maps float [0,1] images of any size to features.

    Returns the updated uint8 images and the mean feature error before and after.
    """
    updated = images.clone()
    before = after = 0.0
    for start in tqdm(range(0, len(images), options.batch_size), desc="image update", disable=not progress, leave=False):
        batch = slice(start, start + options.batch_size)
        x = images[batch].to(device).float().div(255).requires_grad_(True)
        with torch.no_grad():
            target = encoder(sources(batch).to(device).flatten(0, 1).float().div(255)).float()
            target = target.view(x.shape[0], factor * factor, -1)
        optimizer = torch.optim.Adam([x], lr=options.lr)
        for step in range(options.steps + 1):
            features = torch.stack([encoder(patch).float() for patch in split_patches(x, factor)], dim=1)
            loss = F.mse_loss(features, target)
            if step == 0:
                before += loss.item() * x.shape[0]
            if step == options.steps:
                after += loss.item() * x.shape[0]
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                x.clamp_(0, 1)
        updated[batch] = x.detach().mul(255).round().clamp(0, 255).to(torch.uint8).cpu()
    n = max(1, len(images))
    return updated, {"feature_mse_before": before / n, "feature_mse_after": after / n, "steps": options.steps}

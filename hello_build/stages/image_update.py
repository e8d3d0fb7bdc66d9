"""Stage "image_update" (optional): make the down-sampled patches look like their sources.

Each synthetic image stitches factor x factor patches that were down-sampled from real crops, so the
projector sees less than the teacher saw when the crop was chosen. Following the method, the stored
pixels are optimised so that the encoder's features of every up-sampled patch match those of its
full-resolution source: MSE(E(up(p_small)), E(p_full)), with E the transferred image encoder.

Images are optimised in fixed batches of ``BATCH_SIZE``, each on its own; under torchrun each rank
takes every world_size-th batch (the same batches as alone, so the same pixels) and the ranks' images
are gathered through the work directory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from hello_build.distributed import Group, summed
from hello_build.options import BuildOptions
from hello_build.stages.context import BuildContext
from hello_build.stages.init import patch_layout, source_crops
from hello_build.stages.view_transfer import synthetic_agreement


BATCH_SIZE = 64  # images optimised together (memory only: their patches' features; not the pixels)


def split_patches(images: torch.Tensor, factor: int) -> list[torch.Tensor]:
    """The factor x factor patches of stitched images [N, C, S, S], row-major, as laid out by the init
    stage (when S is not a multiple of factor, the first rows and columns are a pixel larger)."""
    return [images[:, :, top : top + h, left : left + w] for top, left, h, w in patch_layout(images.shape[-1], factor)]


def run_image_update(
    images: torch.Tensor,
    sources: Callable[[slice], torch.Tensor],
    factor: int,
    encoder,
    options: BuildOptions,
    *,
    device: torch.device,
    progress: bool = True,
    group: Group | None = None,
) -> tuple[torch.Tensor, dict]:
    """Optimise uint8 ``images`` [N,C,S,S] towards their full-resolution sources; ``sources(rows)``
    gives uint8 [n, factor*factor, C, R, R] for a slice of images (recomputed per batch, so memory is
    bounded by the batch); ``encoder`` maps float [0,1] images of any size to features.

    Returns the updated uint8 images and the mean feature error before and after, both of stored
    (uint8) pixels. An image whose rounded update does not lower its own error keeps its pixels, so no
    image ends worse than it began (``images_updated`` counts the others). In a ``group``, only this
    rank's batches (every world_size-th) are updated; the errors and the count are over all of them.
    """
    updated = images.clone()
    before = after = 0.0
    changed = 0
    starts = range(0, len(images), BATCH_SIZE)
    mine = starts if group is None else starts[group.rank :: group.world_size]
    for start in tqdm(mine, desc="image update", disable=not progress, leave=False):
        batch = slice(start, start + BATCH_SIZE)
        x = images[batch].to(device).float().div(255).requires_grad_(True)
        with torch.no_grad():
            target = encoder(sources(batch).to(device).flatten(0, 1).float().div(255)).float()
            target = target.view(x.shape[0], factor * factor, -1)
        optimizer = torch.optim.Adam([x], lr=options.image_update_lr)
        for _ in range(options.image_update_steps):
            # each image's own MSE, summed: its gradient does not depend on the images beside it (a batch
            # mean divided it by the batch's size, and Adam's eps made the step size depend on that)
            loss = feature_errors(encoder, x, target, factor).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                x.clamp_(0, 1)
        candidate = x.detach().mul(255).round().clamp(0, 255).to(torch.uint8)
        with torch.no_grad():
            error_before = feature_errors(encoder, images[batch].to(device).float().div(255), target, factor)
            error_after = feature_errors(encoder, candidate.float().div(255), target, factor)
        better = error_after < error_before
        updated[batch][better.cpu()] = candidate[better].cpu()
        before += error_before.sum().item()
        after += torch.where(better, error_after, error_before).sum().item()
        changed += int(better.sum())
    before, after, changed = summed(group, [before, after, changed])
    n = max(1, len(images))
    return updated, {"feature_mse_before": before / n, "feature_mse_after": after / n, "images_updated": int(changed),
                     "steps": options.image_update_steps}


def feature_errors(encoder, images: torch.Tensor, target: torch.Tensor, factor: int) -> torch.Tensor:
    """Each image's MSE [N] between the features of its up-sampled patches and ``target`` [N, factor**2, D]."""
    features = torch.stack([encoder(patch).float() for patch in split_patches(images, factor)], dim=1)
    return (features - target).pow(2).mean(dim=(1, 2))


def enabled(options: BuildOptions) -> bool:
    """Whether the stage runs (off by default: the paper reports a small gain)."""
    return options.image_update_steps > 0


def run(ctx: BuildContext) -> tuple[dict, dict]:
    """The update of the init stage's images towards their patches' sources, with the synthetic-view
    agreement before and after."""
    source_size = ctx.results["init"]["source_size"]
    crops = lambda rows: source_crops(ctx.index, ctx.sources[rows], ctx.image_size, source_size)  # noqa: E731
    updated, result = run_image_update(ctx.images, crops, ctx.options.factor, ctx.projector.encode, ctx.options,
                                       device=ctx.device, progress=ctx.progress, group=ctx.group)
    if ctx.group is not None:  # each rank updated its own batches: put them together
        batch_of = torch.arange(len(updated)) // BATCH_SIZE
        owned = [batch_of % ctx.group.world_size == rank for rank in range(ctx.group.world_size)]
        for rank, part in enumerate(ctx.work.gather("image_update", {"images": updated[owned[ctx.group.rank]]})):
            updated[owned[rank]] = part["images"]
    result["agreement_before"] = synthetic_agreement(ctx, ctx.images)["agreement"]
    result["agreement_after"] = synthetic_agreement(ctx, updated)["agreement"]
    return result, {"images": updated}


def load(ctx: BuildContext, record: dict | None) -> None:
    if record is None:
        return
    result = record["result"]
    ctx.log(f"image update: feature error {result['feature_mse_before']:.4g} -> {result['feature_mse_after']:.4g}, "
            f"{result['images_updated']} of {len(ctx.images)} images updated (the others kept: no lower error)")
    ctx.images = ctx.work.load_tensors("image_update", shapes={"images": tuple(ctx.images.shape)},
                                       dtypes={"images": torch.uint8})["images"]   # the init stage's geometry


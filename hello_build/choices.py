"""The build's named choices that the stages and the pipeline tell apart, each beside the code that does:
the transfers' loss, the teacher the synthetic views imitate, the state the view transfer keeps and the
text head's prompts. Here, below ``hello_build.options`` (which the stages import), so that an option's
choices (``hello_build.options``) and the code that acts on them share one home."""

from __future__ import annotations

import torch

from hello_format.losses import cross_entropy, kl_loss, mse_ce_loss

TRANSFER_LOSSES = ("mse", "kl")         # --transfer-loss: see transfer_loss
VIEW_TARGETS = ("last", "set")          # --view-transfer-target: the final teacher, or the set as the real transfer combines it
KEEPS = ("last", "best")                # --view-transfer-keep: see kept_check
TEMPLATE_SETS = ("ensemble", "single")  # --templates: see prompt_templates


def transfer_loss(logits, target, labels_a, labels_b, lam: float, *, lambda_ce: float, kind: str,
                  temperature: float | None) -> torch.Tensor:
    """The student's loss with lambda as its beta (``mse_ce_loss``), or ``kl_loss`` at ``temperature`` (used
    by kl only) + lambda * CE on the (mixed) hard labels."""
    if kind == "kl":
        ce = cross_entropy(logits, (labels_a, labels_b, lam))   # first, as in mse_ce_loss
        return kl_loss(logits, target, temperature) + lambda_ce * ce
    return mse_ce_loss(logits, target, (labels_a, labels_b, lam), lambda_ce)


def kept_check(curve: list[tuple[int, float]], views: int, keep: str) -> int:
    """Index into ``curve`` ((step, selection agreement) per check, the last at the final step) of the state
    to keep. ``best``: the highest agreement, the earliest on ties. ``last``: the final state, unless the best
    beats it by more than two standard errors of the difference of two agreements measured on ``views``
    views: the maximum of many noisy checks is biased upwards (at IPC 10, 500 views: one standard error
    is about 0.02, the size of the differences between late checks), so only a fit that really got worse
    (diverged) gives up its annealed final state."""
    best = max(range(len(curve)), key=lambda i: (curve[i][1], -i))
    if keep == "best":
        return best
    last = len(curve) - 1
    mean = (curve[best][1] + curve[last][1]) / 2
    margin = 2 * (2 * mean * (1 - mean) / max(1, views)) ** 0.5
    return best if curve[best][1] - curve[last][1] > margin else last


def prompt_templates(name: str) -> tuple[str, ...]:
    """The text head's prompts of ``name``: CLIP's ImageNet template ensemble, or the single 'a photo of a {}.'."""
    from hello_format.head import DEFAULT_TEMPLATES, SINGLE_TEMPLATE   # open_clip's: loaded by a build, not by --help

    return DEFAULT_TEMPLATES if name == "ensemble" else SINGLE_TEMPLATE

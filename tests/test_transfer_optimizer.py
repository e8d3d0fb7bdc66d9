"""The transfers' optimizer: LoRA+ (``lora_b_lr_ratio``) gives every B factor, the encoder's and the
head's, its own learning rate, and the schedule keeps that ratio."""

from __future__ import annotations

import pytest
import torch

from hello_build.stages.transfer import adamw, cosine
from hello_format.testing import tiny_projector


def _step(projector, ratio: float) -> dict[str, torch.Tensor]:
    """One AdamW step of the transfer's optimizer at ``ratio``; how far each trainable tensor moved."""
    optimizer = adamw(projector, 1e-3, ratio, weight_decay=0.0)
    cosine(optimizer, 1e-3, 0, 100)
    before = {n: p.detach().clone() for n, p in projector.named_parameters() if p.requires_grad}
    torch.manual_seed(0)
    projector(torch.rand(4, 3, 32, 32)).pow(2).mean().backward()
    optimizer.step()
    return {n: (p.detach() - before[n]).abs().mean() for n, p in projector.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("family", ["rn", "vit"])
def test_b_factors_move_ratio_times_as_far_as_with_one_rate(family):
    plain, plus = _step(tiny_projector(family), 1.0), _step(tiny_projector(family), 4.0)
    b_names = [n for n in plain if "lora_B" in n]
    assert "head.lora_B" in b_names and len(b_names) > 1, b_names   # the head's and the encoder's
    for name, moved in plain.items():
        if moved == 0:   # a tensor without gradient (none expected, but a ratio of 0/0 proves nothing)
            continue
        expected = 4.0 if name in b_names else 1.0
        assert plus[name] / moved == pytest.approx(expected, rel=1e-3), name


def test_the_schedule_scales_each_group_by_its_ratio():
    optimizer = adamw(tiny_projector("rn"), 0.01, 16.0, weight_decay=0.0)
    cosine(optimizer, 0.01, 50, 100, warmup=10)   # half-way through the cosine: 0.005
    assert sorted(group["lr"] for group in optimizer.param_groups) == pytest.approx([0.005, 0.08])

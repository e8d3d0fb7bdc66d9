"""Where work runs and how it is reseeded: the default device and the per-epoch seed."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of ``epoch`` of a run seeded with ``seed`` (distinct per epoch, stable across runs)."""
    return (seed * 1_000_003 + epoch) % (2**63)

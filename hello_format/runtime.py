"""Where work runs and how it is reseeded and shared: the default device, the per-epoch seed, a rank's rows."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of ``epoch`` of a run seeded with ``seed`` (distinct per epoch, stable across runs)."""
    return (seed * 1_000_003 + epoch) % (2**63)


def batch_share(size: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous rows of a batch of ``size`` split over ``world_size`` ranks (shares
    differ by at most one, the first ones larger; a share may be empty)."""
    share, extra = divmod(size, world_size)
    start = rank * share + min(rank, extra)
    return slice(start, start + share + (rank < extra))

"""Where work runs and how it is reseeded and shared: the device, the per-epoch seed, a rank's rows."""

from __future__ import annotations

import torch

from hello_format.errors import DeviceError


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch device (None: ``default_device()``); DeviceError for a string that names
    none, or a CUDA device this torch cannot use, before any work is placed on it."""
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"device {str(device)[:40]!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(resolved)!r}: this torch has no usable CUDA "
                              "(torch.cuda.is_available() is False); use cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(f"device {str(resolved)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return resolved


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of ``epoch`` of a run seeded with ``seed`` (distinct per epoch, stable across runs)."""
    return (seed * 1_000_003 + epoch) % (2**63)


def batch_share(size: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous rows of a batch of ``size`` split over ``world_size`` ranks (shares
    differ by at most one, the first ones larger; a share may be empty)."""
    share, extra = divmod(size, world_size)
    start = rank * share + min(rank, extra)
    return slice(start, start + share + (rank < extra))

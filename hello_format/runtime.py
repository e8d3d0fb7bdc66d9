"""Where work runs and how it is scheduled and shared: the device, the per-epoch seed, the learning rate,
a rank's rows."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import operator

import torch

from hello_format.errors import DeviceError


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | int | torch.device | None) -> torch.device:
    """``device`` as a torch device (None: ``default_device()``; an integer: that index of this machine's
    accelerator, as torch reads it); DeviceError, before any work is placed on it, for a value that names
    none, the CPU by index, or a device this torch cannot use here: its backend (``torch.cuda``,
    ``torch.mps``, ``torch.xpu``, ...) is missing or not available, or has no device of that index
    (``meta`` holds no data, so it is none). An accelerator named without an index is the one current
    in this thread (``torch.cuda.set_device``'s, as torchrun scripts set it), so work placed later from
    another thread (the label prefetch's) lands on the same device."""
    if device is None:
        device = default_device()
    if isinstance(device, bool):
        raise DeviceError(f"device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1, 0)")
    if not isinstance(device, (str, torch.device)) and hasattr(device, "__index__"):   # numpy's integers too
        index = operator.index(device)
        if index < 0:
            raise DeviceError(f"device {index} is not a torch device (e.g. cpu, cuda, cuda:1, 0)")
        try:
            resolved = torch.device(index)   # this machine's accelerator (CUDA before torch 2.6)
        except RuntimeError:
            raise DeviceError(f"device {index}: an accelerator's index, and this torch has no usable accelerator "
                              "here; use cpu") from None
    else:
        try:
            resolved = torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise DeviceError(f"device {str(device)[:40]!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if resolved.type == "cpu":
        if resolved.index not in (None, 0):
            raise DeviceError(f"device {str(resolved)!r}: the CPU has no index but 0; use cpu")
        return resolved
    backend = getattr(torch, resolved.type, None)
    # torch.mps.is_available came in torch 2.5; torch.backends.mps's has always told
    available = torch.backends.mps.is_available if resolved.type == "mps" else getattr(backend, "is_available", None)
    if not callable(available) or not available():
        name = "CUDA" if resolved.type == "cuda" else resolved.type
        raise DeviceError(f"device {str(resolved)!r}: this torch has no usable {name} here; use cpu")
    count = getattr(backend, "device_count", None)
    if resolved.index is not None and callable(count) and resolved.index >= count():
        raise DeviceError(f"device {str(resolved)!r}: this machine has {count()} {resolved.type.upper()} device(s)")
    if resolved.type == "cuda" and resolved.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return resolved


def host_default(function):
    """``function`` run with tensors made without a device made on the CPU, as hello's code assumes: a
    caller's ``torch.set_default_device("cuda")`` (or ``with torch.device(...)``) is for its own model, and
    would put the CPU draws (from CPU generators) and index arithmetic elsewhere. Free when none is set."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with _on_host():
            return function(*args, **kwargs)
    return wrapper


def _on_host():
    """A context in which tensors made without a device are made on the CPU: none where they already are
    (a device mode costs every torch call a Python one)."""
    return contextlib.nullcontext() if torch.get_default_device().type == "cpu" else torch.device("cpu")


@contextlib.contextmanager
def apart_from_caller(device: torch.device):
    """For building a model from a file inside a caller's run: torch's global random streams (the CPU's,
    and an accelerator ``device``'s) are left as they were, whatever the build drew (random
    initialisation before the weights load, more when the text tower must be built), and tensors made
    without a dtype are float32, whatever ``torch.set_default_dtype`` says (bf16 would round the weights),
    and on the CPU, whatever ``torch.set_default_device`` says (as ``host_default``)."""
    previous = torch.get_default_dtype()
    with _on_host(), torch.random.fork_rng(devices=[] if device.type == "cpu" else [device], device_type=device.type):
        torch.set_default_dtype(torch.float32)
        try:
            yield
        finally:
            torch.set_default_dtype(previous)


# xor-ed into a seed whose augmentation stream is the seed itself: the order of an epoch's images and a
# transfer's choice of weak teacher are then streams of their own
ORDER_SALT, TEACHER_SALT = 0x5EED, 0x7EAC
# the view transfer's own streams: its fitted views are those of "epoch" VIEW_FIT_EPOCH of the build's seed
# (epoch_seed), the order of its real views the seed xor REAL_ORDER_SALT
VIEW_FIT_EPOCH, REAL_ORDER_SALT = 0x51E, 0x4EA1
# the seed of the selection views that choose a fit's kept state: the view transfer's checks and the
# delta calibration's (never a fitted view's seed)
SELECTION_SEED = 0x5E1EC7


# the largest seed a run takes. Its streams' seeds below are taken modulo 2**63, but torch's CPU generator
# keeps only the low 32 bits of a seed: seeds that differ by a multiple of 2**32 draw the same streams
# (nearby seeds do not: seed s + 1's epoch e is seed s's epoch e + 1,000,003)
MAX_SEED = 2**63 - 1


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of ``epoch`` of a run seeded with ``seed`` (distinct per epoch, stable across runs)."""
    return (seed * 1_000_003 + epoch) % (2**63)


def view_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of a rank's augmentation draws in ``epoch`` (HelloDataset): rank 0's, and one process's,
    is the epoch's own."""
    return (epoch_seed(seed, epoch) + rank * 0x9E3779B97F4A7C15) % (2**63)


def batch_seed(seed: int, epoch: int, rank: int, indices: torch.Tensor) -> int:
    """The seed of one DataLoader batch's augmentation draws (HelloDataset): the rank's ``view_seed`` and
    the batch's indices in order, so the same wherever the batch is made (any worker, any number of them)."""
    digest = hashlib.blake2b(indices.cpu().numpy().astype("<i8").tobytes(), digest_size=8).digest()
    return (view_seed(seed, epoch, rank) ^ int.from_bytes(digest, "little")) % (2**63)


def cosine_lr(lr: float, step: int, total: int, warmup: int = 0) -> float:
    """The learning rate at ``step`` of ``total``: a linear ``warmup`` over its first steps, then cosine
    decay to 0; a function of the step alone, so a resumed run is exact. Every schedule in hello is this."""
    ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
    return lr * ramp * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(1, total)))


def batch_share(size: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous rows of a batch of ``size`` split over ``world_size`` ranks (shares
    differ by at most one, the first ones larger; a share may be empty)."""
    share, extra = divmod(size, world_size)
    start = rank * share + min(rank, extra)
    return slice(start, start + share + (rank < extra))

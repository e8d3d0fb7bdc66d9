"""torch.distributed as torchrun launches it: the process group read from the environment torchrun
sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), this rank's device, and the collectives the
builder and `hello eval` use. A run without that environment is one process and needs none of this.

The builder's one pattern: every rank walks the same global batches (same order, same augmented
views, drawn from generators seeded independently of the world size), computes on its contiguous
``rows`` of each, and sums what it found (``sum``, ``sum_gradients``); a loss is weighted by the rank's
share of the batch so the summed gradient is the single-process gradient of the whole batch."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from hello_build.errors import BuildError
from hello_format.runtime import batch_share, resolve_device
from hello_format.text import cut, first_line, shortened, warn

BACKENDS = ("nccl", "gloo")
TIMEOUT_S = 600  # a collective that waits longer (a rank died or hangs) ends the job with an error


class JobError(BuildError):
    """A collective failed: another rank died, or a wait ran past the group's ``timeout_s``."""


def _collective(timeout_s: float, call, *args, **kwargs):
    """``call(*args, **kwargs)``, a collective whose failure (gloo raises a RuntimeError) is one JobError line.
    (Under NCCL a collective returns before it completes, and torch's watchdog ends a process whose
    collective runs past ``timeout_s`` with its own report.)"""
    try:
        return call(*args, **kwargs)
    except RuntimeError as error:
        raise JobError(f"the job stopped: another rank died or a collective waited over {timeout_s:g} s "
                       f"({first_line(error)})") from None


@dataclass(frozen=True)
class Group:
    """This process's place in the job."""

    rank: int
    world_size: int
    device: torch.device
    timeout_s: float = TIMEOUT_S   # the process group's: how long a collective waits for the other ranks

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums of ``values`` over all ranks (float64)."""
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        _collective(self.timeout_s, dist.all_reduce, tensor)
        return tensor.tolist()

    def rows(self, size: int) -> slice:
        """This rank's contiguous rows of a global batch of ``size`` (shares differ by at most one; a
        share may be empty), as ``LabelledImages.loader(split_batches=True)`` cuts them."""
        return batch_share(size, self.rank, self.world_size)

    def sum_gradients(self, params: list[torch.Tensor]) -> None:
        """Replace each parameter's gradient by its sum over all ranks (one all-reduce of them all,
        flattened; a missing gradient counts as zeros): data parallelism over the trainable
        parameters only, as DDP does, for losses already weighted by each rank's share."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        _collective(self.timeout_s, dist.all_reduce, flat)
        for p, piece in zip(params, flat.split([g.numel() for g in grads])):
            p.grad = piece.view_as(p).clone()

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's ``tensor`` on every rank (same shape and dtype on all; the others' values are ignored)."""
        moved = tensor.detach().to(self.device if self.device.type == "cuda" else "cpu", copy=True).contiguous()
        _collective(self.timeout_s, dist.broadcast, moved, src=0)
        return moved.to(tensor.device)

    def gather_rows(self, rows: torch.Tensor, size: int) -> torch.Tensor:
        """The whole batch of ``size`` rows on every rank, from each rank's ``rows`` (its ``self.rows(size)``)."""
        width = -(-size // self.world_size)   # shares differ by at most one row: pad each to the largest
        padded = torch.zeros((width, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
        padded[: len(rows)] = rows
        pieces = [torch.empty_like(padded) for _ in range(self.world_size)]
        _collective(self.timeout_s, dist.all_gather, pieces, padded)
        shares = [batch_share(size, rank, self.world_size) for rank in range(self.world_size)]
        return torch.cat([piece[: share.stop - share.start] for piece, share in zip(pieces, shares)])

    def broadcast_text(self, text: str | None) -> str:
        """Rank 0's ``text`` on every rank (the others pass anything, e.g. None)."""
        data = (text or "").encode() if self.is_main else b""
        length = int(self.broadcast(torch.tensor([len(data)], dtype=torch.int64)).item())
        buffer = torch.zeros(length, dtype=torch.uint8)
        if self.is_main:
            buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return bytes(self.broadcast(buffer).tolist()).decode()

    def decide(self, value: bool) -> bool:
        """Rank 0's ``value`` on every rank: one decision the job takes together."""
        return bool(self.broadcast(torch.tensor([int(value)], dtype=torch.int64)).item())

    def check_same(self, text: str, what: str) -> None:
        """A BuildError on every rank unless every rank's ``text`` is rank 0's (``what`` names it): ranks that
        see other data or files would run collectives of other sizes (a hang or a crash) or mix unlike results."""
        differs = self.broadcast_text(text) != text
        ranks = [rank for rank, count in enumerate(self.sum([float(differs and rank == self.rank)
                                                               for rank in range(self.world_size)])) if count]
        if ranks:
            raise BuildError(f"{what} on rank{'s' * (len(ranks) > 1)} {', '.join(map(str, ranks[:10]))}"
                             f"{' and more' * (len(ranks) > 10)} differ from rank 0's: every process of the job "
                             "must see the same data and files")

    def barrier(self) -> None:
        """Wait until every rank gets here (at most ``timeout_s``)."""
        _collective(self.timeout_s, dist.barrier)


def rows(group: Group | None, size: int) -> slice:
    """This process's rows of a global batch of ``size``: all of them alone, else ``group.rows``."""
    return slice(None) if group is None else group.rows(size)


def summed(group: Group | None, values: list[float]) -> list[float]:
    """``values`` summed over the job's ranks (alone: ``values`` unchanged)."""
    return list(values) if group is None else group.sum(values)


def launched() -> bool:
    """Whether torchrun (or a launcher setting the same environment) started this process in a job of several."""
    return (_whole_number("WORLD_SIZE") or 1) > 1


def _whole_number(name: str) -> int | None:
    """The environment variable ``name`` as a launcher sets it, a whole number (None when unset)."""
    text = os.environ.get(name)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()):
        raise BuildError(f"{name}={shortened(text, 40)} is not a whole number (torchrun sets it)")
    return int(text)


def join(backend: str | None = None, device: str | None = None, timeout_s: float = TIMEOUT_S,
         log: Callable[[str], None] | None = None) -> Group | None:
    """Join the job torchrun started (None when this process runs alone). ``backend``: nccl on GPUs,
    gloo on CPUs by default; ``device``: cuda:LOCAL_RANK when CUDA is available (``cuda`` or
    ``cuda:LOCAL_RANK`` given; another index is refused), else the CPU. The launch environment is
    checked first (RANK below WORLD_SIZE, MASTER_ADDR and MASTER_PORT set, LOCAL_RANK where it picks a
    GPU): a variable a launcher left out is one BuildError, not a traceback or a wait. ``log``: told, on
    rank 0, where the job is joined before this process waits for the others there."""
    if not launched():
        if backend is not None:   # hello-build and hello eval warn of every input they do not use
            warn(f"hello: the distributed backend {backend} is not used: this process runs alone "
                 "(WORLD_SIZE unset or 1)")
        return None
    if backend is not None and backend not in BACKENDS:
        raise BuildError(f"unknown distributed backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    local_rank = _whole_number("LOCAL_RANK")
    if cuda:
        if local_rank is None:   # every rank of a node would take cuda:0
            raise BuildError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but LOCAL_RANK is not set: it picks this "
                             "process's GPU; launch with torchrun, or set it to the process's index on its node")
        if device is not None:
            resolve_device(device)   # a name that is no device, or an index this machine lacks: its one error
            if torch.device(device).index not in (None, local_rank):   # every rank on that GPU: NCCL refuses
                raise BuildError(f"device {str(device)!r}: under torchrun each process takes the GPU of its "
                                 f"LOCAL_RANK ({local_rank}); use cuda")
        where = torch.device("cuda", local_rank)
    else:
        where = resolve_device(device or "cpu")
    backend = backend or ("nccl" if where.type == "cuda" else "gloo")
    if backend == "nccl" and where.type != "cuda":
        raise BuildError(f"--dist-backend nccl needs a CUDA device, and this process runs on {where}: use gloo")
    if where.type == "cuda":
        torch.cuda.set_device(where)
    if not dist.is_initialized():
        _init_process_group(backend, where, timeout_s, log)
    return Group(rank=dist.get_rank(), world_size=dist.get_world_size(), device=where, timeout_s=timeout_s)


def _init_process_group(backend: str, where: torch.device, timeout_s: float, log) -> None:
    """``dist.init_process_group`` from the launch environment, checked first; a failure is one BuildError."""
    world_size = _whole_number("WORLD_SIZE")
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        named = missing[0] if len(missing) == 1 else f"{', '.join(missing[:-1])} and {missing[-1]}"
        raise BuildError(f"WORLD_SIZE={world_size} but {named} {'is' if len(missing) == 1 else 'are'} "
                         "not set: launch with torchrun, which sets them all")
    rank, port = _whole_number("RANK"), _whole_number("MASTER_PORT")
    if rank >= world_size:
        raise BuildError(f"RANK={rank} is not below WORLD_SIZE={world_size}")
    if not 0 < port < 65536:
        raise BuildError(f"MASTER_PORT={port} is not a port (1 to 65535)")
    address = f"{cut(os.environ['MASTER_ADDR'], 80)}:{port}"
    if log is not None and rank == 0:
        log(f"joining a job of {world_size} processes at {address} (waiting up to {timeout_s:g} s for the others)")
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s),
                                device_id=where if backend == "nccl" else None)
    except (RuntimeError, ValueError) as error:   # the store's timeout, an address that does not resolve
        raise BuildError(f"rank {rank} could not join the job at {address}: {first_line(error)[:300]}") from None


def leave() -> None:
    """Leave the job's process group (after the last collective)."""
    if dist.is_initialized():
        dist.destroy_process_group()

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

import torch
import torch.distributed as dist

from hello_build.errors import BuildError
from hello_format.runtime import batch_share, resolve_device
from hello_format.text import first_line

BACKENDS = ("nccl", "gloo")
TIMEOUT_S = 600  # a collective that waits longer (a rank died or hangs) ends the job with an error


class JobError(BuildError):
    """A collective failed: another rank died, or a wait ran past TIMEOUT_S."""


def _collective(call, *args, **kwargs):
    """``call(*args, **kwargs)``, a collective whose failure (gloo and NCCL raise RuntimeErrors) is one JobError line."""
    try:
        return call(*args, **kwargs)
    except RuntimeError as error:
        raise JobError(f"the job stopped: another rank died or a collective waited over {TIMEOUT_S} s "
                       f"({first_line(error)})") from None


@dataclass(frozen=True)
class Group:
    """This process's place in the job."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums of ``values`` over all ranks (float64)."""
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        _collective(dist.all_reduce, tensor)
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
        _collective(dist.all_reduce, flat)
        for p, piece in zip(params, flat.split([g.numel() for g in grads])):
            p.grad = piece.view_as(p).clone()

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's ``tensor`` on every rank (same shape and dtype on all; the others' values are ignored)."""
        moved = tensor.detach().to(self.device if self.device.type == "cuda" else "cpu", copy=True).contiguous()
        _collective(dist.broadcast, moved, src=0)
        return moved.to(tensor.device)

    def gather_rows(self, rows: torch.Tensor, size: int) -> torch.Tensor:
        """The whole batch of ``size`` rows on every rank, from each rank's ``rows`` (its ``self.rows(size)``)."""
        width = -(-size // self.world_size)   # shares differ by at most one row: pad each to the largest
        padded = torch.zeros((width, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
        padded[: len(rows)] = rows
        pieces = [torch.empty_like(padded) for _ in range(self.world_size)]
        _collective(dist.all_gather, pieces, padded)
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

    def barrier(self) -> None:
        """Wait until every rank gets here (at most TIMEOUT_S)."""
        _collective(dist.barrier)


def rows(group: Group | None, size: int) -> slice:
    """This process's rows of a global batch of ``size``: all of them alone, else ``group.rows``."""
    return slice(None) if group is None else group.rows(size)


def summed(group: Group | None, values: list[float]) -> list[float]:
    """``values`` summed over the job's ranks (alone: ``values`` unchanged)."""
    return list(values) if group is None else group.sum(values)


def launched() -> bool:
    """Whether torchrun (or a launcher setting the same environment) started this process in a job of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(backend: str | None = None, device: str | None = None, timeout_s: float = TIMEOUT_S) -> Group | None:
    """Join the job torchrun started (None when this process runs alone). ``backend``: nccl on GPUs,
    gloo on CPUs by default; ``device``: cuda:LOCAL_RANK when CUDA is available (``cuda`` or
    ``cuda:LOCAL_RANK`` given; another index is refused), else the CPU."""
    if not launched():
        return None
    if backend is not None and backend not in BACKENDS:
        raise BuildError(f"unknown distributed backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        if device is not None:
            resolve_device(device)   # a name that is no device, or an index this machine lacks: its one error
            if torch.device(device).index not in (None, local_rank):   # every rank on that GPU: NCCL refuses
                raise BuildError(f"device {str(device)!r}: under torchrun each process takes the GPU of its "
                                 f"LOCAL_RANK ({local_rank}); use cuda")
        where = torch.device("cuda", local_rank)
    else:
        where = resolve_device(device or "cpu")
    if where.type == "cuda":
        torch.cuda.set_device(where)
    backend = backend or ("nccl" if where.type == "cuda" else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s),
                                device_id=where if backend == "nccl" else None)
    return Group(rank=dist.get_rank(), world_size=dist.get_world_size(), device=where)


def leave() -> None:
    """Leave the job's process group (after the last collective)."""
    if dist.is_initialized():
        dist.destroy_process_group()

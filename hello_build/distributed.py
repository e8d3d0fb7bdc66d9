"""torch.distributed as torchrun launches it: the process group read from the environment torchrun
sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), this rank's device, and the collectives the
builder and `hello eval` use. A run without that environment is one process and needs none of this."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from hello_build.errors import BuildError

BACKENDS = ("nccl", "gloo")
TIMEOUT_S = 600  # a collective that waits longer (a rank died or hangs) ends the job with an error


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
        dist.all_reduce(tensor)
        return tensor.tolist()


def launched() -> bool:
    """Whether torchrun (or a launcher setting the same environment) started this process in a job of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(backend: str | None = None, device: str | None = None, timeout_s: float = TIMEOUT_S) -> Group | None:
    """Join the job torchrun started (None when this process runs alone). ``backend``: nccl on GPUs,
    gloo on CPUs by default; ``device``: cuda:LOCAL_RANK when CUDA is available, else the CPU."""
    if not launched():
        return None
    if backend is not None and backend not in BACKENDS:
        raise BuildError(f"unknown distributed backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    where = torch.device(f"cuda:{local_rank}") if cuda and device in (None, "cuda") else torch.device(device or "cpu")
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

"""The build's work directory: each finished stage leaves a result there, so a rerun resumes.

A stage is reused only when the options it depends on (its own and every earlier stage's) are the
ones it was made with; otherwise it and everything after it run again. Results are JSON plus
safetensors, written atomically: an interrupted stage leaves nothing that looks finished.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from hello_format.files import atomic_target


class WorkDir:
    def __init__(self, path: Path, *, fresh: bool = False):
        self.path = Path(path)
        if fresh and self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)

    def result(self, stage: str, key: dict) -> dict | None:
        """The recorded result of ``stage`` if it finished with these options, else None."""
        marker = self.path / f"{stage}.json"
        if not marker.exists():
            return None
        record = json.loads(marker.read_text())
        return record if record.get("key") == _jsonable(key) else None

    def finish(self, stage: str, key: dict, result: dict, seconds: float, tensors: dict[str, torch.Tensor] | None = None) -> dict:
        """Record ``stage`` as done: its tensors first, then the marker that makes them count."""
        if tensors is not None:
            self.save_tensors(stage, tensors)
        record = {"key": _jsonable(key), "seconds": seconds, "result": result}
        _atomic_write(self.path / f"{stage}.json", json.dumps(record, indent=1, sort_keys=True).encode())
        return record

    def save_tensors(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        with atomic_target(self.path / f"{name}.safetensors") as temp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(temp))

    def load_tensors(self, name: str) -> dict[str, torch.Tensor]:
        return load_file(str(self.path / f"{name}.safetensors"))

    def stage_dir(self, stage: str, key: dict) -> Path:
        """A folder for ``stage``'s partial state (e.g. epoch checkpoints), emptied when ``key`` changed."""
        path = self.path / stage
        marker = path / "key.json"
        if marker.exists() and json.loads(marker.read_text()) != _jsonable(key):
            self.discard(stage)
        path.mkdir(exist_ok=True)
        _atomic_write(marker, json.dumps(_jsonable(key), sort_keys=True).encode())
        return path

    def discard(self, stage: str) -> None:
        """Forget a stage's partial state (its options changed)."""
        for leftover in (self.path / stage, self.path / f"{stage}.json", self.path / f"{stage}.safetensors"):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            elif leftover.exists():
                leftover.unlink()


def _jsonable(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _atomic_write(path: Path, data: bytes) -> None:
    with atomic_target(path) as temp:
        temp.write_bytes(data)

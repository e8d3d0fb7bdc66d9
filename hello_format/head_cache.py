"""The local cache of text heads: a head computed by a base's text tower, kept on disk by what it
depends on, so that reopening a bundle skips the text tower (spec section 3.2, "Head cache").

One entry per key, a safetensors file ``<key>.safetensors`` holding ``head.weight`` (F32 [C, d]) and,
in its metadata, the key and the tensor's sha256. An entry is trusted only when its header parses
within bounds, its key, shape and digest match and its values are finite; anything else is
recomputed and rewritten, and a head that would be refused so is never written. The entries together
hold at most ``HEAD_CACHE_BYTES``: storing one evicts the least recently used (a hit refreshes its
entry's mtime). A directory that cannot be written costs a warning, never an error.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Sequence

import torch

from hello_format.container import read_header, tensor_bytes, write_container
from hello_format.digests import buffer_sha256
from hello_format.errors import HelloError
from hello_format.files import atomic_target
from hello_format.limits import HEAD_CACHE_BYTES, MAX_HEAD_CACHE_ENTRY_BYTES
from hello_format.manifest import canonical_json
from hello_format.text import warn

TENSOR = "head.weight"
KEY_VERSION = "hello-text-head-1"   # changes when the computation of a head changes
_ENTRY_NAME = re.compile(r"[0-9a-f]{64}\.safetensors")


def cache_dir() -> Path:
    """``$HELLO_CACHE``, else ``$XDG_CACHE_HOME/hello``, else ``~/.cache/hello``; heads live in ``heads/``."""
    root = os.environ.get("HELLO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "hello")
    return Path(root) / "heads"


def head_key(base: dict, class_names: Sequence[str], templates: Sequence[str], ensemble: str) -> str:
    """Hex sha256 over everything the head ``W0`` depends on: the base's fingerprint and what picks its
    tokenizer and activation (architecture, pretrained tag, config), the open_clip version, the class
    names and templates in order, the ensemble rule. Not ``head.normalize_features``, which acts on
    image features, nor the head LoRA, which is added to ``W0`` afterwards."""
    import open_clip

    fields = {"version": KEY_VERSION, "open_clip": open_clip.__version__,
              "fingerprint": base.get("fingerprint"), "architecture": base.get("architecture"),
              "pretrained": base.get("pretrained"), "config": base.get("config"),
              "class_names": list(class_names), "templates": list(templates), "ensemble": ensemble}
    return buffer_sha256(canonical_json(fields).encode("utf-8"))


def load(key: str, num_classes: int) -> torch.Tensor | None:
    """The cached head for ``key`` (F32 ``[num_classes, d]``), or None when missing or unsound; a hit
    marks its entry as recently used."""
    head = _read(_entry(key), key, num_classes)
    if head is not None:
        with contextlib.suppress(OSError):
            os.utime(_entry(key))
    return head


def store(key: str, head: torch.Tensor) -> None:
    """Write ``head`` as the entry for ``key`` (atomically; an unwritable cache costs one warning). A
    head ``load`` would not use, too large to read back or not finite in float32, is not written (nor
    evicts anything)."""
    if head.numel() * 4 > MAX_HEAD_CACHE_ENTRY_BYTES - 2**16:   # fp32 values and room for the header
        return
    head = head.detach().to("cpu", torch.float32).contiguous()
    if not bool(torch.isfinite(head).all()):   # a text tower that overflows: the projector refuses the bundle
        return
    if _write(_entry(key), key, head):
        _evict(keep=_entry(key))


def _entry(key: str) -> Path:
    return cache_dir() / f"{key}.safetensors"


def _read(path: Path, key: str, num_classes: int) -> torch.Tensor | None:
    """The entry's head, or None when it is missing or unsound in any way."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_HEAD_CACHE_ENTRY_BYTES:
            return None
        header = read_header(path)
        info = header.tensors.get(TENSOR)
        if (header.metadata.get("key") != key or set(header.tensors) != {TENSOR} or info.dtype != "F32"
                or len(info.shape) != 2 or info.shape[0] != num_classes or info.shape[1] < 1):
            return None
        with path.open("rb") as file:
            file.seek(header.data_start + info.begin)
            data = file.read(info.nbytes)
    except (HelloError, OSError):
        return None
    if len(data) != info.nbytes or buffer_sha256(data) != header.metadata.get("sha256"):
        return None
    head = torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(info.shape)
    return head if bool(torch.isfinite(head).all()) else None


def _write(path: Path, key: str, head: torch.Tensor) -> bool:
    """Store ``head`` atomically (True); a cache that cannot be written is skipped with one warning
    line (False)."""
    metadata = {"format": "hello-head-cache", "key": key, "sha256": buffer_sha256(tensor_bytes(head))}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_target(path) as temp, open(temp, "wb") as file:
            write_container(file, metadata, {TENSOR: head})
    except OSError as exc:
        warn(f"hello: head cache {path.parent} is not writable ({exc.strerror or exc}); "
             "the head is computed without caching")
        return False
    return True


def _evict(keep: Path) -> None:
    """Remove the least recently used entries (oldest mtime first, never ``keep``) until the entries
    hold at most ``HEAD_CACHE_BYTES``. Only files named as entries are counted or removed; one that
    vanishes meanwhile (another process evicting) is skipped."""
    entries = []
    with contextlib.suppress(OSError):
        for path in keep.parent.iterdir():
            if _ENTRY_NAME.fullmatch(path.name):
                with contextlib.suppress(OSError):
                    stat = path.stat()
                    entries.append((stat.st_mtime_ns, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= HEAD_CACHE_BYTES:
            break
        if path != keep:
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size

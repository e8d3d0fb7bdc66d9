"""sha256 (and the hub's git blob sha1) of a buffer or a file, read in chunks: no whole-file copy."""

from __future__ import annotations

import hashlib
import os

_CHUNK = 1 << 24


def buffer_sha256(buffer) -> str:
    """Hex sha256 of a bytes-like object (a memory map is hashed chunk by chunk)."""
    digest = hashlib.sha256()
    view = memoryview(buffer)
    for start in range(0, len(view), _CHUNK):
        digest.update(view[start:start + _CHUNK])
    return digest.hexdigest()


def file_digest(path: str | os.PathLike, digest=None) -> str:
    """Hex digest of a file's bytes fed to ``digest`` (default: a new sha256)."""
    digest = digest or hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    return file_digest(path)

"""A bundle's encoded images read from its file when they are needed, not held in memory.

``OpenFile`` keeps one file open for positional reads. It remembers the file as it was opened (device,
inode, size, modification time) and checks it after every read: a file truncated or rewritten in place
under a running reader gives one clear error, where a mapping of it dies of SIGBUS and an in-memory copy
holds every encoded byte for the whole run (4 GB for ImageNet-1K at IPC 50). A file renamed over the path
(hello's own atomic writes) leaves this one readable: the open descriptor keeps its inode. ``FileBlobs``
is the sequence of image byte ranges ``LazyImages`` decodes from; a forked worker shares the descriptor,
and a spawned one opens the path again and reads only when it finds the same unchanged file there.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence

import numpy as np

from hello_format.errors import BundleError

_POSITIONAL = hasattr(os, "pread")   # POSIX; elsewhere a seek and a read under a lock


class OpenFile:
    """A file kept open (its own descriptor, closed when the last user drops it) for reads at offsets."""

    def __init__(self, file, path: str | os.PathLike):
        # a spawned worker may start in another folder; not abspath: "link/.." is the link's target's
        # parent, which abspath would drop for the link's own folder
        path = os.fspath(path)
        self.path = path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
        self._fd = os.dup(file.fileno())
        weakref.finalize(self, os.close, self._fd)
        self._identity = _identity(os.fstat(self._fd))
        self._lock = threading.Lock()

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset``; BundleError (not naming the file) when it is no longer as it was opened."""
        end, opened_size = offset + size, self._identity[2]
        if offset < 0 or size < 0 or end > opened_size:   # checked before any byte is allocated: the ranges come
            self._check_unchanged()   # from offsets checked on open, read again later from a file changed since
            raise BundleError(f"bytes {offset:,} to {end:,} are outside the file ({opened_size:,} bytes)")
        parts, done = [], 0
        try:
            while done < size:   # one read returns at most about 2 GiB
                part = self._read_once(offset + done, size - done)
                if not part:
                    break
                parts.append(part)
                done += len(part)
        except OSError as exc:   # EIO: a failing disk, a network file system gone
            raise BundleError(f"cannot read the file: {exc.strerror or exc}") from None
        if done < size:
            raise _changed()
        self._check_unchanged()   # checked after: what was read predates any change
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _check_unchanged(self) -> None:
        try:
            now = _identity(os.fstat(self._fd))
        except OSError as exc:
            raise BundleError(f"cannot read the file: {exc.strerror or exc}") from None
        if now != self._identity:
            raise _changed()

    def _read_once(self, offset: int, size: int) -> bytes:
        if _POSITIONAL:
            return os.pread(self._fd, size, offset)
        with self._lock:
            os.lseek(self._fd, offset, os.SEEK_SET)
            return os.read(self._fd, size)

    def __reduce__(self):   # a descriptor means nothing in another process: it opens the path again
        return _reopen, (self.path, self._identity)

    def __copy__(self) -> "OpenFile":   # in this process the descriptor stays valid: a copy (copy.deepcopy of
        return self                     # a dataset) reads the same file, not whatever the path names now

    def __deepcopy__(self, memo) -> "OpenFile":
        return self


def _changed() -> BundleError:
    return BundleError("the file changed on disk after it was opened (truncated or rewritten in place): "
                       "open the bundle again")   # the reader (LazyImages) names the file


def _identity(status: os.stat_result) -> tuple[int, int, int, int]:
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def _reopen(path: str, identity: tuple[int, int, int, int]) -> OpenFile:
    """The file at ``path`` in another process (a spawned DataLoader worker), if it is still the one opened."""
    try:
        with open(path, "rb") as file:
            reopened = OpenFile(file, path)
    except OSError as exc:
        raise BundleError(f"{path}: a worker process cannot open the bundle again: {exc.strerror or exc}") from None
    if reopened._identity != tuple(identity):
        raise BundleError(f"{path}: the file was replaced or changed after the dataset opened it, so a spawned worker "
                          "cannot read its images: open the bundle again")
    return reopened


class FileBlobs(Sequence):
    """Byte ranges ``[starts[i], ends[i])`` of an ``OpenFile``: ``blobs[i]`` reads the i-th as bytes."""

    def __init__(self, file: OpenFile, starts: np.ndarray, ends: np.ndarray):
        self._file = file
        self._starts, self._ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, index: int) -> bytes:
        start = int(self._starts[index])
        return self._file.read(start, int(self._ends[index]) - start)

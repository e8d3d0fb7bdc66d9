"""Files hello writes appear whole or not at all, and leave nothing behind when interrupted.

``atomic_target(path)`` hands out a hidden temp file beside ``path`` and renames it over ``path``
once the block ends normally: a reader that has the old file mapped keeps its old inode (no SIGBUS),
and a new reader never sees a partial file. The temp file is removed on an exception, and also on
SIGINT or SIGTERM: while one is live, hello handles those signals (when their handlers are still
Python's defaults), removes every live temp file, then lets the signal do what it would have done.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from pathlib import Path

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_live: set[str] = set()
_previous: dict[int, object] = {}
_lock = threading.Lock()


def _remove_live() -> None:
    for temp in list(_live):
        with contextlib.suppress(OSError):
            os.unlink(temp)
    _live.clear()


def _on_signal(signum, frame) -> None:
    _remove_live()
    previous = _previous.pop(signum, signal.SIG_DFL)
    signal.signal(signum, previous)
    if callable(previous):
        previous(signum, frame)          # Python's SIGINT handler: KeyboardInterrupt
    else:
        os.kill(os.getpid(), signum)     # the default action (terminate), now that the handler is back


def _install() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; exceptions still clean up
    for signum in _SIGNALS:
        current = signal.getsignal(signum)
        if signum not in _previous and current in (signal.SIG_DFL, signal.default_int_handler):
            _previous[signum] = current
            signal.signal(signum, _on_signal)


def _uninstall() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, previous in list(_previous.items()):
        if signal.getsignal(signum) is _on_signal:
            signal.signal(signum, previous)
        del _previous[signum]


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike):
    """Yield the path of a new hidden temp file beside ``path``; fsync and rename it over ``path``
    when the block ends normally, remove it otherwise (exception, SIGINT, SIGTERM)."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o644)
    os.close(fd)
    with _lock:
        _live.add(temp)
        _install()
    try:
        yield Path(temp)
        with open(temp, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    finally:
        with _lock:
            _live.discard(temp)
            if not _live:
                _uninstall()
    with contextlib.suppress(OSError):   # make the rename durable where the platform allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

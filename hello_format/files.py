"""Files hello writes appear whole or not at all, and leave nothing behind when interrupted.

``atomic_target(path)`` hands out a hidden temp file beside ``path`` and renames it over ``path``
once the block ends normally: a reader that has the old file mapped keeps its old inode (no SIGBUS),
and a new reader never sees a partial file; ``atomic_targets(*paths)`` does it for files that go
together (all written and flushed before any is renamed); ``atomic_folder(path)`` does the same for a folder of
files, and ``temporary_folder()`` is scratch space removed when its block ends. The temp file (or
folder) is removed on an exception, and also on
SIGINT or SIGTERM: while one is live, hello handles those signals (when their handlers are still
Python's defaults), removes every live temp file, then lets the signal do what it would have done.

``read_bounded_text(path, limit)`` reads a small text file (a config, a class list, eval results) only
up to its bound, whatever size the file reports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_live: set[str] = set()
_previous: dict[int, object] = {}
_hold_depth = 0             # main-thread sections running under _signals_held (only the main thread changes it)
_waiting: list[int] = []    # the signals that arrived meanwhile
_lock = threading.Lock()
_umask_lock = threading.Lock()   # two threads reading the umask at once could leave it set to 0o077


def read_bounded_text(path: str | os.PathLike, limit: int) -> str:
    """The UTF-8 text of the regular file at ``path``, refused when it holds more than ``limit`` bytes: on
    its reported size before a byte is read, and on what it yields (a file under /proc reports 0 bytes).
    It is opened without blocking, so a named pipe (which a tar file can hold) is refused, not waited on.
    A ValueError says why it cannot be had (unreadable, not a regular file, too large, not UTF-8)."""
    too_large = f"holds more than {limit:,} bytes"
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:   # checked on the raw descriptor: open() of a folder's raises without closing it
            found = os.fstat(descriptor)
            if not stat.S_ISREG(found.st_mode):
                raise ValueError("is not a regular file (a named pipe, a device or a folder)")
            file = open(descriptor, "rb")
        except BaseException:
            os.close(descriptor)
            raise
        with file:
            if found.st_size > limit:
                raise ValueError(too_large)
            data = file.read(limit + 1)
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise ValueError(too_large)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def names_a_folder(path: str | os.PathLike) -> bool:
    """Whether ``path``, given as a file to write, names a folder: one that exists, or a trailing separator
    (pathlib drops it, and the file would take the folder's intended name)."""
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def _remove_live() -> None:
    for temp in list(_live):
        with contextlib.suppress(OSError):
            if os.path.isdir(temp) and not os.path.islink(temp):
                shutil.rmtree(temp)
            else:
                os.unlink(temp)
    _live.clear()


def _on_signal(signum, frame) -> None:
    if _hold_depth:
        _waiting.append(signum)   # a section that must not be cut is running: it ends, then this signal acts
        return
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
def _live_while(temp: str):
    """While the block runs, SIGINT and SIGTERM remove ``temp`` (a file or a folder) first."""
    with _lock:
        _live.add(temp)
        _install()
    try:
        yield
    finally:
        with _lock:
            _live.discard(temp)
            if not _live:
                _uninstall()


def nearest_existing(path: str | os.PathLike) -> Path:
    """``path`` if it exists, else the nearest folder above it that does (where files still to be made
    in folders still to be made will go)."""
    path = Path(path).absolute()
    return next(folder for folder in (path, *path.parents) if os.path.lexists(folder))


def unnamed_folder(path: str | os.PathLike) -> str | None:
    """Why a folder cannot be written at ``path``: it names the current folder, one above it or a root
    (``.``, ``..``, ``/``, an empty path), which a folder cannot be renamed onto. None: it has a name."""
    text = os.fspath(path)
    if Path(text).name not in ("", ".."):
        return None
    return (f"names the current folder, one above it or a root, which cannot be replaced: name a new or "
            f"empty folder (e.g. {os.path.join(text or '.', 'NAME')})")


def missing_folder(path: str | os.PathLike) -> str | None:
    """Why nothing can be made at ``path``: the folder it goes in does not exist, or a file stands where
    that folder or one above it should be. None: the folder is there."""
    folder = Path(os.fspath(path)).parent
    if folder.is_dir():
        return None
    blocker = nearest_existing(folder)
    if not blocker.exists():   # lexists but not exists: a link to nothing
        return f"{blocker} is a symbolic link to {os.readlink(blocker)}, which does not exist"
    if not blocker.is_dir():
        return f"{blocker} is a file, not a directory"
    return f"directory {folder} does not exist"


def same_file(path: str | os.PathLike, other: str | os.PathLike) -> bool:
    """Whether both paths exist and name one file (through a link too)."""
    return os.path.exists(path) and os.path.exists(other) and os.path.samefile(path, other)


def replace_refusal(path: str | os.PathLike, overwrite: bool, what: str = "") -> str | None:
    """Why a command does not write its output at ``path``: something is there and ``overwrite`` (the
    command's ``--overwrite``) was not given; ``what`` says what it is. None: it may write there."""
    if overwrite or not os.path.lexists(path):
        return None
    return f"{os.fspath(path)} exists{what}: pass --overwrite to replace it"


def cannot_write_in(folder: str | os.PathLike) -> str | None:
    """Why a new file cannot be made in ``folder`` (as an atomic write's temp file will be), or None:
    found by making one and removing it, before any work whose result would be written there."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".hello-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


@contextlib.contextmanager
def temporary_folder(prefix: str):
    """A new folder in the system's temp place (``tempfile``), removed with what it holds when the block
    ends, on an exception, SIGINT or SIGTERM."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder, _live_while(folder):
        yield folder


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike):
    """Yield the path of a new hidden temp file beside ``path``; fsync and rename it over ``path``
    when the block ends normally, remove it otherwise (exception, SIGINT, SIGTERM)."""
    with atomic_targets(path) as (temp,):
        yield temp


@contextlib.contextmanager
def folders_made(path: str | os.PathLike):
    """Make the folder ``path`` and the parents it lacks; when the block fails, remove again those it made
    that are still empty (a failed write leaves no folders behind)."""
    path = Path(path)
    made = [folder for folder in (path, *path.parents) if not folder.exists()]   # innermost first
    try:
        path.mkdir(parents=True, exist_ok=True)
        yield
    except BaseException:
        for folder in made:
            with contextlib.suppress(OSError):   # not empty: something else was put there meanwhile
                folder.rmdir()
        raise


@contextlib.contextmanager
def atomic_targets(*paths: str | os.PathLike):
    """``atomic_target`` for files that go together: yield a temp file for each path; when the block ends
    normally, fsync them all, then rename each over its path in the order given with SIGINT and SIGTERM
    held, so a signal leaves all the old files or all the new ones (only a failed rename parts them)."""
    paths = [Path(path) for path in paths]
    temps: list[Path] = []
    modes = [_mode_for(path, 0o666) for path in paths]
    with contextlib.ExitStack() as live:
        try:
            for path, mode in zip(paths, modes):
                fd, temp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
                temps.append(Path(temp))
                live.enter_context(_live_while(temp))
                try:
                    os.fchmod(fd, mode)
                finally:
                    os.close(fd)
            yield list(temps)
            for temp, mode in zip(temps, modes):
                with open(temp, "rb+") as file:
                    os.fchmod(file.fileno(), mode)   # again: a writer may have made the file anew (safetensors' private one)
                    os.fsync(file.fileno())
            with _signals_held():
                for temp, path in zip(temps, paths):
                    os.replace(temp, path)
        except BaseException:
            for temp in temps:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
            raise
    for folder in dict.fromkeys(path.parent for path in paths):
        with contextlib.suppress(OSError):   # make the renames durable where the platform allows it
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, *, replace: bool = False):
    """Yield a new hidden temp folder beside ``path``; when the block ends normally, fsync its files
    and rename it to ``path``; remove it otherwise (exception, SIGINT, SIGTERM).

    ``path`` must be new or an empty folder (checked before and after the block, FileExistsError
    otherwise); with ``replace``, an existing folder is renamed aside, replaced, then removed."""
    path = Path(path)
    check_folder_target(path, replace)
    temp = tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.chmod(temp, _mode_for(path, 0o777))
    old = None
    with _live_while(temp):
        try:
            yield Path(temp)
            for child in Path(temp).iterdir():
                with open(child, "rb+") as file:
                    os.fsync(file.fileno())
            check_folder_target(path, replace)
            # a signal between the two renames would leave neither folder at path; one before the old
            # folder is removed, the user's files hidden beside it
            with _signals_held():
                if path.is_dir() and any(path.iterdir()):
                    old = tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".old", dir=path.parent)
                    os.replace(path, old)   # onto an empty folder: a POSIX rename replaces it
                os.replace(temp, path)      # onto a missing or empty folder
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            if old is not None and os.path.isdir(old) and not path.exists():
                os.replace(old, path)   # the replaced folder back where it was
            elif old is not None:
                with contextlib.suppress(OSError):   # empty unless the folder was renamed onto it
                    os.rmdir(old)
            raise


def _temp_prefix(path: Path) -> str:
    """A hidden temp name's start, from at most 128 bytes of the target's name (a name near the
    filesystem's 255-byte limit leaves room for the random part and the suffix)."""
    return f".{os.fsdecode(os.fsencode(path.name)[:128])}."


def temp_target(name: str) -> str | None:
    """The (possibly cut) name of the file that ``atomic_target``'s temp file ``name`` was made for
    (``.NAME.XXXXXXXX.tmp``: mkstemp's 8 random characters), else None: what a killed run left."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    target, _, random = name[1:-4].rpartition(".")
    return target if target and len(random) == 8 else None


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM wait until the block ends. Blocking them in this thread is not enough: a
    process's signal can reach any thread (torch starts several), and Python then runs the handler in
    the main thread at once; so in the main thread, where the handler runs, it also defers them
    (``_waiting``) and the first acts at the end. In another thread only the block applies."""
    global _hold_depth
    masked = hasattr(signal, "pthread_sigmask")
    main = threading.current_thread() is threading.main_thread()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS) if masked else None
    _hold_depth += main
    try:
        yield
    finally:
        _hold_depth -= main
        if masked:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)   # a signal blocked here arrives now
        if main and not _hold_depth and _waiting:
            signum = _waiting[0]
            _waiting.clear()
            _on_signal(signum, None)


def _mode_for(path: Path, default: int) -> int:
    """The permission bits of the file or folder ``path`` replaces, else ``default`` less the umask:
    what the user would get from writing it in place (a temp file starts private)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        with _umask_lock:   # the umask has no getter: set (to the most private) and restore it
            umask = os.umask(0o077)
            os.umask(umask)
        return default & ~umask


def check_folder_target(path: Path, replace: bool) -> None:
    """FileExistsError unless ``atomic_folder`` may write at ``path``: new, an empty folder, or with
    ``replace`` any folder."""
    if path.is_symlink():   # never written through: the folder it names would be replaced
        raise FileExistsError(f"{path} is a symbolic link: name the folder itself")
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not replace:
        raise FileExistsError(f"{path} is a folder that is not empty")

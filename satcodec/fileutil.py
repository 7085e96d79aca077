"""Atomic file writing: a crash leaves either the old file or the new one, never a mix.

Destinations that are not regular files are never renamed over:

* a character device or a FIFO (``/dev/null``, ``/dev/stdout``, a named pipe) is written
  directly -- no atomicity is possible there, and replacing the node with a regular file
  would break the system (``satcodec encode x.tif -o /dev/null`` as root did exactly that);
* a directory, a block device, a socket or any other special file is refused with
  :class:`~satcodec.errors.ConfigError` naming the path and what it is.

Permissions: the result gets ``0o666 & ~umask`` like an ordinary ``open(path, "w")``, or the
mode of the regular file it replaces. The process umask is read without being changed
(changing it is a process-wide race with other threads creating files).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from satcodec.errors import ConfigError

__all__ = ["atomic_open", "atomic_path", "atomic_write_bytes", "current_umask"]

_UMASK_LOCK = threading.Lock()


def _proc_umask() -> int | None:
    """The umask as Linux reports it in /proc/self/status (kernel >= 4.7), or None."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8) & 0o777
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_at_import() -> int:
    mask = _proc_umask()
    if mask is not None:
        return mask
    # No /proc: read it the only portable way, once, while importing (before worker threads
    # of this module's users exist), under a lock.
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask & 0o777


_IMPORT_UMASK = _umask_at_import()


def current_umask() -> int:
    """The process umask, read without changing it (thread-safe).

    On Linux it is read from /proc/self/status at each call (so a later ``os.umask`` is
    honoured); elsewhere it is the value the process had when this module was imported.
    """
    mask = _proc_umask()
    return _IMPORT_UMASK if mask is None else mask


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "not a regular file"


def _destination(dest: Path) -> os.stat_result | None:
    """Stat ``dest`` (following symlinks) and refuse what cannot be written.

    Returns None when nothing is there, the stat result otherwise: a regular file (to be
    replaced atomically) or a character device / FIFO (to be written directly).
    """
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise ConfigError(f"{_first_non_folder(dest.parent)} is not a folder") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {dest}: {exc.strerror or exc}") from None
    if st is None or stat.S_ISREG(st.st_mode):
        return st
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        return st
    raise ConfigError(f"cannot write {dest}: it is {_kind(st.st_mode)}")


def _first_non_folder(folder: Path) -> Path:
    """The first ancestor of ``folder`` (or itself) that exists and is not a directory."""
    for p in reversed([folder, *folder.parents]):
        if p.exists() and not p.is_dir():
            return p
    return folder


def _make_folder(folder: Path) -> None:
    if folder.is_dir():
        return
    bad = _first_non_folder(folder)
    if bad.exists() and not bad.is_dir():
        raise ConfigError(f"{bad} is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{_first_non_folder(folder)} is not a folder") from None
    except OSError as exc:
        raise ConfigError(f"cannot create folder {folder}: {exc.strerror or exc}") from None


def _mkstemp(folder: Path | None, name: str, suffix: str) -> Path:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix or ".tmp", dir=folder)
    except OSError as exc:
        where = folder if folder is not None else tempfile.gettempdir()
        raise ConfigError(
            f"cannot write a temporary file in {where}: {exc.strerror or exc}"
        ) from None
    os.close(fd)
    return Path(tmp)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened)."""
    if sys.platform == "win32":  # pragma: no cover
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on a directory
            os.fsync(fd)
    finally:
        os.close(fd)


def _open_special(dest: Path, mode: str) -> IO:
    """Open a character device or FIFO for writing without blocking forever: a FIFO nobody
    reads would hang the writer (and a batch behind it), so it is refused by name."""
    flags = os.O_WRONLY | (os.O_APPEND if "a" in mode else 0)
    try:
        fd = os.open(dest, flags | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise ConfigError(f"cannot write {dest}: no process is reading this FIFO") from None
        raise ConfigError(f"cannot write {dest}: {exc.strerror or exc}") from None
    # blocking writes from here: a reader that is slower than us must not see EAGAIN
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return os.fdopen(fd, mode)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; move the result onto ``path`` on success.

    Use for writers that want a file name (rasterio, safetensors). For a regular (or absent)
    destination the temporary file is in the destination folder; it is fsynced, given the
    permissions an ordinary write would give (or those of the file it replaces), renamed with
    ``os.replace`` (atomic on POSIX) and the folder is fsynced. For a character device or a
    FIFO destination the temporary file is in the system temp folder and its bytes are
    copied into the destination (never renamed over it). On error the temporary file is
    removed and ``path`` is untouched. Raises ConfigError, before anything is written, when
    ``path`` is a directory or another special file, when a parent is not a folder, or when
    the folder cannot be written.
    """
    dest = Path(path)
    st = _destination(dest)
    special = st is not None and not stat.S_ISREG(st.st_mode)
    if not special:
        _make_folder(dest.parent)
    tmp_path = _mkstemp(None if special else dest.parent, dest.name, suffix)
    try:
        yield tmp_path
        if special:
            with open(tmp_path, "rb") as src, _open_special(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            return
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600: give the permissions an ordinary write would give, computed
        # without touching the process umask; keep those of a regular file being replaced.
        try:
            old = os.stat(dest)
        except OSError:
            old = None
        if old is not None and stat.S_ISREG(old.st_mode):
            mode = stat.S_IMODE(old.st_mode) & 0o777
        else:
            mode = 0o666 & ~current_umask()
        os.chmod(tmp_path, mode)
        if old is not None and not stat.S_ISREG(old.st_mode):
            # something special appeared meanwhile: do not rename over it
            raise ConfigError(f"cannot write {dest}: it is {_kind(old.st_mode)}")
        os.replace(tmp_path, dest)
        _fsync_dir(dest.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing and atomically move it onto ``path`` when closed.

    A character device or FIFO destination is opened and written directly (see
    :func:`atomic_path` for what is refused).
    """
    dest = Path(path)
    st = _destination(dest)
    if st is not None and not stat.S_ISREG(st.st_mode):
        with _open_special(dest, mode) as fh:
            yield fh
            fh.flush()
        return
    with atomic_path(path) as tmp, open(tmp, mode) as fh:
        yield fh
        fh.flush()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (directly into a character device or FIFO)."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)

"""Crash-safe file writes: a temporary file in the same folder, fsync, then ``os.replace``.

A reader therefore sees either the old file or the whole new one, never half of it (the model is
SQLite's atomic commit). Temporary names start with ``.tmp-`` so that a crash leaves only files
that no reader ever opens and that :func:`remove_stale_temps` can clear.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import WorkspaceWriteError

TEMP_PREFIX = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; a finished file gets the usual permissions.
_FILE_MODE = 0o666 & ~_umask()
# What a full or read-only disk looks like to a writer (as opposed to a bug)
_CANNOT_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


@contextlib.contextmanager
def disk_errors(path: Path | str) -> Iterator[None]:
    """Turn a full disk, a quota or a read-only folder met while writing ``path`` into one line."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise WorkspaceWriteError(
                f"cannot write {path}: the path is too long for this file system; use a workspace with a "
                "shorter path, or shorten the names in the source (the previous manifest is intact)"
            ) from None
        if exc.errno not in _CANNOT_WRITE:
            raise
        reason = os.strerror(exc.errno)
        raise WorkspaceWriteError(
            f"cannot write {path} ({reason}): free some disk space or make the folder writable, then run the "
            "same command again (the previous manifest is intact)"
        ) from None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems refuse to open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path | str, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    ``durable`` also flushes the file and its folder to disk (survives power loss, not only a
    crash). Bulk writers pass False per file and call :func:`sync` once before they commit.
    """
    path = Path(path)
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with disk_errors(path):
            yield tmp
            os.chmod(tmp, _FILE_MODE)
            if durable:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path | str, data: bytes, durable: bool = True) -> None:
    with atomic_path(path, durable) as tmp:
        tmp.write_bytes(data)


def sync(path: Path | str | None = None) -> None:
    """Flush pending writes to disk: one call after many non-durable writes.

    With ``path``, only the file system that holds it (Linux's ``syncfs``): other disks' pending
    writes are not waited for. Elsewhere, or if ``syncfs`` is unavailable, every file system
    (``os.sync``)."""
    if path is not None and _syncfs(path):
        return
    os.sync()


_LIBC: Any = None


def _syncfs(path: Path | str) -> bool:
    """``syncfs`` on the file system holding ``path``; False where it could not be called."""
    global _LIBC
    if not sys.platform.startswith("linux"):
        return False
    if _LIBC is None:
        import ctypes

        try:
            _LIBC = ctypes.CDLL(None, use_errno=True)
            _LIBC.syncfs.argtypes = [ctypes.c_int]
        except (OSError, AttributeError):
            _LIBC = False
    if not _LIBC:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return _LIBC.syncfs(fd) == 0
    finally:
        os.close(fd)


def remove_stale_temps(folder: Path) -> int:
    """Delete temporary files a crashed writer left in ``folder`` (not recursive)."""
    removed = 0
    if folder.is_dir():
        for leftover in folder.glob(TEMP_PREFIX + "*"):
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed

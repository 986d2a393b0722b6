"""Crash-safe file writes: a temporary file in the same folder, fsync, then ``os.replace``.

A reader therefore sees either the old file or the whole new one, never half of it (the model is
SQLite's atomic commit). Temporary names start with ``.tmp-`` so that a crash leaves only files
that no reader ever opens and that :func:`remove_stale_temps` can clear.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_PREFIX = ".tmp-"


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
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


def sync() -> None:
    """Flush every pending write to disk: one call after many non-durable writes."""
    os.sync()


def remove_stale_temps(folder: Path) -> int:
    """Delete temporary files a crashed writer left in ``folder`` (not recursive)."""
    removed = 0
    if folder.is_dir():
        for leftover in folder.glob(TEMP_PREFIX + "*"):
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed

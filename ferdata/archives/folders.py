"""A plain folder, read where it lies.

::

    delivery/                    members():
    ├── notes.txt                  notes.txt
    ├── happy/a.jpg                happy/a.jpg
    ├── happy/link.jpg -> a.jpg    (a link that stays inside: not listed, not followed)
    ├── .DS_Store                  (OS junk: not listed)
    └── fer2013.csv.gz             fer2013.csv.gz/fer2013.csv  (nested: read in place, never spooled)

What it guarantees: regular files only, walked in sorted order; a symlink (to a file or a folder)
that resolves outside the folder, a device file, FIFO or socket is refused when the tree is opened;
names go through :mod:`.names`; reads are counted against the limits like an archive's (ratio 1).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ferdata.errors import ArchiveError, UnsafeArchiveError

from .base import Context, Member, MemberStream, Tree, buffered
from .limits import Counter
from .names import NameBook, is_junk, normalise

__all__ = ["FolderTree"]


class FolderTree(Tree):
    """A plain folder. Symlinks that resolve outside it are refused; those inside are not listed."""

    format = "folder"
    described = "folders"

    def __init__(self, path: Path, label: str, ctx: Context) -> None:
        super().__init__(path, label, ctx)
        root = os.path.realpath(path)
        book = NameBook(label)
        self._files: dict[str, str] = {}
        for folder, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for entry in sorted(dirnames) + sorted(filenames):
                full = os.path.join(folder, entry)
                rel = Path(os.path.relpath(full, path)).as_posix()
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    resolved = os.path.realpath(full)
                    if not _inside(root, resolved):
                        raise UnsafeArchiveError(
                            f"{label}: {rel!r} is a symlink to {resolved}, outside the folder; "
                            f"ferdata refuses links that leave the folder"
                        )
                    if entry in dirnames:
                        dirnames.remove(entry)  # a link inside is not followed (nor listed)
                    continue
                if stat.S_ISDIR(st.st_mode):
                    continue
                if not stat.S_ISREG(st.st_mode):
                    raise UnsafeArchiveError(
                        f"{label}: {rel!r} is a device file, FIFO or socket; ferdata reads regular files only"
                    )
                name = normalise(rel, label)
                if is_junk(name):
                    continue
                book.add(name, rel)
                self._members[name] = Member(name, st.st_size)
                self._files[name] = full

    def _local_path(self, name: str) -> Path:
        return Path(self._files[name])

    @contextlib.contextmanager
    def _open_one(self, name: str) -> Iterator[BinaryIO]:
        try:
            raw = open(self._local_path(name), "rb")  # noqa: SIM115 - closed by the member stream
        except OSError as exc:
            raise ArchiveError(f"{self.label}: {name!r} cannot be read ({exc.strerror})") from None
        guard = self._guard(name, lambda: guard.produced)  # no compression: ratio 1
        counted = _RawCount(raw, self._ctx.raw_read)
        with buffered(MemberStream(counted, guard, self._on_error(name))) as stream:
            yield stream

    def _iter_open(self, names: list[str]) -> Iterator[tuple[str, BinaryIO]]:
        for name in names:
            with self._open_one(name) as stream:
                yield name, stream


def _inside(root: str, path: str) -> bool:
    try:
        return os.path.commonpath([root, path]) == root
    except ValueError:  # another drive (Windows)
        return False


class _RawCount:
    """Adds a plain file's reads to the context's disk counter."""

    def __init__(self, raw: BinaryIO, sink: Counter) -> None:
        self._raw = raw
        self._sink = sink

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._sink.value += len(data)
        return data

    def close(self) -> None:
        self._raw.close()

"""One compressed file (``fer2013.csv.gz``, ``.bz2``, ``.xz``), or a bare table given directly.

::

    fer2013.csv.gz     members(): fer2013.csv   (the file's own name without its suffix)
    fer2013.csv        members(): fer2013.csv   (given directly, not inside an archive)

Also the decompression layer the tar reader shares (:func:`decompressing`). What it guarantees:
one member, streamed, its produced bytes held to the limits against the compressed bytes read
(gzip's size field is mod 2**32, so no size is declared). A bare ``.csv``/``.tsv`` is a tree only
when it is the path given (never a member): dispatch decides that from the suffix, since text has
no magic bytes.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .base import Context, Member, MemberStream, Tree, buffered
from .limits import CountingFile
from .names import normalise

__all__ = ["COMPRESSIONS", "PLAIN_TABLES", "CompressedFileTree", "decompressing"]

_SUFFIXES = {"gzip": (".gz", ".gzip"), "bzip2": (".bz2", ".bz"), "xz": (".xz",), "none": ()}
COMPRESSIONS = ("gzip", "bzip2", "xz")
PLAIN_TABLES = (".csv", ".tsv")  # given directly, such a file is a tree of one member


@contextlib.contextmanager
def decompressing(raw: BinaryIO, compression: str) -> Iterator[BinaryIO]:
    if compression == "gzip":
        import gzip

        with gzip.GzipFile(fileobj=raw, mode="rb") as plain:
            yield plain  # type: ignore[misc]
    elif compression == "bzip2":
        import bz2

        with bz2.BZ2File(raw) as plain:
            yield plain  # type: ignore[misc]
    elif compression == "xz":
        import lzma

        with lzma.LZMAFile(raw) as plain:
            yield plain  # type: ignore[misc]
    else:
        yield raw


class CompressedFileTree(Tree):
    """A single compressed file (``fer2013.csv.gz``): one member, named without the suffix."""

    format = "compressed"
    described = "single .gz/.bz2/.xz files, a bare .csv"

    def __init__(self, path: Path, label: str, ctx: Context, compression: str, name_hint: str) -> None:
        super().__init__(path, label, ctx)
        self._compression = compression
        base = posixpath.basename(name_hint.replace("\\", "/")) or "content"
        for suffix in _SUFFIXES[compression]:
            if base.lower().endswith(suffix) and len(base) > len(suffix):
                base = base[: -len(suffix)]
                break
        name = normalise(base, label) or "content"
        self._members[name] = Member(name, None)  # gzip's size field is mod 2**32: not worth trusting

    @classmethod
    def from_path(cls, path: Path, label: str, ctx: Context, *, compression: str, name_hint: str) -> Tree:
        return cls(path, label, ctx, compression, name_hint)

    def _iter_open(self, names: list[str]) -> Iterator[tuple[str, BinaryIO]]:
        for name in names:
            counting = CountingFile(self.path, self._ctx.raw_read)
            with counting, decompressing(counting, self._compression) as plain:
                guard = self._guard(name, lambda counting=counting: counting.consumed)
                with buffered(MemberStream(plain, guard, self._on_error(name))) as stream:
                    yield name, stream

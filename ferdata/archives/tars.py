"""Tar: plain, or compressed with gzip, bzip2 or xz, read as one stream (tar has no index).

::

    a.tar.gz  =  gzip( header | data | header | data | ... )
                 members() come from one guarded pass made when the tree is opened;
                 iter_read() makes one more pass and stops after the last member asked for.

What it guarantees: every member goes through PEP 706's ``tarfile.data_filter`` (absolute paths,
``..``, links that leave, device files and FIFOs are refused, the same rules Python applies when
it extracts) and then through :mod:`.names`; links that stay inside and folders are not listed.
Opening checks the limits on every member's bytes (the listing pass reads the whole stream), and
the whole stream is guarded as well, since tar headers (pax, long names) are read into memory.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ferdata.errors import ArchiveError, FerdataError

from .base import CHUNK, Context, Member, MemberStream, Tree, buffered, damaged, library_errors
from .compressed import decompressing
from .limits import Counter, CountingFile, Guard
from .names import OUTSIDE, NameBook, is_junk, normalise, unsafe

__all__ = ["TarTree", "looks_like_tar"]


def looks_like_tar(head: bytes) -> bool:
    """Whether the first 512 bytes (decompressed) are a tar header."""
    if len(head) < 512:
        return False
    if head[257:262] == b"ustar":
        return True
    try:  # old v7 tar has no magic: a header whose checksum is right is a tar
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


class TarTree(Tree):
    """A tar, plain or compressed with gzip, bzip2 or xz, read as a stream (one pass per read).

    Opening makes one guarded pass that lists the members through PEP 706's ``data_filter``
    and checks every member's bytes against the limits.
    """

    format = "tar"
    described = "tar, tar.gz/.bz2/.xz"

    # data_filter needs a destination; nothing is ever written there
    _FILTER_DEST = os.path.join(os.sep, "ferdata-archive-check")

    def __init__(self, path: Path, label: str, ctx: Context, compression: str) -> None:
        super().__init__(path, label, ctx)
        self._compression = compression
        book = NameBook(label)
        pass_total = Counter()  # the listing pass has its own total: it reads the content once
        current: str | None = None
        try:
            with self._stream() as (tar, counting, stream_guard):
                for info in tar:
                    current = stream_guard.at = info.name
                    name = normalise(info.name, label)
                    try:
                        tarfile.data_filter(info, self._FILTER_DEST)
                    except tarfile.FilterError as exc:
                        raise unsafe(label, info.name, f"is refused ({exc}); {OUTSIDE}") from None
                    if not info.isreg() or not name:
                        continue  # folders, and links that stay inside: not listed
                    if is_junk(name):
                        continue
                    book.add(name, info.name)
                    self._members[name] = Member(name, info.size)
                    start = counting.consumed
                    guard = Guard(ctx, label, name, lambda start=start: counting.consumed - start, pass_total)
                    member = tar.extractfile(info)
                    assert member is not None  # a regular file always has data
                    while chunk := member.read(CHUNK):
                        guard.count(len(chunk))
        except FerdataError:
            raise
        except library_errors() as exc:
            raise damaged(label, current, exc) from None

    @classmethod
    def from_path(cls, path: Path, label: str, ctx: Context, *, compression: str, name_hint: str) -> Tree:
        return cls(path, label, ctx, compression)

    @contextlib.contextmanager
    def _stream(self) -> Iterator[tuple[tarfile.TarFile, CountingFile, Guard]]:
        counting = CountingFile(self.path, self._ctx.raw_read)
        with counting, decompressing(counting, self._compression) as plain:
            # the whole stream is guarded too: tar headers (pax, long names) are read into memory
            guard = Guard(self._ctx, self.label, None, lambda: counting.consumed, Counter())
            stream = MemberStream(plain, guard, lambda exc: damaged(self.label, None, exc))
            # tarfile pulls 10 KiB records: a buffer keeps them off the guarded, decompressing layers
            with tarfile.open(fileobj=buffered(stream), mode="r|") as tar:  # type: ignore[call-overload]
                yield tar, counting, guard

    def _iter_open(self, names: list[str]) -> Iterator[tuple[str, BinaryIO]]:
        wanted = set(names)
        with self._stream() as (tar, counting, stream_guard):
            for info in tar:
                stream_guard.at = info.name
                if not info.isreg():
                    continue
                name = normalise(info.name, self.label)
                if name not in wanted:
                    continue
                wanted.discard(name)
                start = counting.consumed
                guard = self._guard(name, lambda start=start: counting.consumed - start)
                raw = tar.extractfile(info)
                assert raw is not None
                with buffered(MemberStream(raw, guard, self._on_error(name))) as stream:
                    yield name, stream
                if not wanted:
                    return  # the rest of the archive is never decompressed
        if wanted:
            raise ArchiveError(
                f"{self.label} changed while it was being read ({sorted(wanted)[0]!r} is gone); open it again"
            )

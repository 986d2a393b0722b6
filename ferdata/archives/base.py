"""What every reader shares: :class:`Tree` (the protocol), :class:`Member`, the context a tree and
the archives nested in it share, and the guarded member stream.

A format is a :class:`Tree` subclass in its own module, registered in
:data:`ferdata.archives.dispatch.FORMATS`. It lists its regular files in ``__init__`` (through
:mod:`.names`, refusing anything unsafe before a member is handed out) and provides
``_iter_open``: the named members, in archive order, as streams made with :meth:`Tree._guard`,
so that every byte is counted against the :class:`~.limits.Limits`.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar, Protocol

from ferdata.errors import ArchiveError, FerdataError, UnsafeArchiveError

from .limits import Counter, Guard, Limits, raise_hint, size
from .passwords import PasswordProvider, Secret, encrypted

__all__ = [
    "CHUNK",
    "Context",
    "Member",
    "MemberStream",
    "Tree",
    "buffered",
    "damaged",
    "library_errors",
    "not_complete",
    "read_all",
]

CHUNK = 1 << 20  # read granularity: the most one read holds in memory (py7zr aside, see docs)


@dataclass(frozen=True)
class Member:
    name: str  # normalised POSIX path inside the tree; nested: '<inner archive member>/<inner name>'
    size: int | None  # declared uncompressed size (may lie: reading enforces the limits)


# --------------------------------------------------------------------------------------------
# Errors from the archive libraries, as one line


_BASE_ERRORS: tuple[type[BaseException], ...] | None = None
_WITH_OPTIONAL: dict[tuple[bool, bool], tuple[type[BaseException], ...]] = {}


def library_errors() -> tuple[type[BaseException], ...]:
    """What the archive libraries raise for damaged input (not bugs such as TypeError).

    pyzipper's and py7zr's own errors are included once they are imported (the zip and 7z readers
    import them before they read with them): importing them only for this tuple cost more than
    reading a small zip."""
    global _BASE_ERRORS
    if _BASE_ERRORS is None:
        import lzma
        import zipfile

        _BASE_ERRORS = (
            OSError, EOFError, zlib.error, lzma.LZMAError, tarfile.TarError, zipfile.BadZipFile,
            NotImplementedError, RuntimeError,
        )  # fmt: skip
    key = ("pyzipper" in sys.modules, "py7zr" in sys.modules)
    errors = _WITH_OPTIONAL.get(key)
    if errors is None:
        errors = _BASE_ERRORS
        if key[0]:
            import pyzipper

            errors = (*errors, pyzipper.BadZipFile)
        if key[1]:
            import py7zr.exceptions

            errors = (*errors, py7zr.exceptions.ArchiveError, py7zr.exceptions.PasswordRequired)
        _WITH_OPTIONAL[key] = errors
    return errors


def damaged(label: str, member: str | None, exc: BaseException) -> ArchiveError:
    where = f"{label}: member {member!r}" if member else label
    reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    if isinstance(exc, NotImplementedError):
        return ArchiveError(
            f"{where} uses a compression method ferdata can't read ({reason}); re-pack it as zip or tar.gz"
        )
    return ArchiveError(
        f"{where} cannot be read ({reason}): the archive is damaged or the download is probably incomplete; "
        f"download it again"
    )


def not_complete(label: str, kind: str, exc: BaseException) -> ArchiveError:
    reason = str(exc)[:80] or type(exc).__name__
    return ArchiveError(
        f"{label} is not a complete {kind} archive ({reason}): the download is probably incomplete; download it again"
    )


# --------------------------------------------------------------------------------------------
# Streams


class Readable(Protocol):
    """What a member stream reads from: a format library's file object, or a counting wrapper."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class MemberStream(io.RawIOBase):
    """A member's bytes: counted by its guard, library errors turned into one-line ArchiveErrors."""

    def __init__(self, raw: Readable, guard: Guard | None, on_error: Callable[[BaseException], FerdataError]) -> None:
        self._raw = raw
        self._guard = guard
        self._on_error = on_error

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        """At most ``size`` bytes, counted before they are handed on. Read without a buffer, in
        chunks of ``CHUNK`` (:func:`read_all`), for thousands of small members: a buffered reader
        around this stream cost as much as inflating them."""
        if size is None or size < 0:
            return self.readall()  # in chunks, each counted
        try:
            data = self._raw.read(size)
        except FerdataError:
            raise
        except library_errors() as exc:
            raise self._on_error(exc) from None
        if self._guard is not None:
            self._guard.count(len(data))
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._raw.close()
        super().close()


def buffered(stream: io.RawIOBase) -> BinaryIO:
    return io.BufferedReader(stream, buffer_size=CHUNK)


def read_all(stream: BinaryIO | MemberStream) -> bytes:
    """The rest of ``stream``, read in chunks of ``CHUNK`` (a guarded stream counts each)."""
    parts: list[bytes] = []
    while True:
        part = stream.read(CHUNK)
        if not part:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        parts.append(part)


# --------------------------------------------------------------------------------------------
# The context shared by a tree and the archives nested in it


class Context:
    def __init__(self, limits: Limits, password: PasswordProvider | None, scratch: Path | None) -> None:
        self.limits = limits
        self.total = Counter()  # bytes handed out by every tree in this context
        self.raw_read = Counter()  # bytes read from disk by every tree in this context
        self._provider = password
        self._secret: Secret | None = None
        self.scratch_dir = scratch
        self._spool_dir: Path | None = None
        self._trees: list[Tree] = []
        self.closed = False

    def secret(self, label: str) -> Secret:
        """The password, asked once (lazily) and reused for every archive in the tree."""
        if self._secret is None:
            provider, self._provider = self._provider, None  # called at most once, even if it fails
            secret = provider() if provider is not None else None
            if secret is None:  # none given, or the provider had none (no option, no terminal)
                raise encrypted(label)
            self._secret = secret
        return self._secret

    def spool_path(self) -> Path:
        if self._spool_dir is None:
            if self.scratch_dir is not None:
                Path(self.scratch_dir).mkdir(parents=True, exist_ok=True)
            self._spool_dir = Path(tempfile.mkdtemp(prefix="ferdata-spool-", dir=self.scratch_dir))
        fd, name = tempfile.mkstemp(prefix="nested-", dir=self._spool_dir)
        os.close(fd)
        return Path(name)

    def register(self, tree: Tree) -> None:
        self._trees.append(tree)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for tree in reversed(self._trees):
            with contextlib.suppress(Exception):
                tree._release()
        if self._spool_dir is not None:
            shutil.rmtree(self._spool_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Trees


class Tree:
    """Regular files of a folder or archive, listed safely and read as guarded streams.

    One subclass per format. ``members()`` lists regular files in archive order with OS junk
    filtered; ``read``/``open``/``iter_read`` enforce the :class:`Limits` while streaming.
    """

    format: ClassVar[str]  # its key in FORMATS
    described: ClassVar[str]  # how the list of supported formats names it

    path: Path

    def __init__(self, path: Path, label: str, ctx: Context) -> None:
        self.path = path
        self.label = label  # how messages name this tree: the path, or 'outer.zip/inner.tar.gz'
        self._ctx = ctx
        self._members: dict[str, Member] = {}
        ctx.register(self)

    @classmethod
    def from_path(cls, path: Path, label: str, ctx: Context, *, compression: str, name_hint: str) -> Tree:
        """The one way dispatch opens every format. ``compression`` is what wraps the file
        (``gzip``, ``bzip2``, ``xz`` or ``none``); ``name_hint`` the file's own name."""
        return cls(path, label, ctx)

    # -- public API ---------------------------------------------------------------------------

    def members(self) -> list[Member]:
        """Regular files only, in archive order, OS junk filtered, nested archives expanded."""
        return list(self._members.values())

    def read(self, name: str) -> bytes:
        """One whole member, guarded by the limits."""
        with self.open(name) as stream:
            return read_all(stream)

    def open(self, name: str) -> AbstractContextManager[BinaryIO]:
        """A streaming read of one member (``with tree.open(name) as stream: ...``), guarded.

        For tar and 7z each call decompresses from the start of the stream or block: read many
        members with :meth:`iter_read`.
        """
        self._require([name])
        return self._open_one(name)

    def iter_read(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """The named members in the cheapest order (archive order; one pass for tar and 7z)."""
        wanted = list(dict.fromkeys(names))
        self._require(wanted)
        return self._iter_read(wanted)

    def iter_open(self, names: Iterable[str]) -> Iterator[tuple[str, BinaryIO]]:
        """The named members as guarded streams in the cheapest order (one pass for tar and 7z);
        each stream is valid until the next one is handed out. For peeking at many members'
        first bytes without reading them whole."""
        wanted = list(dict.fromkeys(names))
        self._require(wanted)
        return self._iter_open(wanted) if wanted else iter(())

    def _iter_read(self, wanted: list[str]) -> Iterator[tuple[str, bytes]]:
        if not wanted:
            return
        with contextlib.closing(self._iter_open(wanted)) as streams:
            for name, stream in streams:
                yield name, read_all(stream)

    @property
    def raw_bytes_read(self) -> int:
        """Bytes read from disk so far by this tree and the archives nested in it."""
        return self._ctx.raw_read.value

    def close(self) -> None:
        """Close every file this tree (and the archives nested in it) opened; delete the spools."""
        self._ctx.close()

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r}, {len(self._members)} members)"

    # -- what subclasses provide --------------------------------------------------------------

    def _iter_open(self, names: list[str]) -> Generator[tuple[str, BinaryIO], None, None]:
        """(name, stream) for the named members in archive order; a stream lives until the next."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _open_one(self, name: str) -> Iterator[BinaryIO]:
        with contextlib.closing(self._iter_open([name])) as streams:
            _, stream = next(streams)
            yield stream

    def _local_path(self, name: str) -> Path | None:
        """The member's own file on disk, when it has one (folders): nested archives need no spool."""
        return None

    def _release(self) -> None:
        """Close file handles (called once, by the context)."""

    # -- helpers ------------------------------------------------------------------------------

    def _require(self, names: list[str]) -> None:
        if self._ctx.closed:
            raise ValueError(f"{self.label} is closed")
        for name in names:
            if name not in self._members:
                raise KeyError(f"{name!r} is not a member of {self.label}")
            self._check_declared(name)

    def _guard(self, member: str, consumed: Callable[[], int]) -> Guard:
        return Guard(self._ctx, self.label, member, consumed, self._ctx.total)

    def _check_declared(self, name: str) -> None:
        declared = self._members[name].size
        if declared is not None and declared > self._ctx.limits.max_member_bytes:
            raise UnsafeArchiveError(
                f"{self.label}: member {name!r} declares {size(declared)}, over the "
                f"{size(self._ctx.limits.max_member_bytes)} limit; "
                f"if you trust this archive, raise the limit with {raise_hint('max_member_bytes')}"
            )

    def _on_error(self, member: str) -> Callable[[BaseException], FerdataError]:
        return lambda exc: damaged(self.label, member, exc)

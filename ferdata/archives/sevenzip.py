"""7z (via py7zr): solid or not, with a password, with or without encrypted headers (``-mhe=on``).

py7zr extracts by *pushing* each member into a writer it creates; readers here *pull*. A thread
runs the extraction and hands chunks over a small bounded queue::

    extraction thread                                  reading thread
    py7zr.extract(factory=_PumpFactory)
      └─ _PumpWriter.write(chunk)  ── guard.count ──►  queue (4 chunks)  ──►  _PumpStream.readinto
         (the guard's refusal stops the                                        (what iter_open hands
          decompression itself)                                                 out, member by member)

What it guarantees, beyond :mod:`.names`:

* One pass per read: a solid archive is decompressed once for all the members asked for, and
  memory stays at a few chunks whatever a member's size (py7zr's own output block is capped at one
  chunk, see :func:`_py7zr`).
* A reader that walks away stops the extraction thread (``_Stopped`` unwinds py7zr).
* An encrypted archive asks for the password once; a wrong one is caught when the tree is opened,
  on the header (encrypted names) or on the first member's first chunk. 7z passwords are text: a
  ``bytes`` password must be UTF-8.
* Links are read (a few bytes) only to check that their target stays inside; device entries are
  refused.
"""

from __future__ import annotations

import contextlib
import io
import queue
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ferdata.errors import ArchiveError, FerdataError, PasswordError, UnsafeArchiveError

from .base import CHUNK, Context, Member, Tree, buffered, damaged, not_complete
from .limits import CountingFile, Guard
from .names import SPECIAL, NameBook, check_link, is_junk, normalise, unsafe
from .passwords import wrong_password

if TYPE_CHECKING:
    import py7zr

__all__ = ["SevenZipTree"]


class SevenZipTree(Tree):
    """A 7z (via py7zr), solid or not, optionally with a password and encrypted headers."""

    format = "7z"
    described = "7z"

    def __init__(self, path: Path, label: str, ctx: Context) -> None:
        import py7zr.exceptions

        super().__init__(path, label, ctx)
        self._encrypted = False
        self._parsed: tuple[py7zr.SevenZipFile, CountingFile] | None = None  # reused between passes
        self._parsed_lock = threading.Lock()
        self._raw_names: dict[str, str] = {}
        self._by_output: dict[str, str] = {}
        self._links: list[tuple[str, str]] = []
        self._first_data: tuple[str, int] | None = None
        header_encrypted = False
        try:
            with self._archive() as (archive, _):
                needs_password = archive.needs_password()
                if not needs_password:
                    self._list(archive)
        except py7zr.exceptions.PasswordRequired:  # the header itself is encrypted
            needs_password = header_encrypted = True
        except FerdataError:
            raise
        except Exception as exc:  # py7zr raises many kinds on a damaged file
            raise not_complete(label, "7z", exc) from None
        if needs_password:
            self._password()
            self._encrypted = True
            try:
                with self._archive() as (archive, _):
                    self._list(archive)
            except FerdataError:
                raise
            except Exception as exc:
                if header_encrypted:  # a wrong key turns the header into noise: any parse error may follow
                    raise wrong_password(label, "the archive's header") from None
                raise damaged(label, None, exc) from None
            if not header_encrypted and self._first_data is not None:
                self._check_password(*self._first_data)
        if self._links:
            self._check_links(self._links)

    def _password(self) -> str:
        """The password as text (what 7z encrypts with, as UTF-16)."""
        value = self._ctx.secret(self.label).reveal()
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise PasswordError(
                    f"{self.label} is a 7z archive, whose passwords are text: the bytes given as password= are not "
                    "UTF-8; pass the password as a str"
                ) from None
        return value

    def _list(self, archive: py7zr.SevenZipFile) -> None:
        from py7zr.helpers import get_sanitized_output_path

        label = self.label
        book = NameBook(label)
        for file in archive.files:
            name = normalise(file.filename, label)
            fmt = file.st_fmt
            if file.is_directory or not name:
                continue
            if file.is_symlink or file.is_junction:
                self._links.append((name, file.filename))
                continue
            if file.is_socket or (fmt is not None and fmt not in (stat.S_IFREG, 0)):
                raise unsafe(label, file.filename, SPECIAL)
            if is_junk(name):
                continue
            book.add(name, file.filename)
            self._members[name] = Member(name, file.uncompressed)
            self._raw_names[name] = file.filename
            self._by_output[get_sanitized_output_path(file.filename, None).as_posix()] = name
            if self._first_data is None and not file.emptystream:
                self._first_data = (name, file.uncompressed)

    @contextlib.contextmanager
    def _archive(self) -> Iterator[tuple[py7zr.SevenZipFile, CountingFile]]:
        """A fresh parse of the archive (parsing an encrypted header costs a key derivation)."""
        py7zr = _py7zr()
        counting = CountingFile(self.path, self._ctx.raw_read)
        with counting:
            # a file object (not a path) also keeps py7zr from decompressing folders in parallel threads
            if self._encrypted:
                archive = py7zr.SevenZipFile(counting, password=self._password())
            else:
                archive = py7zr.SevenZipFile(counting)
            with archive:
                yield archive, counting

    @contextlib.contextmanager
    def _extractor(self) -> Iterator[tuple[py7zr.SevenZipFile, CountingFile]]:
        """The parsed archive, rewound for one extraction; a fresh one if another pass holds it."""
        if not self._parsed_lock.acquire(blocking=False):
            with self._archive() as fresh:
                yield fresh
            return
        try:
            if self._parsed is None:
                stack = contextlib.ExitStack()
                self._parsed = stack.enter_context(self._archive())
                self._parsed_closer = stack
            archive, counting = self._parsed
            archive.reset()
            yield archive, counting
        finally:
            self._parsed_lock.release()

    def _release(self) -> None:
        if self._parsed is not None:
            self._parsed_closer.close()
            self._parsed = None

    def _check_password(self, name: str, size: int) -> None:
        """Decrypt the first member (its first chunk, if big): a wrong key fails there, not later."""
        try:
            with contextlib.closing(_SevenZipPump(self, [self._raw_names[name]]).streams()) as streams:
                _, stream = next(streams)
                stream.read(-1 if size <= 4 * CHUNK else CHUNK)
        except UnsafeArchiveError:
            raise
        except ArchiveError:
            raise wrong_password(self.label, repr(name)) from None

    def _check_links(self, links: list[tuple[str, str]]) -> None:
        wanted = {raw: name for name, raw in links}
        from py7zr.helpers import get_sanitized_output_path

        by_output = {get_sanitized_output_path(raw, None).as_posix(): name for raw, name in wanted.items()}
        pump = _SevenZipPump(self, list(wanted), names=by_output, link_limit=4096)
        with contextlib.closing(pump.streams()) as streams:
            for name, stream in streams:
                check_link(self.label, name, stream.read(4096).decode("utf-8", "surrogateescape"))

    def _iter_open(self, names: list[str]) -> Iterator[tuple[str, BinaryIO]]:
        pump = _SevenZipPump(self, [self._raw_names[name] for name in names])
        with contextlib.closing(pump.streams()) as streams:
            for name, stream in streams:
                with buffered(stream) as buffered_stream:  # type: ignore[arg-type]
                    yield name, buffered_stream


def _py7zr():  # noqa: ANN202 - the module
    """py7zr, with its decompression block capped at one chunk.

    py7zr sizes each LZMA output block from the free memory (up to 128 MB) and hands the block to
    the writer only when it is complete, so a bomb would be 128 MB in memory before the guard saw a
    byte. Its worker looks the size up through this module-level name on every block.
    """
    import py7zr.py7zr

    if getattr(py7zr.py7zr.get_memory_limit, "__module__", "") != __name__:
        py7zr.py7zr.get_memory_limit = _py7zr_block_size
    return py7zr


def _py7zr_block_size() -> int:
    return CHUNK


class _Stopped(Exception):
    """The reader went away: unwind py7zr's extraction."""


class _SevenZipPump:
    """Turns py7zr's push-style extraction into pull-style member streams, in one pass.

    py7zr writes each member into an object its ``WriterFactory`` creates; here a thread runs the
    extraction and hands the chunks over a small bounded queue, so memory stays at a few chunks
    whatever the size of the member, and a solid archive is decompressed once for all members.
    """

    _DEPTH = 4  # chunks in flight

    def __init__(
        self,
        tree: SevenZipTree,
        raw_names: list[str],
        *,
        names: dict[str, str] | None = None,
        link_limit: int | None = None,
    ) -> None:
        self._tree = tree
        self._raw_names = raw_names
        self._names = names if names is not None else tree._by_output
        self._link_limit = link_limit  # links are read only to check their target: no guard needed
        self._queue: queue.Queue = queue.Queue(maxsize=self._DEPTH)
        self._stopped = threading.Event()
        self._current: str | None = None
        self._thread = threading.Thread(target=self._produce, name="ferdata-7z", daemon=True)

    # -- producer (the extraction thread) -----------------------------------------------------

    def _produce(self) -> None:
        try:
            with self._tree._extractor() as (archive, counting):
                archive.extract(targets=self._raw_names, factory=_PumpFactory(self, counting))
        except _Stopped:
            return
        except BaseException as exc:  # handed to the reading thread, which raises it there
            with contextlib.suppress(_Stopped):
                self._offer(("error", exc))
            return
        with contextlib.suppress(_Stopped):
            self._offer(("done", None))

    def _offer(self, item: tuple[str, object]) -> None:
        while True:
            if self._stopped.is_set():
                raise _Stopped
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    # -- consumer -----------------------------------------------------------------------------

    def streams(self) -> Iterator[tuple[str, _PumpStream]]:
        self._thread.start()
        current: _PumpStream | None = None
        try:
            while True:
                if current is not None:
                    current.finish()  # skip what the caller left unread
                kind, value = self._take()
                if kind == "done":
                    return
                assert kind == "start", kind
                self._current = value  # type: ignore[assignment]
                current = _PumpStream(self)
                yield value, current  # type: ignore[misc]
        finally:
            self._stopped.set()
            self._thread.join()

    def _take(self) -> tuple[str, object]:
        kind, value = self._queue.get()
        if kind == "error":
            exc = value
            if isinstance(exc, FerdataError):
                raise exc
            raise damaged(self._tree.label, self._current, exc)  # type: ignore[arg-type]
        return kind, value


class _PumpStream(io.RawIOBase):
    def __init__(self, pump: _SevenZipPump) -> None:
        self._pump = pump
        self._pending = memoryview(b"")
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self._pending and not self._ended:
            kind, value = self._pump._take()
            if kind == "data":
                self._pending = value  # type: ignore[assignment]
            elif kind == "end":
                self._ended = True
            else:
                raise ArchiveError(f"{self._pump._tree.label}: unexpected {kind!r} while reading a member")  # a bug
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def finish(self) -> None:
        self._pending = memoryview(b"")
        while not self._ended:
            kind, _ = self._pump._take()
            self._ended = kind == "end"


class _PumpFactory:
    """py7zr's WriterFactory: one writer per member, in the order py7zr decompresses them."""

    def __init__(self, pump: _SevenZipPump, counting: CountingFile) -> None:
        self._pump = pump
        self._counting = counting

    def create(self, filename: str) -> _PumpWriter:
        name = self._pump._names[filename]
        self._pump._offer(("start", name))
        if self._pump._link_limit is not None:
            return _PumpWriter(self._pump, None, self._pump._link_limit)
        start = self._counting.consumed
        counting = self._counting
        guard = self._pump._tree._guard(name, lambda: counting.consumed - start)
        return _PumpWriter(self._pump, guard, None)


class _PumpWriter:
    """Receives a member's bytes from py7zr (duck-typed Py7zIO) and queues them for the reader."""

    def __init__(self, pump: _SevenZipPump, guard: Guard | None, limit: int | None) -> None:
        self._pump = pump
        self._guard = guard
        self._limit = limit
        self._size = 0

    def write(self, data: bytes | bytearray) -> int:
        if self._pump._stopped.is_set():
            raise _Stopped
        n = len(data)
        if self._guard is not None:
            self._guard.count(n)  # raised here, the error stops the decompression itself
        self._size += n
        view = memoryview(bytes(data) if isinstance(data, bytearray) else data)
        if self._limit is not None:
            view = view[: max(0, self._limit - (self._size - n))]
        for start in range(0, len(view), CHUNK):
            self._pump._offer(("data", view[start : start + CHUNK]))
        return n

    def close(self) -> None:
        self._pump._offer(("end", None))

    def read(self, size: int | None = None) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def flush(self) -> None:
        pass

    def size(self) -> int:
        return self._size

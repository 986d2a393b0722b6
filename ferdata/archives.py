"""Reading datasets out of archives and folders: safely, as streams, without unpacking to disk.

:func:`open_tree` opens a folder, a zip (stored/deflate, ZipCrypto or AES-256), a 7z (optionally
with encrypted headers), a plain or gzip/bzip2/xz-compressed tar, or a single compressed file
(``fer2013.csv.gz``), choosing the reader from the file's magic bytes. Archives found inside it
(also by magic bytes) are expanded in place, recursively. What this module guarantees:

* **Nothing unsafe is listed, and refusal comes before any member is handed out.** Absolute
  paths, drive letters, ``..`` components, links whose target leaves the tree, device files and
  FIFOs, and duplicate or clashing member names raise :class:`~ferdata.errors.UnsafeArchiveError`
  naming the member when the tree is opened. Tar members go through Python's PEP 706
  ``data_filter``; zip and 7z members get the same checks here. Links that stay inside the tree
  are simply not listed: ferdata reads regular files only.
* **Decompression bombs are stopped while streaming.** Every byte handed out is counted against
  :class:`Limits` (ratio of one member, size of one member, total read from the tree including
  nested archives); declared sizes are never trusted. Memory stays bounded by the read chunk.
* **Nothing is extracted.** Members are streamed; a nested archive is spooled, alone, to a
  temporary file under ``scratch`` and removed on :meth:`Tree.close`.
* **Passwords stay secret.** A :class:`Secret` prints as ``***``; the provider is called at most
  once, only when something encrypted is met; a wrong password is detected on the first
  encrypted member or header; no message, repr or traceback shows the password.
* **Every failure is one line** (:class:`~ferdata.errors.ArchiveError` and subclasses) naming the
  archive, the member where there is one, and what to do.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import os
import posixpath
import queue
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ferdata.errors import ArchiveError, FerdataError, PasswordError, UnsafeArchiveError, UsageError, shown
from ferdata.fsutil import disk_errors

if TYPE_CHECKING:
    import py7zr

__all__ = [
    "CompressedFileTree",
    "FolderTree",
    "Limits",
    "Member",
    "NestedTree",
    "PasswordProvider",
    "Secret",
    "SevenZipTree",
    "TarTree",
    "Tree",
    "ZipTree",
    "open_tree",
    "password_provider",
]

_CHUNK = 1 << 20  # read granularity: the most one read holds in memory (py7zr aside, see docs)
_GIB = 2**30

_PASSWORD_HINT = "pass its password with --password-env VAR or --password-file FILE"
_SUPPORTED = "zip (incl. ZipCrypto/AES), 7z, tar, tar.gz/.bz2/.xz, single .gz/.bz2/.xz files, a bare .csv, folders"


# --------------------------------------------------------------------------------------------
# Passwords


class Secret:
    """A password that never shows itself: str()/repr() give '***' (safe in tracebacks/logs)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __reduce__(self) -> tuple:  # never pickled (and so never written anywhere) by accident
        raise TypeError("a Secret cannot be pickled")


PasswordProvider = Callable[[], Secret]


class _NoPasswordAvailable(PasswordError):
    """No password option and no terminal; re-raised with the archive's name by the tree."""


def password_provider(
    *, env_var: str | None = None, file: Path | None = None, interactive: bool | None = None
) -> PasswordProvider:
    """--password-env VAR / --password-file FILE / hidden prompt (getpass) when stdin is a terminal.

    interactive=None means 'sys.stdin.isatty()'. When nothing is available it raises PasswordError
    at once (never hangs): '<archive> is encrypted: pass its password with --password-env VAR or
    --password-file FILE'. Empty env var / missing file -> PasswordError naming the variable/file
    (never the value). File: first line, trailing newline stripped. The provider reads its source
    lazily, on its first call, and remembers the answer.
    """
    if env_var is not None and file is not None:
        raise UsageError("give either --password-env or --password-file, not both")
    remembered: list[Secret] = []

    def provide() -> Secret:
        if not remembered:
            remembered.append(_ask(env_var, file, interactive))
        return remembered[0]

    return provide


def _ask(env_var: str | None, file: Path | None, interactive: bool | None) -> Secret:
    if env_var is not None:
        if not os.environ.get(env_var):
            raise PasswordError(
                f"environment variable {env_var} is not set or empty: export the archive's "
                f"password in it, or use --password-file FILE"
            )
        return Secret(os.environ[env_var])
    if file is not None:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PasswordError(
                f"password file {file} does not exist: check the path given to --password-file"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            raise PasswordError(f"password file {file} cannot be read ({reason}): check --password-file") from None
        first_line = text.partition("\n")[0].removesuffix("\r")
        if not first_line:
            raise PasswordError(f"password file {file} is empty: put the password on its first line")
        return Secret(first_line)
    if interactive is None:
        interactive = bool(sys.stdin is not None and sys.stdin.isatty())
    if not interactive:
        raise _NoPasswordAvailable(
            "an encrypted archive needs a password and there is no terminal to ask on: "
            "pass it with --password-env VAR or --password-file FILE"
        )
    try:
        answer = getpass.getpass("Archive password (hidden): ")
    except (EOFError, KeyboardInterrupt):
        answer = ""
    if not answer:
        raise PasswordError(
            "no password entered: type it at the prompt, or use --password-env VAR / --password-file FILE"
        )
    return Secret(answer)


# --------------------------------------------------------------------------------------------
# Public value types


@dataclass(frozen=True)
class Limits:
    """Decompression-bomb limits, checked on the bytes actually produced (never on declared sizes)."""

    max_ratio: float = 100.0  # uncompressed/compressed of one member, checked WHILE streaming
    min_ratio_bytes: int = 16 * 2**20  # ...once the member has produced this many bytes
    max_member_bytes: int = 8 * 2**30
    max_total_bytes: int = 512 * 2**30  # everything read from the tree, nested archives included
    max_depth: int = 3  # archives inside archives

    def __post_init__(self) -> None:
        if not self.max_ratio > 1:
            raise UsageError(f"--max-ratio must be above 1, not {self.max_ratio:g}")
        for field in ("min_ratio_bytes", "max_member_bytes", "max_total_bytes"):
            if getattr(self, field) < 1:
                raise UsageError(f"archive limit {field} must be positive, not {getattr(self, field)}")
        if self.max_depth < 0:
            raise UsageError(f"archive limit max_depth must be 0 or more, not {self.max_depth}")


@dataclass(frozen=True)
class Member:
    name: str  # normalised POSIX path inside the tree; nested: '<inner archive member>/<inner name>'
    size: int | None  # declared uncompressed size (may lie: reading enforces the limits)


# --------------------------------------------------------------------------------------------
# Member names: normalisation, safety, junk

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile("[\x01-\x1f\x7f]")  # NUL has its own message
# The longest file or folder name (one path component, in bytes) that common file systems hold:
# ext4, XFS, Btrfs, tmpfs, APFS and NTFS all stop at 255.
NAME_MAX = 255
_UNDECODED = re.compile("[\ud800-\udfff]")
_REPACK_UTF8 = "re-pack the archive with UTF-8 file names (e.g. 7z a -tzip, or tar on a UTF-8 system)"
_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}


_SPECIAL = "is a device file, FIFO or socket; ferdata reads regular files only"
_OUTSIDE = "ferdata refuses archives that write outside their folder"
_LINKS = "ferdata refuses links that leave the archive"


def _shown(raw: str) -> str:
    return shown(raw, 120)


def _unsafe(label: str, raw: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{label}: member {_shown(raw)} {why}")


def _wrong_password(label: str, what: str) -> PasswordError:
    return PasswordError(
        f"wrong password for {label}: it does not decrypt {what}; "
        f"pass the one you received with --password-env or --password-file"
    )


def _not_complete(label: str, kind: str, exc: BaseException) -> ArchiveError:
    reason = str(exc)[:80] or type(exc).__name__
    return ArchiveError(
        f"{label} is not a complete {kind} archive ({reason}): the download is probably incomplete; download it again"
    )


def _normalise(raw: str, label: str) -> str:
    """The member's name as a clean relative POSIX path ('' for the root); refuse escaping names,
    control characters, and names no file system can hold."""
    name = raw.replace("\\", "/")
    if "\x00" in name:
        raise _unsafe(label, raw, "has a NUL byte in its name; ferdata refuses such archives")
    control = _CONTROL.search(name)
    if control:  # a newline or tab in a name breaks every list, log and CSV that shows it
        what = f"control character {control.group()!r}"
        raise _unsafe(label, raw, f"has a {what} in its name; ferdata refuses such archives: rename the file")
    if _UNDECODED.search(name):  # bytes that were not UTF-8, kept as surrogates by the decoder
        raise _unsafe(label, raw, f"has a name that is not UTF-8 text; {_REPACK_UTF8}")
    if name.startswith("/"):
        raise _unsafe(label, raw, f"has an absolute path; {_OUTSIDE}")
    if _DRIVE.match(name):
        raise _unsafe(label, raw, f"names a drive letter; {_OUTSIDE}")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _unsafe(label, raw, f"has a '..' component; {_OUTSIDE}")
    for part in parts:
        size = len(part.encode("utf-8", "surrogateescape"))
        if size > NAME_MAX:
            raise ArchiveError(
                f"{label}: member {_shown(raw)} has a name part of {size} bytes, over the {NAME_MAX} that file "
                "systems allow: rename it (or re-pack the archive with shorter names)"
            )
    return "/".join(parts)


def _is_junk(name: str) -> bool:
    """Files that operating systems drop into folders: never part of a dataset."""
    parts = name.split("/")
    base = parts[-1]
    return "__MACOSX" in parts[:-1] or base.lower() in _JUNK_NAMES or base.startswith("._")


def _check_link(label: str, name: str, target: str) -> None:
    """Refuse a zip/7z link whose target leaves the tree (what data_filter does for tar)."""
    target = target.replace("\\", "/")
    if target.startswith("/") or _DRIVE.match(target):
        raise _unsafe(label, name, f"is a link to an absolute path ({target}); {_LINKS}")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if resolved == ".." or resolved.startswith("../"):
        raise _unsafe(label, name, f"is a link to {target}, outside the archive; {_LINKS}")


class _NameBook:
    """Regular-file names seen so far: refuses duplicates and file/folder clashes ('a' and 'a/b')."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._files: set[str] = set()
        self._folders: set[str] = set()
        self._folded: dict[str, str] = {}  # case-folded name -> the name first seen

    def add(self, name: str, raw: str) -> None:
        if name in self._files:
            raise _unsafe(self._label, raw, "appears twice; ferdata refuses duplicate names (one hides the other)")
        twin = self._folded.setdefault(name.casefold(), name)
        if twin != name:  # on macOS and Windows one would overwrite the other in the workspace
            raise _unsafe(
                self._label, raw, f"differs from {twin!r} only in case; ferdata refuses names that clash on "
                "case-insensitive file systems: rename one of them"
            )
        if name in self._folders:
            raise _unsafe(self._label, raw, "is both a file and a folder; ferdata refuses such archives")
        parts = name.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in self._files:
                raise _unsafe(self._label, raw, f"lies under {folder!r}, which is a file; ferdata refuses this")
            self._folders.add(folder)
        self._files.add(name)


# Members with these extensions are never sniffed for nested archives: images and tables are what
# datasets are made of, and zip-based formats (npz, pt, docx, ...) are files, not folders to open.
_NOT_EXPANDED = frozenset(
    (
        ".jpg .jpeg .png .bmp .gif .webp .tif .tiff .ppm .pgm .pbm .ico .heic "
        ".csv .tsv .txt .json .jsonl .md .rst .xml .yaml .yml .toml .html .htm .parquet .arrow .feather "
        ".npy .npz .mat .h5 .hdf5 .pkl .pt .pth .ckpt .onnx .safetensors .keras "
        ".pdf .docx .xlsx .pptx .odt .ods .odp .epub .jar .apk .whl "
        ".mp4 .avi .mov .mkv .webm .wav .mp3 .flac"
    ).split()
)


def _may_be_archive(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() not in _NOT_EXPANDED


# --------------------------------------------------------------------------------------------
# Format sniffing

_SNIFF_BYTES = 512  # one tar header block


def _sniff(head: bytes) -> str | None:
    """'zip', '7z', 'gzip', 'bzip2', 'xz', 'tar', an unsupported format's name, or None."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[:6] == b"7z\xbc\xaf\x27\x1c":
        return "7z"
    if head[:3] == b"\x1f\x8b\x08":
        return "gzip"
    if head[:3] == b"BZh" and head[3:4] in b"123456789" and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):
        return "bzip2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if _looks_like_tar(head):
        return "tar"
    if head[:7] == b"Rar!\x1a\x07\x00" or head[:8] == b"Rar!\x1a\x07\x01\x00":
        return "RAR (unsupported)"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd (unsupported)"
    return None


def _looks_like_tar(head: bytes) -> bool:
    if len(head) < 512:
        return False
    if head[257:262] == b"ustar":
        return True
    try:  # old v7 tar has no magic: a header whose checksum is right is a tar
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _read_head(stream: BinaryIO, n: int = _SNIFF_BYTES) -> bytes:
    parts = []
    while n > 0:
        part = stream.read(n)
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


# --------------------------------------------------------------------------------------------
# Counting and guarding


class _CountingFile(io.FileIO):
    """A file whose reads are counted: the compressed bytes consumed, for the ratio check."""

    def __init__(self, path: Path, sink: _Counter) -> None:
        super().__init__(path, "rb")
        self._sink = sink
        self.consumed = 0

    def _add(self, n: int) -> None:
        self.consumed += n
        self._sink.value += n

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        self._add(len(data or b""))
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = super().readinto(buffer) or 0
        self._add(n)
        return n

    def readall(self) -> bytes:
        data = super().readall()
        self._add(len(data))
        return data


class _Counter:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


def _size(n: float) -> str:
    for unit, scale in (("GiB", _GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


class _Guard:
    """Counts one member's produced bytes and refuses what looks like a bomb."""

    def __init__(
        self, ctx: _Context, label: str, member: str | None, consumed: Callable[[], int], total: _Counter
    ) -> None:
        # member None: a whole tar stream, held to the ratio and total limits but not the member one
        self._limits = ctx.limits
        self._label = label
        self._member = member
        self._consumed = consumed
        self._total = total
        self.produced = 0
        self.at: str | None = None  # for a whole-stream guard: the member being read

    def count(self, n: int) -> None:
        self.produced += n
        self._total.value += n
        limits = self._limits
        what = f"member {self._member!r}" if self._member is not None else f"its content (at member {self.at!r})"
        if self._member is not None and self.produced > limits.max_member_bytes:
            raise UnsafeArchiveError(
                f"{self._label}: {what} expands beyond {_size(limits.max_member_bytes)}, like a decompression "
                f"bomb; if you trust this archive, raise Limits.max_member_bytes"
            )
        if self._total.value > limits.max_total_bytes:
            raise UnsafeArchiveError(
                f"{self._label}: more than {limits.max_total_bytes / 2**30:.3g} GiB read in total (at {what}), like a "
                f"decompression bomb; if you trust this archive, raise the limit with --max-total-gb"
            )
        if self.produced >= limits.min_ratio_bytes and self.produced > limits.max_ratio * max(self._consumed(), 1):
            raise UnsafeArchiveError(
                f"{self._label}: {what} expands more than {limits.max_ratio:g} times its compressed size, like a "
                f"decompression bomb; if you trust this archive, raise the limit with --max-ratio"
            )


class _MemberStream(io.RawIOBase):
    """A member's bytes: counted by its guard, library errors turned into one-line ArchiveErrors."""

    def __init__(self, raw: BinaryIO, guard: _Guard | None, on_error: Callable[[BaseException], FerdataError]) -> None:
        self._raw = raw
        self._guard = guard
        self._on_error = on_error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        try:
            data = self._raw.read(len(buffer))
        except FerdataError:
            raise
        except _library_errors() as exc:
            raise self._on_error(exc) from None
        n = len(data)
        buffer[:n] = data
        if self._guard is not None:
            self._guard.count(n)
        return n

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._raw.close()
        super().close()


def _buffered(stream: io.RawIOBase) -> BinaryIO:
    return io.BufferedReader(stream, buffer_size=_CHUNK)  # type: ignore[return-value]


def _read_all(stream: BinaryIO) -> bytes:
    parts = []
    while True:
        part = stream.read(_CHUNK)
        if not part:
            return b"".join(parts)
        parts.append(part)


_LIBRARY_ERRORS: tuple[type[BaseException], ...] | None = None


def _library_errors() -> tuple[type[BaseException], ...]:
    """What the archive libraries raise for damaged input (not bugs such as TypeError)."""
    global _LIBRARY_ERRORS
    if _LIBRARY_ERRORS is None:
        import lzma
        import zipfile

        import py7zr.exceptions
        import pyzipper

        _LIBRARY_ERRORS = (
            OSError, EOFError, zlib.error, lzma.LZMAError, tarfile.TarError, zipfile.BadZipFile,
            pyzipper.BadZipFile, NotImplementedError, RuntimeError, py7zr.exceptions.ArchiveError,
            py7zr.exceptions.PasswordRequired,
        )  # fmt: skip
    return _LIBRARY_ERRORS


def _damaged(label: str, member: str | None, exc: BaseException) -> ArchiveError:
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


# --------------------------------------------------------------------------------------------
# The context shared by a tree and the archives nested in it


class _Context:
    def __init__(self, limits: Limits, password: PasswordProvider | None, scratch: Path | None) -> None:
        self.limits = limits
        self.total = _Counter()  # bytes handed out by every tree in this context
        self.raw_read = _Counter()  # bytes read from disk by every tree in this context
        self._provider = password
        self._secret: Secret | None = None
        self.scratch_dir = scratch
        self._spool_dir: Path | None = None
        self._trees: list[Tree] = []
        self.closed = False

    def secret(self, label: str) -> Secret:
        """The password, asked once (lazily) and reused for every archive in the tree."""
        if self._secret is None:
            if self._provider is None:
                raise PasswordError(f"{label} is encrypted: {_PASSWORD_HINT}")
            provider, self._provider = self._provider, None  # called at most once, even if it fails
            try:
                self._secret = provider()
            except _NoPasswordAvailable:
                raise PasswordError(f"{label} is encrypted: {_PASSWORD_HINT}") from None
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

    path: Path

    def __init__(self, path: Path, label: str, ctx: _Context) -> None:
        self.path = path
        self.label = label  # how messages name this tree: the path, or 'outer.zip/inner.tar.gz'
        self._ctx = ctx
        self._members: dict[str, Member] = {}
        ctx.register(self)

    # -- public API ---------------------------------------------------------------------------

    def members(self) -> list[Member]:
        """Regular files only, in archive order, OS junk filtered, nested archives expanded."""
        return list(self._members.values())

    def read(self, name: str) -> bytes:
        """One whole member, guarded by the limits."""
        with self.open(name) as stream:
            return _read_all(stream)

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
                yield name, _read_all(stream)

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

    def _iter_open(self, names: list[str]) -> Iterator[tuple[str, BinaryIO]]:
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

    def _guard(self, member: str, consumed: Callable[[], int]) -> _Guard:
        return _Guard(self._ctx, self.label, member, consumed, self._ctx.total)

    def _check_declared(self, name: str) -> None:
        size = self._members[name].size
        if size is not None and size > self._ctx.limits.max_member_bytes:
            raise UnsafeArchiveError(
                f"{self.label}: member {name!r} declares {_size(size)}, over the "
                f"{_size(self._ctx.limits.max_member_bytes)} limit; "
                f"if you trust this archive, raise Limits.max_member_bytes"
            )

    def _on_error(self, member: str) -> Callable[[BaseException], FerdataError]:
        return lambda exc: _damaged(self.label, member, exc)


class FolderTree(Tree):
    """A plain folder. Symlinks that resolve outside it are refused; those inside are not listed."""

    def __init__(self, path: Path, label: str, ctx: _Context) -> None:
        super().__init__(path, label, ctx)
        root = os.path.realpath(path)
        book = _NameBook(label)
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
                name = _normalise(rel, label)
                if _is_junk(name):
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
        with _buffered(_MemberStream(counted, guard, self._on_error(name))) as stream:
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

    def __init__(self, raw: BinaryIO, sink: _Counter) -> None:
        self._raw = raw
        self._sink = sink

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._sink.value += len(data)
        return data

    def close(self) -> None:
        self._raw.close()


class ZipTree(Tree):
    """A zip: stored, deflate, bzip2 or lzma; unencrypted, ZipCrypto or WinZip AES (via pyzipper)."""

    def __init__(self, path: Path, label: str, ctx: _Context) -> None:
        import pyzipper

        super().__init__(path, label, ctx)
        self._file = _CountingFile(path, ctx.raw_read)
        try:
            self._zip = pyzipper.AESZipFile(self._file)
            infos = self._zip.infolist()
        except UnicodeDecodeError:  # a name flagged as UTF-8 that is not
            raise ArchiveError(f"{label} has a member name marked UTF-8 that is not UTF-8 text; {_REPACK_UTF8}") from None
        except _library_errors() as exc:
            raise _not_complete(label, "zip", exc) from None
        self._archive_size = os.fstat(self._file.fileno()).st_size
        self._check_overlaps(infos)
        self._infos = {}
        book = _NameBook(label)
        encrypted_member = None
        links = []
        for info in infos:
            name = _normalise(info.orig_filename, label)  # zipfile cuts .filename at a NUL byte
            mode = (info.external_attr >> 16) if info.create_system == 3 else 0
            if not name or info.is_dir() or stat.S_ISDIR(mode):  # is_dir() fails on an empty name
                continue
            if stat.S_ISLNK(mode):
                links.append((name, info))
                continue
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # zipfile writes bare permissions (no type)
                raise _unsafe(label, info.filename, _SPECIAL)
            if _is_junk(name):
                continue
            book.add(name, info.filename)
            self._infos[name] = info
            self._members[name] = Member(name, info.file_size)
            if info.flag_bits & 0x1 and encrypted_member is None:
                encrypted_member = name
        if encrypted_member is not None or any(info.flag_bits & 0x1 for _, info in links):
            self._zip.setpassword(ctx.secret(label).reveal().encode("utf-8"))
        if encrypted_member is not None:
            self._check_password(encrypted_member)
        for name, info in links:
            self._check_zip_link(name, info)

    def _check_overlaps(self, infos: list) -> None:
        """Entries sharing compressed bytes are the trick of overlapping zip bombs: refuse them."""
        if not infos:
            return
        ordered = sorted(infos, key=lambda info: info.header_offset)
        ends = [info.header_offset for info in ordered[1:]] + [getattr(self._zip, "start_dir", self._archive_size)]
        for info, next_start in zip(ordered, ends, strict=True):
            if info.header_offset + 30 + info.compress_size > next_start:  # 30: fixed local header
                why = "overlaps the next entry, the mark of an overlapping zip bomb; ferdata refuses such archives"
                raise _unsafe(self.label, info.filename, why)

    def _check_password(self, name: str) -> None:
        """Decrypt the first encrypted member (all of it when small, so that its CRC is checked).

        pyzipper checks the password on open, but ZipCrypto's check byte lets 1 wrong password in
        256 through (AES's verifier 1 in 65536); a wrong key then yields garbage that fails to
        inflate or fails the CRC.
        """
        try:
            with self._zip.open(self._infos[name]) as raw:
                raw.read(4 * _CHUNK)
        except _library_errors():
            raise _wrong_password(self.label, repr(name)) from None

    def _check_zip_link(self, name: str, info) -> None:
        try:
            with self._zip.open(info) as raw:
                target = raw.read(4096).decode("utf-8", "surrogateescape")
        except RuntimeError:
            raise _wrong_password(self.label, repr(name)) from None
        except _library_errors() as exc:
            raise _damaged(self.label, name, exc) from None
        _check_link(self.label, name, target)

    @contextlib.contextmanager
    def _open_one(self, name: str) -> Iterator[BinaryIO]:
        info = self._infos[name]
        try:
            raw = self._zip.open(info)
        except RuntimeError:
            raise _wrong_password(self.label, repr(name)) from None
        except _library_errors() as exc:
            raise _damaged(self.label, name, exc) from None
        guard = self._guard(name, lambda: _zip_consumed(raw, info.compress_size))
        encrypted = bool(info.flag_bits & 0x1)

        def on_error(exc: BaseException) -> FerdataError:
            if encrypted and "CRC" in str(exc):  # ZipCrypto's check byte lets 1 in 256 wrong passwords through
                return PasswordError(
                    f"wrong password for {self.label} (or {name!r} is damaged): {name!r} fails its checksum; "
                    f"pass the right one with --password-env or --password-file"
                )
            return _damaged(self.label, name, exc)

        with _buffered(_MemberStream(raw, guard, on_error)) as stream:
            yield stream

    def _iter_open(self, names: list[str]) -> Iterator[tuple[str, BinaryIO]]:
        for name in sorted(names, key=lambda name: self._infos[name].header_offset):
            with self._open_one(name) as stream:
                yield name, stream

    def _release(self) -> None:
        if hasattr(self, "_zip"):
            self._zip.close()
        self._file.close()


def _zip_consumed(member, whole: int) -> int:
    """Compressed bytes of a zip member that its decompressor has consumed so far.

    The ratio guard divides by this (as the tar and 7z readers divide by the bytes they read), so
    a deflate bomb is stopped after ``Limits.min_ratio_bytes`` of output, not after ``max_ratio``
    times its whole compressed size. zipfile (and pyzipper, its fork) read ahead of the
    decompressor and keep the excess as ``unconsumed_tail``: that part is not counted. A reader
    without these fields is held to the member's whole compressed size ``whole``.
    """
    total = getattr(member, "_orig_compress_left", None)
    left = getattr(member, "_compress_left", None)
    if total is None or left is None:
        return max(1, whole)
    tail = getattr(getattr(member, "_decompressor", None), "unconsumed_tail", b"")
    return total - left - len(tail)


class TarTree(Tree):
    """A tar, plain or compressed with gzip, bzip2 or xz, read as a stream (one pass per read).

    Opening makes one guarded pass that lists the members through PEP 706's ``data_filter``
    and checks every member's bytes against the limits.
    """

    # data_filter needs a destination; nothing is ever written there
    _FILTER_DEST = os.path.join(os.sep, "ferdata-archive-check")

    def __init__(self, path: Path, label: str, ctx: _Context, compression: str) -> None:
        super().__init__(path, label, ctx)
        self._compression = compression
        book = _NameBook(label)
        pass_total = _Counter()  # the listing pass has its own total: it reads the content once
        current: str | None = None
        try:
            with self._stream() as (tar, counting, stream_guard):
                for info in tar:
                    current = stream_guard.at = info.name
                    name = _normalise(info.name, label)
                    try:
                        tarfile.data_filter(info, self._FILTER_DEST)
                    except tarfile.FilterError as exc:
                        raise _unsafe(label, info.name, f"is refused ({exc}); {_OUTSIDE}") from None
                    if not info.isreg() or not name:
                        continue  # folders, and links that stay inside: not listed
                    if _is_junk(name):
                        continue
                    book.add(name, info.name)
                    self._members[name] = Member(name, info.size)
                    start = counting.consumed
                    guard = _Guard(ctx, label, name, lambda start=start: counting.consumed - start, pass_total)
                    member = tar.extractfile(info)
                    assert member is not None  # a regular file always has data
                    while chunk := member.read(_CHUNK):
                        guard.count(len(chunk))
        except FerdataError:
            raise
        except _library_errors() as exc:
            raise _damaged(label, current, exc) from None

    @contextlib.contextmanager
    def _stream(self) -> Iterator[tuple[tarfile.TarFile, _CountingFile, _Guard]]:
        counting = _CountingFile(self.path, self._ctx.raw_read)
        with counting, _decompressing(counting, self._compression) as plain:
            # the whole stream is guarded too: tar headers (pax, long names) are read into memory
            guard = _Guard(self._ctx, self.label, None, lambda: counting.consumed, _Counter())
            stream = _MemberStream(plain, guard, lambda exc: _damaged(self.label, None, exc))
            # tarfile pulls 10 KiB records: a buffer keeps them off the guarded, decompressing layers
            with tarfile.open(fileobj=_buffered(stream), mode="r|") as tar:  # type: ignore[call-overload]
                yield tar, counting, guard

    def _iter_open(self, names: list[str]) -> Iterator[tuple[str, BinaryIO]]:
        wanted = set(names)
        with self._stream() as (tar, counting, stream_guard):
            for info in tar:
                stream_guard.at = info.name
                if not info.isreg():
                    continue
                name = _normalise(info.name, self.label)
                if name not in wanted:
                    continue
                wanted.discard(name)
                start = counting.consumed
                guard = self._guard(name, lambda start=start: counting.consumed - start)
                raw = tar.extractfile(info)
                assert raw is not None
                with _buffered(_MemberStream(raw, guard, self._on_error(name))) as stream:
                    yield name, stream
                if not wanted:
                    return  # the rest of the archive is never decompressed
        if wanted:
            raise ArchiveError(
                f"{self.label} changed while it was being read ({sorted(wanted)[0]!r} is gone); open it again"
            )


@contextlib.contextmanager
def _decompressing(raw: BinaryIO, compression: str) -> Iterator[BinaryIO]:
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


_COMPRESSED_SUFFIXES = {"gzip": (".gz", ".gzip"), "bzip2": (".bz2", ".bz"), "xz": (".xz",), "none": ()}
_PLAIN_TABLES = (".csv", ".tsv")  # given directly, such a file is a tree of one member


class CompressedFileTree(Tree):
    """A single compressed file (``fer2013.csv.gz``): one member, named without the suffix."""

    def __init__(self, path: Path, label: str, ctx: _Context, compression: str, name_hint: str) -> None:
        super().__init__(path, label, ctx)
        self._compression = compression
        base = posixpath.basename(name_hint.replace("\\", "/")) or "content"
        for suffix in _COMPRESSED_SUFFIXES[compression]:
            if base.lower().endswith(suffix) and len(base) > len(suffix):
                base = base[: -len(suffix)]
                break
        name = _normalise(base, label) or "content"
        self._members[name] = Member(name, None)  # gzip's size field is mod 2**32: not worth trusting

    def _iter_open(self, names: list[str]) -> Iterator[tuple[str, BinaryIO]]:
        for name in names:
            counting = _CountingFile(self.path, self._ctx.raw_read)
            with counting, _decompressing(counting, self._compression) as plain:
                guard = self._guard(name, lambda counting=counting: counting.consumed)
                with _buffered(_MemberStream(plain, guard, self._on_error(name))) as stream:
                    yield name, stream


class SevenZipTree(Tree):
    """A 7z (via py7zr), solid or not, optionally with a password and encrypted headers."""

    def __init__(self, path: Path, label: str, ctx: _Context) -> None:
        import py7zr.exceptions

        super().__init__(path, label, ctx)
        self._encrypted = False
        self._parsed: tuple[py7zr.SevenZipFile, _CountingFile] | None = None  # reused between passes
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
            raise _not_complete(label, "7z", exc) from None
        if needs_password:
            ctx.secret(label)
            self._encrypted = True
            try:
                with self._archive() as (archive, _):
                    self._list(archive)
            except FerdataError:
                raise
            except Exception as exc:
                if header_encrypted:  # a wrong key turns the header into noise: any parse error may follow
                    raise _wrong_password(label, "the archive's header") from None
                raise _damaged(label, None, exc) from None
            if not header_encrypted and self._first_data is not None:
                self._check_password(*self._first_data)
        if self._links:
            self._check_links(self._links)

    def _list(self, archive: py7zr.SevenZipFile) -> None:
        from py7zr.helpers import get_sanitized_output_path

        label = self.label
        book = _NameBook(label)
        for file in archive.files:
            name = _normalise(file.filename, label)
            fmt = file.st_fmt
            if file.is_directory or not name:
                continue
            if file.is_symlink or file.is_junction:
                self._links.append((name, file.filename))
                continue
            if file.is_socket or (fmt is not None and fmt not in (stat.S_IFREG, 0)):
                raise _unsafe(label, file.filename, _SPECIAL)
            if _is_junk(name):
                continue
            book.add(name, file.filename)
            self._members[name] = Member(name, file.uncompressed)
            self._raw_names[name] = file.filename
            self._by_output[get_sanitized_output_path(file.filename, None).as_posix()] = name
            if self._first_data is None and not file.emptystream:
                self._first_data = (name, file.uncompressed)

    @contextlib.contextmanager
    def _archive(self) -> Iterator[tuple[py7zr.SevenZipFile, _CountingFile]]:
        """A fresh parse of the archive (parsing an encrypted header costs a key derivation)."""
        py7zr = _py7zr()
        counting = _CountingFile(self.path, self._ctx.raw_read)
        with counting:
            # a file object (not a path) also keeps py7zr from decompressing folders in parallel threads
            if self._encrypted:
                archive = py7zr.SevenZipFile(counting, password=self._ctx.secret(self.label).reveal())
            else:
                archive = py7zr.SevenZipFile(counting)
            with archive:
                yield archive, counting

    @contextlib.contextmanager
    def _extractor(self) -> Iterator[tuple[py7zr.SevenZipFile, _CountingFile]]:
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
                stream.read(-1 if size <= 4 * _CHUNK else _CHUNK)
        except UnsafeArchiveError:
            raise
        except ArchiveError:
            raise _wrong_password(self.label, repr(name)) from None

    def _check_links(self, links: list[tuple[str, str]]) -> None:
        wanted = {raw: name for name, raw in links}
        from py7zr.helpers import get_sanitized_output_path

        by_output = {get_sanitized_output_path(raw, None).as_posix(): name for raw, name in wanted.items()}
        pump = _SevenZipPump(self, list(wanted), names=by_output, link_limit=4096)
        with contextlib.closing(pump.streams()) as streams:
            for name, stream in streams:
                _check_link(self.label, name, stream.read(4096).decode("utf-8", "surrogateescape"))

    def _iter_open(self, names: list[str]) -> Iterator[tuple[str, BinaryIO]]:
        pump = _SevenZipPump(self, [self._raw_names[name] for name in names])
        with contextlib.closing(pump.streams()) as streams:
            for name, stream in streams:
                with _buffered(stream) as buffered:  # type: ignore[arg-type]
                    yield name, buffered


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
    return _CHUNK


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
            raise _damaged(self._tree.label, self._current, exc)  # type: ignore[arg-type]
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

    def __init__(self, pump: _SevenZipPump, counting: _CountingFile) -> None:
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

    def __init__(self, pump: _SevenZipPump, guard: _Guard | None, limit: int | None) -> None:
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
        for start in range(0, len(view), _CHUNK):
            self._pump._offer(("data", view[start : start + _CHUNK]))
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


class NestedTree(Tree):
    """A tree whose archive members are replaced, in place, by the members of those archives."""

    def __init__(self, outer: Tree, inner: dict[str, Tree]) -> None:
        super().__init__(outer.path, outer.label, outer._ctx)
        self._outer = outer
        self._inner = inner
        self._route: dict[str, tuple[Tree, str]] = {}
        for member in outer.members():
            tree = inner.get(member.name)
            if tree is None:
                self._members[member.name] = member
                self._route[member.name] = (outer, member.name)
                continue
            for inner_member in tree.members():
                name = f"{member.name}/{inner_member.name}"
                self._members[name] = Member(name, inner_member.size)
                self._route[name] = (tree, inner_member.name)

    def _open_one(self, name: str) -> AbstractContextManager[BinaryIO]:
        tree, inner_name = self._route[name]
        return tree._open_one(inner_name)

    def _iter_open(self, names: list[str]) -> Iterator[tuple[str, BinaryIO]]:
        groups: dict[int, tuple[Tree, list[str]]] = {}
        for name in names:  # one pass per archive: group the names by the tree that holds them
            tree, inner_name = self._route[name]
            groups.setdefault(id(tree), (tree, []))[1].append(inner_name)
        for tree, inner_names in groups.values():
            prefix = "" if tree is self._outer else next(k for k, v in self._inner.items() if v is tree) + "/"
            with contextlib.closing(tree._iter_open(inner_names)) as streams:
                for inner_name, stream in streams:
                    yield prefix + inner_name, stream


# --------------------------------------------------------------------------------------------
# Opening


def open_tree(
    path: Path, *, password: PasswordProvider | None = None, limits: Limits = Limits(), scratch: Path | None = None
) -> Tree:
    """Open a folder or an archive (format sniffed from magic bytes, not the extension:
    zip, 7z, gzip/bzip2/xz-compressed or plain tar, and a single-file .gz like fer2013.csv.gz).

    Members that are themselves archives (by magic bytes) are expanded in place, recursively up to
    max_depth, spooling the inner archive to a temporary file under `scratch` (default: a temp dir)
    -- never extracting a whole archive to disk. The password is asked only if needed, once, and
    reused for nested archives. Wrong password is detected early (first encrypted member / header):
    PasswordError("wrong password for <archive>: ... pass the one you received with --password-env").
    Unsupported format -> ArchiveError naming the supported ones; truncated/corrupt -> ArchiveError
    naming the archive (and member) and saying the download is probably incomplete.
    """
    path = Path(path)
    ctx = _Context(limits, password, scratch)
    try:
        return _open_any(path, str(path), path.name, ctx, depth=0)
    except BaseException:
        ctx.close()
        raise


def _open_any(path: Path, label: str, name_hint: str, ctx: _Context, depth: int) -> Tree:
    if path.is_dir():
        return _expand(FolderTree(path, label, ctx), ctx, depth)
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except FileNotFoundError:
        raise ArchiveError(f"{label} does not exist: check the path") from None
    except OSError as exc:
        raise ArchiveError(f"{label} cannot be read ({exc.strerror})") from None
    kind = _sniff(head)
    if kind == "zip":
        tree: Tree = ZipTree(path, label, ctx)
    elif kind == "7z":
        tree = SevenZipTree(path, label, ctx)
    elif kind == "tar":
        tree = TarTree(path, label, ctx, "none")
    elif kind in ("gzip", "bzip2", "xz"):
        if _looks_like_tar(_peek_decompressed(path, label, kind)):
            tree = TarTree(path, label, ctx, kind)
        else:
            tree = CompressedFileTree(path, label, ctx, kind, name_hint)
    elif kind is None and depth == 0 and path.suffix.lower() in _PLAIN_TABLES:
        tree = CompressedFileTree(path, label, ctx, "none", name_hint)  # a bare fer2013.csv: one member
    else:
        found = f"it looks like {kind}" if kind else "its first bytes match no archive format"
        raise ArchiveError(f"{label} is not an archive ferdata can read ({found}); supported: {_SUPPORTED}")
    return _expand(tree, ctx, depth)


def _peek_decompressed(path: Path, label: str, compression: str) -> bytes:
    try:
        with open(path, "rb") as raw, _decompressing(raw, compression) as plain:
            return _read_head(plain)
    except _library_errors() as exc:
        raise _damaged(label, None, exc) from None


def _expand(tree: Tree, ctx: _Context, depth: int) -> Tree:
    """Replace the members that are archives (by magic bytes) by trees of their own."""
    candidates = [m.name for m in tree.members() if _may_be_archive(m.name)]
    if not candidates:
        return tree
    found: dict[str, Path] = {}  # member -> its own file (folders) or a spooled copy
    with contextlib.closing(tree._iter_open(candidates)) as streams:
        for name, buffered in streams:
            stream = getattr(buffered, "raw", buffered)  # unbuffered: sniffing reads 512 bytes, not 1 MiB
            head = _read_head(stream)
            kind = _sniff(head)
            if kind not in ("zip", "7z", "tar", "gzip", "bzip2", "xz"):
                continue
            if depth + 1 > ctx.limits.max_depth:
                raise UnsafeArchiveError(
                    f"{tree.label}: member {name!r} is an archive nested more than {ctx.limits.max_depth} deep, "
                    f"the mark of a nested zip bomb; ferdata refuses deeper nesting (Limits.max_depth)"
                )
            local = tree._local_path(name)
            if local is not None:
                found[name] = local
                continue
            # a full disk or a read-only scratch folder is one line, not a traceback
            scratch = ctx.scratch_dir if ctx.scratch_dir is not None else tempfile.gettempdir()
            with disk_errors(f"{scratch} (a temporary copy of {tree.label}/{name})"):
                spool = ctx.spool_path()
                with open(spool, "wb") as out:  # noqa: PTH123
                    out.write(head)
                    shutil.copyfileobj(stream, out, _CHUNK)
            found[name] = spool
    if not found:
        return tree
    inner = {name: _open_any(file, f"{tree.label}/{name}", name, ctx, depth + 1) for name, file in found.items()}
    return NestedTree(tree, inner)

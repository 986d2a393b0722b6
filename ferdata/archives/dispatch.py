"""Opening: which reader a path needs, from its first bytes (never its extension), and the
registry of readers, :data:`FORMATS`.

::

    open_tree(path)
      ├─ a folder                       -> FolderTree
      └─ a file: its first 512 bytes
           PK\\x03\\x04 ...               -> ZipTree
           7z\\xbc\\xaf\\x27\\x1c           -> SevenZipTree
           gzip / bzip2 / xz magic     -> TarTree (when the decompressed start is a tar header)
                                          or CompressedFileTree (one member)
           a tar header                -> TarTree
           none, and named .csv/.tsv   -> CompressedFileTree (a bare table, one member)
           RAR, zstd, anything else    -> ArchiveError naming the supported formats
    then every member that is an archive by its first bytes is opened the same way (nested.py)

Adding a format is a module with a :class:`~.base.Tree` subclass, an entry in :data:`FORMATS`,
and its magic bytes in :func:`sniff`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from ferdata.errors import ArchiveError, UnsafeArchiveError
from ferdata.fsutil import disk_errors

from .base import CHUNK, Context, Tree, damaged, library_errors
from .compressed import COMPRESSIONS, PLAIN_TABLES, CompressedFileTree, decompressing
from .folders import FolderTree
from .limits import Limits, raise_hint
from .nested import NestedTree, may_be_archive
from .passwords import Password, as_provider
from .sevenzip import SevenZipTree
from .tars import TarTree, looks_like_tar
from .zips import ZipTree

__all__ = ["FORMATS", "open_tree", "sniff"]

# format -> its reader, in the order the list of supported formats names them
FORMATS: dict[str, type[Tree]] = {
    cls.format: cls for cls in (ZipTree, SevenZipTree, TarTree, CompressedFileTree, FolderTree)
}
_SUPPORTED = ", ".join(cls.described for cls in FORMATS.values())
_ARCHIVES = ("zip", "7z", "tar", *COMPRESSIONS)  # what sniff() finds that opens as a tree

_SNIFF_BYTES = 512  # one tar header block


def sniff(head: bytes) -> str | None:
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
    if looks_like_tar(head):
        return "tar"
    if head[:7] == b"Rar!\x1a\x07\x00" or head[:8] == b"Rar!\x1a\x07\x01\x00":
        return "RAR (unsupported)"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd (unsupported)"
    return None


def _read_head(stream: BinaryIO, n: int = _SNIFF_BYTES) -> bytes:
    parts = []
    while n > 0:
        part = stream.read(n)
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def open_tree(
    path: Path | str,
    *,
    password: Password | None = None,
    limits: Limits = Limits(),
    scratch: Path | None = None,
) -> Tree:
    """Open a folder or an archive (format sniffed from magic bytes, not the extension:
    zip, 7z, gzip/bzip2/xz-compressed or plain tar, and a single-file .gz like fer2013.csv.gz).

    Members that are themselves archives (by magic bytes) are expanded in place, recursively up to
    max_depth, spooling the inner archive to a temporary file under `scratch` (default: a temp dir)
    -- never extracting a whole archive to disk. ``password`` is a str, bytes, a
    :class:`~.passwords.Secret`, or a function returning one (asked only if needed, once, and
    reused for nested archives). A wrong password is detected early (first encrypted member /
    header): PasswordError("wrong password for <archive>: ..."). Unsupported format ->
    ArchiveError naming the supported ones; truncated/corrupt -> ArchiveError naming the archive
    (and member) and saying the download is probably incomplete.
    """
    path = Path(path)
    ctx = Context(limits, as_provider(password), scratch)
    del password  # the value itself is not kept in this frame (a traceback with locals shows it)
    try:
        return _open_any(path, str(path), path.name, ctx, depth=0)
    except BaseException:
        ctx.close()
        raise


def _open_any(path: Path, label: str, name_hint: str, ctx: Context, depth: int) -> Tree:
    if path.is_dir():
        folder = FORMATS["folder"].from_path(path, label, ctx, compression="none", name_hint=name_hint)
        return _expand(folder, ctx, depth)
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except FileNotFoundError:
        raise ArchiveError(f"{label} does not exist: check the path") from None
    except OSError as exc:
        raise ArchiveError(f"{label} cannot be read ({exc.strerror})") from None
    kind = sniff(head)
    if kind in ("zip", "7z", "tar"):
        fmt, compression = kind, "none"
    elif kind in COMPRESSIONS:  # a compressed tar, or one compressed file
        fmt = "tar" if looks_like_tar(_peek_decompressed(path, label, kind)) else "compressed"
        compression = kind
    elif kind is None and depth == 0 and path.suffix.lower() in PLAIN_TABLES:
        fmt, compression = "compressed", "none"  # a bare fer2013.csv: one member
    else:
        found = f"it looks like {kind}" if kind else "its first bytes match no archive format"
        raise ArchiveError(f"{label} is not an archive ferdata can read ({found}); supported: {_SUPPORTED}")
    tree = FORMATS[fmt].from_path(path, label, ctx, compression=compression, name_hint=name_hint)
    return _expand(tree, ctx, depth)


def _peek_decompressed(path: Path, label: str, compression: str) -> bytes:
    try:
        with open(path, "rb") as raw, decompressing(raw, compression) as plain:
            return _read_head(plain)
    except library_errors() as exc:
        raise damaged(label, None, exc) from None


def _expand(tree: Tree, ctx: Context, depth: int) -> Tree:
    """Replace the members that are archives (by magic bytes) by trees of their own."""
    candidates = [m.name for m in tree.members() if may_be_archive(m.name)]
    if not candidates:
        return tree
    found: dict[str, Path] = {}  # member -> its own file (folders) or a spooled copy
    with contextlib.closing(tree._iter_open(candidates)) as streams:
        for name, buffered in streams:
            stream = getattr(buffered, "raw", buffered)  # unbuffered: sniffing reads 512 bytes, not 1 MiB
            head = _read_head(stream)
            kind = sniff(head)
            if kind not in _ARCHIVES:
                continue
            if depth + 1 > ctx.limits.max_depth:
                raise UnsafeArchiveError(
                    f"{tree.label}: member {name!r} is an archive nested more than {ctx.limits.max_depth} deep, "
                    f"the mark of a nested zip bomb; ferdata refuses deeper nesting ({raise_hint('max_depth')})"
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
                    shutil.copyfileobj(stream, out, CHUNK)
            found[name] = spool
    if not found:
        return tree
    inner = {name: _open_any(file, f"{tree.label}/{name}", name, ctx, depth + 1) for name, file in found.items()}
    return NestedTree(tree, inner)

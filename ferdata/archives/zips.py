"""Zip: stored, deflate, bzip2 or lzma (zipfile); unencrypted, ZipCrypto or WinZip AES-256 (pyzipper).

::

    a.zip
    ├── local header + data   MSD-E/anger/s01.jpg      members() in the order stored on disk;
    ├── local header + data   Paired_files.txt         iter_read() reads them in that order
    └── central directory     (names, sizes, flags: read once when the tree is opened)

What it guarantees, beyond :mod:`.names`:

* Entries whose compressed bytes overlap (the trick of overlapping zip bombs) are refused.
* Symlinks are read (a few bytes) only to check that their target stays inside; device entries
  are refused; names without the UTF-8 flag are cp437, as the zip specification says.
* An encrypted archive asks for the password once, when it is opened, and checks it on the first
  encrypted member, decrypted whole when small so that its CRC is checked: ZipCrypto's check byte
  alone lets 1 wrong password in 256 through.
* The ratio guard divides by the compressed bytes the decompressor has *consumed*, not the
  read-ahead it keeps aside (:func:`_zip_consumed`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import BinaryIO

from ferdata.errors import ArchiveError, FerdataError, PasswordError

from .base import CHUNK, Context, Member, MemberStream, Tree, buffered, damaged, library_errors, not_complete, read_all
from .limits import CountingFile
from .names import REPACK_UTF8, SPECIAL, NameBook, check_link, is_junk, normalise, unsafe
from .passwords import wrong_password

__all__ = ["ZipTree"]


class ZipTree(Tree):
    """A zip: stored, deflate, bzip2 or lzma; unencrypted, ZipCrypto or WinZip AES (via pyzipper)."""

    format = "zip"
    described = "zip (incl. ZipCrypto/AES)"

    def __init__(self, path: Path, label: str, ctx: Context) -> None:
        import zipfile

        super().__init__(path, label, ctx)
        self._file = CountingFile(path, ctx.raw_read)
        try:
            # The standard library's reader for a zip without encrypted entries (pyzipper is its fork,
            # plus ZipCrypto and AES, and importing it costs more than listing a small zip); pyzipper
            # for any other. Both read the same central directory, so the listing is the same.
            self._zip = zipfile.ZipFile(self._file)
            infos = self._zip.infolist()
            if any(info.flag_bits & 0x1 for info in infos):
                import pyzipper

                self._zip.close()  # leaves self._file open: it was handed in
                self._zip = pyzipper.AESZipFile(self._file)
                infos = self._zip.infolist()
        except UnicodeDecodeError:  # a name flagged as UTF-8 that is not
            raise ArchiveError(
                f"{label} has a member name marked UTF-8 that is not UTF-8 text; {REPACK_UTF8}"
            ) from None
        except library_errors() as exc:
            raise not_complete(label, "zip", exc) from None
        self._archive_size = os.fstat(self._file.fileno()).st_size
        self._check_overlaps(infos)
        self._infos = {}
        book = NameBook(label)
        encrypted_member = None
        links = []
        for info in infos:
            name = normalise(info.orig_filename, label)  # zipfile cuts .filename at a NUL byte
            mode = (info.external_attr >> 16) if info.create_system == 3 else 0
            if not name or info.is_dir() or stat.S_ISDIR(mode):  # is_dir() fails on an empty name
                continue
            if stat.S_ISLNK(mode):
                links.append((name, info))
                continue
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # zipfile writes bare permissions (no type)
                raise unsafe(label, info.filename, SPECIAL)
            if is_junk(name):
                continue
            book.add(name, info.filename)
            self._infos[name] = info
            self._members[name] = Member(name, info.file_size)
            if info.flag_bits & 0x1 and encrypted_member is None:
                encrypted_member = name
        if encrypted_member is not None or any(info.flag_bits & 0x1 for _, info in links):
            # a str is encrypted as UTF-8; bytes as given (a password typed on an old Windows code page)
            self._zip.setpassword(ctx.secret(label).reveal_bytes())
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
                raise unsafe(self.label, info.filename, why)

    def _check_password(self, name: str) -> None:
        """Decrypt the first encrypted member (all of it when small, so that its CRC is checked).

        pyzipper checks the password on open, but ZipCrypto's check byte lets 1 wrong password in
        256 through (AES's verifier 1 in 65536); a wrong key then yields garbage that fails to
        inflate or fails the CRC.
        """
        try:
            with self._zip.open(self._infos[name]) as raw:
                raw.read(4 * CHUNK)
        except library_errors():
            raise wrong_password(self.label, repr(name)) from None

    def _check_zip_link(self, name: str, info) -> None:
        try:
            with self._zip.open(info) as raw:
                target = raw.read(4096).decode("utf-8", "surrogateescape")
        except RuntimeError:
            raise wrong_password(self.label, repr(name)) from None
        except library_errors() as exc:
            raise damaged(self.label, name, exc) from None
        check_link(self.label, name, target)

    def _open_raw(self, name: str):
        """The zip library's stream of one member, its guard, and how its read errors read."""
        info = self._infos[name]
        try:
            raw = self._zip.open(info)
        except RuntimeError:
            raise wrong_password(self.label, repr(name)) from None
        except library_errors() as exc:
            raise damaged(self.label, name, exc) from None
        guard = self._guard(name, lambda: _zip_consumed(raw, info.compress_size))
        encrypted = bool(info.flag_bits & 0x1)

        def on_error(exc: BaseException) -> FerdataError:
            if encrypted and "CRC" in str(exc):  # ZipCrypto's check byte lets 1 in 256 wrong passwords through
                return PasswordError(
                    f"wrong password for {self.label} (or {name!r} is damaged): {name!r} fails its checksum; "
                    f"pass the right one with password="
                )
            return damaged(self.label, name, exc)

        return raw, guard, on_error

    @contextlib.contextmanager
    def _open_one(self, name: str) -> Iterator[BinaryIO]:
        raw, guard, on_error = self._open_raw(name)
        with buffered(MemberStream(raw, guard, on_error)) as stream:
            yield stream

    def _iter_open(self, names: list[str]) -> Generator[tuple[str, BinaryIO], None, None]:
        for name in sorted(names, key=lambda name: self._infos[name].header_offset):
            with self._open_one(name) as stream:
                yield name, stream

    def _iter_read(self, wanted: list[str]) -> Iterator[tuple[str, bytes]]:
        """Whole members, in the archive's order, read through an unbuffered guarded stream."""
        for name in sorted(wanted, key=lambda name: self._infos[name].header_offset):
            with MemberStream(*self._open_raw(name)) as stream:
                data = read_all(stream)
            yield name, data

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
    total = getattr(
        member, "_orig_compress_left", whole
    )  # the standard library's keeps no copy: unencrypted, it is ``whole``
    left = getattr(member, "_compress_left", None)
    if left is None:
        return max(1, whole)
    tail = getattr(getattr(member, "_decompressor", None), "unconsumed_tail", b"")
    return total - left - len(tail)

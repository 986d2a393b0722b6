"""Builders of tiny archives for the tests: every format ferdata reads, and hostile ones.

Each builder writes one archive at ``path`` from ``files`` (member name -> bytes) and returns the
path. Info-ZIP's ``zip -P`` writes ZipCrypto (as the archives researchers receive), pyzipper
writes WinZip AES, py7zr writes 7z (solid: all members in one compressed stream).
"""

from __future__ import annotations

import copy
import io
import shutil
import stat
import subprocess
import tarfile
import warnings
import zipfile
from pathlib import Path

import py7zr
import pyzipper

MiB = 2**20


def zip_archive(path: Path, files: dict[str, bytes], *, compression: str = "deflate") -> Path:
    method = {"deflate": zipfile.ZIP_DEFLATED, "stored": zipfile.ZIP_STORED}[compression]
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def zipcrypto_archive(path: Path, files: dict[str, bytes], password: str) -> Path:
    """ZipCrypto via Info-ZIP's `zip -P`, from a scratch folder next to the archive."""
    source = path.with_name(path.name + ".src")
    for name, data in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    path.unlink(missing_ok=True)
    subprocess.run(["zip", "-q", "-r", "-P", password, str(path.resolve()), *files], cwd=source, check=True)
    shutil.rmtree(source)
    return path


def aes_zip_archive(path: Path, files: dict[str, bytes], password: str) -> Path:
    with pyzipper.AESZipFile(path, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as archive:
        archive.setpassword(password.encode())
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def sevenzip_archive(
    path: Path, files: dict[str, bytes], *, password: str | None = None, encrypt_header: bool = False
) -> Path:
    with py7zr.SevenZipFile(path, "w", password=password, header_encryption=encrypt_header) as archive:
        for name, data in files.items():
            archive.writestr(data, name)
    return path


def tar_archive(path: Path, files: dict[str, bytes], *, compression: str = "") -> Path:
    """compression: '' (plain tar), 'gz', 'bz2' or 'xz'."""
    with tarfile.open(path, f"w:{compression}") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def gz_file(path: Path, data: bytes) -> Path:
    import gzip

    path.write_bytes(gzip.compress(data))
    return path


def folder(path: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


# -- hostile archives ------------------------------------------------------------------------


def zip_raw_names(path: Path, names: list[str]) -> Path:
    """A zip whose members have exactly these names (zipfile does not sanitise when writing)."""
    with zipfile.ZipFile(path, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" is the point of some of these
        for name in names:
            archive.writestr(zipfile.ZipInfo(name), b"payload")
    return path


def zip_symlink(path: Path, name: str, target: str, files: dict[str, bytes] | None = None) -> Path:
    """A zip holding a Unix symlink member, as `zip -y` stores it: mode S_IFLNK, data = target."""
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in (files or {}).items():
            archive.writestr(member, data)
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, target)
    return path


def tar_members(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], *, compression: str = "") -> Path:
    """A tar of arbitrary TarInfo headers (links, devices, duplicates, escaping names)."""
    with tarfile.open(path, f"w:{compression}") as archive:
        for info, data in members:
            if info.isreg():
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                archive.addfile(info)
    return path


def tar_info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def sevenzip_raw_names(path: Path, files: dict[str, bytes]) -> Path:
    """A 7z with unchecked member names: py7zr's public writestr refuses '../x', its helper does not."""
    with py7zr.SevenZipFile(path, "w") as archive:
        for name, data in files.items():
            archive._writestr(data, name)
    return path


def overlapping_zip(path: Path, data: bytes) -> Path:
    """Two central-directory entries sharing one member's bytes: the trick of overlapping zip bombs."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.csv", data)
        twin = copy.copy(archive.getinfo("a.csv"))
        twin.filename = twin.orig_filename = "b.csv"
        archive.filelist.append(twin)
        archive.NameToInfo["b.csv"] = twin
    return path


def sevenzip_symlink(path: Path, name: str, target: str, files: dict[str, bytes]) -> Path:
    """A 7z holding regular files and one symlink member (py7zr stores the link's target as its data)."""
    source = path.with_name(path.name + ".src")
    folder(source, files)
    (source / name).parent.mkdir(parents=True, exist_ok=True)
    (source / name).symlink_to(target)
    with py7zr.SevenZipFile(path, "w") as archive:
        for member in [*files, name]:
            archive.write(source / member, member)
    shutil.rmtree(source)
    return path


def zeros_zip(path: Path, name: str, size: int) -> Path:
    """A zip bomb: `size` bytes of zeros, deflated (about 1000:1), written without holding them."""
    zero = bytes(MiB)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open(name, "w", force_zip64=True) as member:
            for _ in range(size // MiB):
                member.write(zero)
    return path


def nested_zip(path: Path, depth: int, leaf: dict[str, bytes]) -> Path:
    """A zip holding a zip holding ... (`depth` archives in all), the innermost holding `leaf`."""
    data = _zip_bytes(leaf)
    for level in range(depth - 1, 0, -1):
        data = _zip_bytes({f"level{level}.zip": data}, stored=True)
    path.write_bytes(data)
    return path


def _zip_bytes(files: dict[str, bytes], *, stored: bool = False) -> bytes:
    buffer = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def truncated(path: Path, keep: float = 0.5) -> Path:
    """The first `keep` of the archive: an interrupted download."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def deflate_bomb(path: Path, name: str, size: int) -> Path:
    """A zip of one deflated member of ``size`` zeros (a multiple of 16 MiB, under 4 GiB), about
    1000 times smaller, written in a fraction of a second.

    Deflating gigabytes takes seconds, so one 16 MiB block is compressed and closed with a full
    flush (the compressor forgets everything before it, so the same input gives the same bytes),
    and the stream is that block repeated, then an empty final block. The CRC is right, so the
    archive is valid to its end.
    """
    import struct
    import zlib

    block = 16 * MiB
    assert size % block == 0 and size < 2**32
    zeros = bytes(block)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush(zlib.Z_FINISH)
    count = size // block
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    packed = len(piece) * count + len(tail)
    raw = name.encode()
    fields = (20, 0, zipfile.ZIP_DEFLATED, 0, 0x21, crc, packed, size, len(raw), 0)  # version, flags, method, time, date
    with open(path, "wb") as out:
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields) + raw)
        for _ in range(count):
            out.write(piece)
        out.write(tail)
        directory = out.tell()
        out.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, 0) + raw)
        end = out.tell()
        out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, end - directory, directory, 0))
    return path

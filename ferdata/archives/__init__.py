"""Reading datasets out of archives and folders: safely, as streams, without unpacking to disk.

:func:`open_tree` opens a folder, a zip (stored/deflate, ZipCrypto or AES-256), a 7z (optionally
with encrypted headers), a plain or gzip/bzip2/xz-compressed tar, or a single compressed file
(``fer2013.csv.gz``), choosing the reader from the file's magic bytes. Archives found inside it
(also by magic bytes) are expanded in place, recursively. What this package guarantees:

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
* **Passwords stay secret.** A :class:`Secret` prints as ``***``; the password (a str, bytes, a
  Secret or a function returning one) is asked for at most once, only when something encrypted is
  met; a wrong password is detected on the first encrypted member or header; no message, repr or
  traceback shows the password. The library never prompts: only the CLI talks to a terminal.
* **Every failure is one line** (:class:`~ferdata.errors.ArchiveError` and subclasses) naming the
  archive, the member where there is one, and what to do. Messages name this library's arguments
  (``password=``, ``limits=Limits(max_ratio=...)``); the CLI maps them to its options.

One module per job, the formats registered in :data:`FORMATS` (as the sources are in
:data:`ferdata.sources.SOURCES`)::

    base.py        Tree (the protocol every format implements), Member, the shared context
    dispatch.py    open_tree: sniffing magic bytes, the FORMATS registry, nested expansion
    zips.py        zip: stored/deflate/bzip2/lzma (zipfile), ZipCrypto and AES (pyzipper)
    sevenzip.py    7z (py7zr) and the thread that turns its extraction into streams
    tars.py        tar, plain or .gz/.bz2/.xz, through PEP 706's data_filter
    compressed.py  one .gz/.bz2/.xz file, or a bare .csv given directly; the decompression layer
    folders.py     a folder on disk
    nested.py      archives inside archives
    names.py       member names: normalised, refused when unsafe, junk skipped
    limits.py      Limits and the guard that counts every byte against them
    passwords.py   Secret and what password= accepts

What is listed in ``__all__`` is the public API; the modules themselves are internal.
"""

from __future__ import annotations

from .base import Member, Tree
from .compressed import CompressedFileTree
from .dispatch import FORMATS, open_tree
from .folders import FolderTree
from .limits import Limits
from .nested import NestedTree
from .passwords import Password, PasswordProvider, Secret, as_provider
from .sevenzip import SevenZipTree
from .tars import TarTree
from .zips import ZipTree

__all__ = [
    "FORMATS",
    "CompressedFileTree",
    "FolderTree",
    "Limits",
    "Member",
    "NestedTree",
    "Password",
    "PasswordProvider",
    "Secret",
    "SevenZipTree",
    "TarTree",
    "Tree",
    "ZipTree",
    "as_provider",
    "open_tree",
]

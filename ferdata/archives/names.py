"""Member names: one clean relative POSIX path per regular file, or a refusal naming the member.

What every format's reader promises through this module (the checks libarchive makes with its
``ARCHIVE_EXTRACT_SECURE_*`` flags; tar gets them from PEP 706's ``data_filter`` as well):

* ``./a\\b`` and ``a//b`` are the same member, ``a/b``; the root folder is ``''``.
* Refused, with :class:`~ferdata.errors.UnsafeArchiveError`: absolute paths, drive letters, ``..``
  components, NUL and other control characters, names that are not UTF-8 text, links whose target
  leaves the tree, the same name twice, names that differ only in case, a file that is also a
  folder.
* A name part longer than :data:`NAME_MAX` bytes is an :class:`~ferdata.errors.ArchiveError`: no
  common file system could hold it.
* OS junk (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, ``._*``) is never listed.
"""

from __future__ import annotations

import posixpath
import re

from ferdata.errors import ArchiveError, UnsafeArchiveError, shown

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile("[\x01-\x1f\x7f]")  # NUL has its own message
# The longest file or folder name (one path component, in bytes) that common file systems hold:
# ext4, XFS, Btrfs, tmpfs, APFS and NTFS all stop at 255.
NAME_MAX = 255
_UNDECODED = re.compile("[\ud800-\udfff]")
REPACK_UTF8 = "re-pack the archive with UTF-8 file names (e.g. 7z a -tzip, or tar on a UTF-8 system)"
_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}


SPECIAL = "is a device file, FIFO or socket; ferdata reads regular files only"
OUTSIDE = "ferdata refuses archives that write outside their folder"
_LINKS = "ferdata refuses links that leave the archive"


def _shown(raw: str) -> str:
    return shown(raw, 120)


def unsafe(label: str, raw: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{label}: member {_shown(raw)} {why}")


def normalise(raw: str, label: str) -> str:
    """The member's name as a clean relative POSIX path ('' for the root); refuse escaping names,
    control characters, and names no file system can hold."""
    name = raw.replace("\\", "/")
    if "\x00" in name:
        raise unsafe(label, raw, "has a NUL byte in its name; ferdata refuses such archives")
    control = _CONTROL.search(name)
    if control:  # a newline or tab in a name breaks every list, log and CSV that shows it
        what = f"control character {control.group()!r}"
        raise unsafe(label, raw, f"has a {what} in its name; ferdata refuses such archives: rename the file")
    if _UNDECODED.search(name):  # bytes that were not UTF-8, kept as surrogates by the decoder
        raise unsafe(label, raw, f"has a name that is not UTF-8 text; {REPACK_UTF8}")
    if name.startswith("/"):
        raise unsafe(label, raw, f"has an absolute path; {OUTSIDE}")
    if _DRIVE.match(name):
        raise unsafe(label, raw, f"names a drive letter; {OUTSIDE}")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise unsafe(label, raw, f"has a '..' component; {OUTSIDE}")
    for part in parts:
        size = len(part.encode("utf-8", "surrogateescape"))
        if size > NAME_MAX:
            raise ArchiveError(
                f"{label}: member {_shown(raw)} has a name part of {size} bytes, over the {NAME_MAX} that file "
                "systems allow: rename it (or re-pack the archive with shorter names)"
            )
    return "/".join(parts)


def is_junk(name: str) -> bool:
    """Files that operating systems drop into folders: never part of a dataset."""
    parts = name.split("/")
    base = parts[-1]
    return "__MACOSX" in parts[:-1] or base.lower() in _JUNK_NAMES or base.startswith("._")


def check_link(label: str, name: str, target: str) -> None:
    """Refuse a zip/7z link whose target leaves the tree (what data_filter does for tar)."""
    target = target.replace("\\", "/")
    if target.startswith("/") or _DRIVE.match(target):
        raise unsafe(label, name, f"is a link to an absolute path ({target}); {_LINKS}")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if resolved == ".." or resolved.startswith("../"):
        raise unsafe(label, name, f"is a link to {target}, outside the archive; {_LINKS}")


class NameBook:
    """Regular-file names seen so far: refuses duplicates and file/folder clashes ('a' and 'a/b')."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._files: set[str] = set()
        self._folders: set[str] = set()
        self._folded: dict[str, str] = {}  # case-folded name -> the name first seen

    def add(self, name: str, raw: str) -> None:
        if name in self._files:
            raise unsafe(self._label, raw, "appears twice; ferdata refuses duplicate names (one hides the other)")
        twin = self._folded.setdefault(name.casefold(), name)
        if twin != name:  # on macOS and Windows one would overwrite the other in the workspace
            raise unsafe(
                self._label,
                raw,
                f"differs from {twin!r} only in case; ferdata refuses names that clash on "
                "case-insensitive file systems: rename one of them",
            )
        if name in self._folders:
            raise unsafe(self._label, raw, "is both a file and a folder; ferdata refuses such archives")
        parts = name.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in self._files:
                raise unsafe(self._label, raw, f"lies under {folder!r}, which is a file; ferdata refuses this")
            self._folders.add(folder)
        self._files.add(name)

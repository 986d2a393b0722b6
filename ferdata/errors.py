"""ferdata's exceptions.

One root, :class:`FerdataError`, whose message is a single line for the user: what is wrong and
what to do about it. The CLI catches the root once and exits 1 with that line; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .leakage import LeakageReport

# The longest message a user is shown: a huge value (a 200 KB CSV field, a member name of
# thousands of characters) is cut in its middle, so the line keeps its start and its advice.
MAX_MESSAGE = 1000
# ``<_io.BytesIO object at 0x7f...>`` and the like: an address differs from run to run, so a message
# holding one would make two runs over the same input write different manifests (``face_error``).
_OBJECT_REPR = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>")


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` as one line: line breaks become spaces, object addresses are dropped, and
    anything beyond ``limit`` characters is cut from the middle."""
    text = " ".join(_OBJECT_REPR.sub("", str(message)).split())
    if len(text) <= limit:
        return text
    kept = limit - 40  # room for the marker, which is at most 35 characters
    head = kept * 2 // 3
    return f"{text[:head]} …[{len(text) - kept:,} characters cut]… {text[len(text) - (kept - head) :]}"


def shown(value: object, limit: int = 60) -> str:
    """A value echoed in a message: its repr, cut to ``limit`` characters with its full length."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, (str, bytes)) else len(text)
    return f"{text[: limit - 1]}… ({size:,} characters)"


class FerdataError(Exception):
    """A user-facing error: the message names the file and the fix.

    The message is always one line of at most :data:`MAX_MESSAGE` characters without object
    addresses (see :func:`one_line`), whoever raised it and whatever value it echoes.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (one_line(args[0]),)
        super().__init__(*args)


class UsageError(FerdataError):
    """Options that contradict each other or a value outside its range."""


class WorkspaceError(FerdataError):
    """The workspace is missing, locked, or holds no manifest for the dataset."""


class WorkspaceLocked(WorkspaceError):
    """Another ferdata process holds the workspace lock."""


class SchemaError(FerdataError):
    """A manifest that does not match the schema."""


class ArchiveError(FerdataError):
    """An archive that cannot be read: unsupported, corrupt or truncated."""


class PasswordError(ArchiveError):
    """A password is missing or wrong."""


class UnsafeArchiveError(ArchiveError):
    """A member that would escape the output folder, or a decompression bomb."""


class LayoutError(FerdataError):
    """A tree that does not look like the dataset it was said to be."""


class VotesError(FerdataError):
    """A votes file that cannot be applied to the manifest."""


class DetectorError(FerdataError):
    """A face detector that cannot be loaded, or an execution device that is not available."""


class ImageUnreadable(FerdataError):
    """An image file that is missing, truncated or in a format that cannot be decoded."""


class LeakageFound(FerdataError):
    """--strict and the leakage check found duplicates or identities across folds or splits.

    ``report`` holds the :class:`ferdata.leakage.LeakageReport` (the report file is already written).
    """

    report: LeakageReport | None = None


class PublishError(FerdataError):
    """A dataset folder that cannot be written, or a push to the Hub that cannot happen."""


class TagError(FerdataError):
    """An unknown occlusion tag, a selection that cannot be evaluated, or a tag file that cannot be read."""


class WorkspaceWriteError(WorkspaceError):
    """A file in the workspace could not be written: the disk is full, a quota or file-size limit
    is reached, or the folder is read-only. What was there before is left intact."""

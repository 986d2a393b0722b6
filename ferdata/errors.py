"""ferdata's exceptions.

One root, :class:`FerdataError`, whose message is a single line for the user: what is wrong and
what to do about it. The CLI catches the root once and exits 1 with that line; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class FerdataError(Exception):
    """A user-facing error: the message names the file and the fix."""


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

    report = None


class PublishError(FerdataError):
    """A dataset folder that cannot be written, or a push to the Hub that cannot happen."""


class TagError(FerdataError):
    """An unknown occlusion tag, a selection that cannot be evaluated, or a tag file that cannot be read."""


class WorkspaceWriteError(WorkspaceError):
    """A file in the workspace could not be written: the disk is full, a quota or file-size limit
    is reached, or the folder is read-only. What was there before is left intact."""

"""What every source adapter shares: the records it yields and small layout helpers."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..resources import load_toml

if TYPE_CHECKING:
    import numpy as np

    from ..archives import Tree

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
# the origin (``tag_origins`` of manifests/schema.toml) of what a record says: the dataset's own layout
SOURCE_ORIGIN = "source"


@dataclass
class Record:
    """One image as the source describes it, before anything is read or written.

    Exactly one of ``member`` (a file in the tree) and ``pixels`` (decoded pixels, for CSV
    sources; stored as a lossless PNG) is set. ``target`` is where the original goes, relative to
    the dataset's ``originals/`` folder.
    """

    image_id: str
    source: str
    label_original: str
    target: str
    member: str | None = None
    pixels: np.ndarray | None = None
    split: str | None = None
    subject_id: str | None = None
    clip_id: str | None = None
    masked: bool | None = None
    occlusion: tuple[str, ...] = ()
    pair_key: str | None = None

    def manifest_fields(self) -> dict[str, Any]:
        """The manifest columns the record fills; its tags and ``masked`` carry the origin ``source``."""
        return {
            "image_id": self.image_id,
            "source": self.source,
            "label_original": self.label_original,
            "split": self.split,
            "subject_id": self.subject_id,
            "clip_id": self.clip_id,
            "masked": self.masked,
            "occlusion": list(self.occlusion),
            "tag_origin": [SOURCE_ORIGIN] * len(self.occlusion),
            "masked_origin": None if self.masked is None else SOURCE_ORIGIN,
            "pair_key": self.pair_key,
        }


@dataclass(frozen=True)
class Unparsed:
    """A file the adapter expected to understand but could not, with the reason."""

    member: str
    reason: str


@dataclass(frozen=True)
class SideFile:
    """A file the adapter keeps beside the manifest (e.g. FER+'s votes), copied as is."""

    member: str
    name: str


@dataclass(frozen=True)
class Notice:
    """Something the user should know that is not an error (e.g. an unlabelled test.csv)."""

    message: str


Item = Record | Unparsed | SideFile | Notice


@dataclass
class SourceOptions:
    label_map: dict[str, str] | None = None  # imagefolder: folder name -> canonical label
    split: str | None = None  # CSV sources: the split of rows whose CSV has no Usage column
    extras: dict[str, Any] = field(default_factory=dict)


class Source:
    """The protocol every adapter implements (one module per dataset)."""

    name: ClassVar[str]
    takes_split: ClassVar[bool] = False  # whether SourceOptions.split means anything to it

    @property
    def facts(self) -> dict[str, Any]:
        return load_toml(self.name)

    def match(self, names: list[str]) -> float:
        """How well a tree's member names fit this layout: 0 (not at all) to 1 (certain)."""
        raise NotImplementedError

    def match_contents(self, tree: Tree, names: list[str]) -> float:
        """Like :meth:`match`, for layouts told by what files hold rather than by their names (a
        CSV's header). Asked only when no name fits a layout for certain; may read the tree."""
        return 0.0

    def discover(self, tree: Tree, names: list[str], options: SourceOptions) -> Iterator[Item]:
        """Yield a Record per image, an Unparsed per file it cannot understand, SideFiles, Notices."""
        raise NotImplementedError


# ----------------------------------------------------------------------------- helpers


def is_image(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def stem(name: str) -> str:
    return posixpath.splitext(posixpath.basename(name))[0]


def without_ext(name: str) -> str:
    return posixpath.splitext(name)[0]


def roots_with_children(names: Iterable[str], children: set[str]) -> list[str]:
    """Folder prefixes ('' for the top, else 'a/b/') whose direct sub-folders include ``children``.

    Archives often wrap the dataset in one or more folders (``msd-e/MSD-E/...``); adapters
    locate their root with this and strip it, so image ids do not depend on the wrapping.
    """
    seen: dict[str, set[str]] = {}
    for name in names:
        parts = name.split("/")
        for i in range(len(parts) - 1):
            prefix = "/".join(parts[:i])
            seen.setdefault(prefix + "/" if prefix else "", set()).add(parts[i])
    return sorted((p for p, kids in seen.items() if children <= kids), key=len)


def file_record(member: str, rel: str, label_original: str, **fields) -> Record:
    """The Record of an image file in the tree: ``rel`` is its path below the dataset's root,
    which is also where the original goes; its id is ``rel`` without the extension unless
    ``image_id`` is given."""
    image_id = fields.pop("image_id", None) or without_ext(rel)
    return Record(image_id=image_id, source=member, label_original=label_original, target=rel, member=member, **fields)


def class_folders(names: Iterable[str], root: str) -> set[str]:
    """The folders at ``root/<split>/<class>/<file>``: what an ImageFolder layout's classes are."""
    return {n[len(root) :].split("/")[1] for n in names if n.startswith(root) and n[len(root) :].count("/") == 2}


def relative_to(name: str, root: str) -> str:
    return name[len(root) :] if root and name.startswith(root) else name

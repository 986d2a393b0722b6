"""Archives inside archives, opened in place.

::

    kaggle.zip                                   members():
    ├── LICENSE                                    LICENSE
    └── fer2013.tar.gz   (an archive by its        fer2013.tar.gz/fer2013/fer2013.csv
        └── fer2013/      first bytes: spooled,    fer2013.tar.gz/fer2013/README
            ├── fer2013.csv   alone, to a temporary
            └── README        file under scratch)

What it guarantees: an inner archive is opened through the same dispatch as the outer one, with
the same context (one password, asked at most once; one total-bytes counter; one spool folder,
removed on close); nesting deeper than ``Limits.max_depth`` is refused; members whose extension
marks them as images, tables, text, media or zip-based documents are never opened as archives.
Reading many members makes one pass per archive.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO

from .base import Member, Tree

__all__ = ["NestedTree", "may_be_archive"]

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


def may_be_archive(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() not in _NOT_EXPANDED


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

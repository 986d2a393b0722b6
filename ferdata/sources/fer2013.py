"""FER2013: 48×48 grayscale faces, as a CSV of pixel strings or as a folder of images.

Accepted layouts (any wrapping folders are ignored; archives inside archives are opened)::

    fer2013.csv          emotion,pixels,Usage        35,887 rows (Training/PublicTest/PrivateTest)
    icml_face_data.csv   emotion, Usage, pixels      same rows, names with leading spaces
    train.csv, test.csv  emotion,pixels (test.csv may lack emotion: unlabelled, not ingested)
    train/<emotion>/<Usage>_<n>.jpg, test/<emotion>/<Usage>_<n>.jpg   the folder variant

``emotion`` is 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral. A CSV row's id
is its row number: ``fer2013-0000060`` for data row 60 of ``fer2013.csv`` (or of
``icml_face_data.csv``, which holds the same rows), ``train-0000060`` for ``train.csv``. These are
deliberately not FER+'s ``fer0000000.png`` names: FER+ numbers only the rows it kept, so from row
60 on its names and the row numbers differ; FER+ votes are matched by row (``source``) instead.
Pixels are stored as lossless PNGs; ``sha256`` is taken of the decoded pixels.
"""

from __future__ import annotations

import csv
import io
import posixpath
from collections.abc import Iterator

import numpy as np

from .base import Item, Notice, Record, Source, SourceOptions, Unparsed, class_folders, file_record, is_image, roots_with_children, stem

# Files in order of preference: one family is read, the others are reported and skipped.
_FAMILIES = (("fer2013.csv",), ("icml_face_data.csv",), ("train.csv", "test.csv"))
_SAME_ROWS = {"fer2013.csv", "icml_face_data.csv"}  # the same 35,887 rows, so the same ids


def find_csvs(names: list[str]) -> list[str]:
    """The members of the preferred CSV family present in the tree (shortest paths first)."""
    by_base: dict[str, list[str]] = {}
    for name in sorted(names, key=lambda n: (n.count("/"), n)):
        by_base.setdefault(posixpath.basename(name), []).append(name)
    for family in _FAMILIES:
        found = [by_base[b][0] for b in family if b in by_base]
        if found:
            return found
    return []


def read_pixel_csv(tree, member: str, dataset: str, classes: list[str], usage: dict[str, str]) -> Iterator[Item]:
    """Stream a FER2013-style CSV, yielding a Record with pixels per row."""
    base = posixpath.basename(member)
    default_split = {"train.csv": "train", "test.csv": "test"}.get(base)
    size = None
    with tree.open(member) as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            yield Unparsed(member, "the CSV is empty")
            return
        if "pixels" not in header:
            yield Unparsed(member, f"no 'pixels' column (header: {', '.join(header)})")
            return
        col_pixels = header.index("pixels")
        col_emotion = header.index("emotion") if "emotion" in header else None
        col_usage = header.index("usage") if "usage" in header else None
        if col_emotion is None:
            yield Notice(f"{member} has no emotion column: its images are unlabelled and were not ingested")
            return
        for row_number, row in enumerate(reader):
            where = f"{member}#row={row_number}"
            if not row:
                continue
            try:
                emotion = int(row[col_emotion])
                values = np.array(row[col_pixels].split(), dtype=np.int32)
            except (ValueError, IndexError):
                yield Unparsed(where, "emotion or pixels is not a list of integers")
                continue
            if not 0 <= emotion < len(classes):
                yield Unparsed(where, f"emotion {emotion} is not in 0..{len(classes) - 1}")
                continue
            if size is None:
                size = int(round(len(values) ** 0.5))
            if len(values) != size * size or values.min(initial=0) < 0 or values.max(initial=0) > 255:
                yield Unparsed(where, f"pixels must be {size * size} values in 0..255 (found {len(values)})")
                continue
            split = default_split
            if col_usage is not None:
                usage_value = row[col_usage].strip()
                split = usage.get(usage_value)
                if split is None:
                    yield Unparsed(where, f"unknown Usage {usage_value!r} (expected {', '.join(usage)})")
                    continue
            image_id = f"{'fer2013' if base in _SAME_ROWS else stem(base)}-{row_number:07d}"
            yield Record(
                image_id=image_id,
                source=where,
                label_original=classes[emotion],
                target=f"{split or 'all'}/{image_id}.png",
                pixels=values.astype(np.uint8).reshape(size, size),
                split=split,
            )


class Fer2013(Source):
    name = "fer2013"

    def _folder_root(self, names: list[str]) -> str | None:
        """The folder holding ``train/<emotion>/`` (and usually ``test/<emotion>/``), if any."""
        emotions = set(self.facts["layout"]["folder_classes"])
        for root in roots_with_children(names, {"train"}):
            if class_folders(names, root) & emotions:
                return root
        return None

    def match(self, names: list[str]) -> float:
        if find_csvs(names):
            return 0.9
        return 0.8 if self._folder_root(names) is not None else 0.0

    def discover(self, tree, names: list[str], options: SourceOptions) -> Iterator[Item]:
        layout = self.facts["layout"]
        csvs = find_csvs(names)
        if csvs:
            for member in csvs:
                yield from read_pixel_csv(tree, member, self.name, self.facts["classes"], layout["usage"])
            return
        yield from self._discover_folders(names)

    def _discover_folders(self, names: list[str]) -> Iterator[Item]:
        layout = self.facts["layout"]
        root = self._folder_root(names) or ""
        usage_prefix = {k.lower(): v for k, v in layout["usage"].items()}
        ignored = 0
        for name in names:
            rel = name[len(root):] if name.startswith(root) else None
            parts = rel.split("/") if rel else []
            if len(parts) != 3 or parts[0] not in layout["folder_splits"] or not is_image(name):
                ignored += 1
                continue
            folder_split, emotion, _ = parts
            label = layout["folder_classes"].get(emotion.lower())
            if label is None:
                yield Unparsed(name, f"unknown emotion folder {emotion!r}")
                continue
            prefix = stem(name).split("_", 1)[0].lower()
            split = usage_prefix.get(prefix, layout["folder_splits"][folder_split])
            yield file_record(name, rel, label, split=split)
        if ignored:
            yield Notice(f"{ignored} files outside train/<emotion>/ and test/<emotion>/ were ignored")

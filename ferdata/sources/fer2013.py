"""FER2013: 48×48 grayscale faces, as a CSV of pixel strings or as a folder of images.

Accepted layouts (any wrapping folders are ignored; archives inside archives are opened)::

    fer2013.csv          emotion,pixels,Usage        35,887 rows (Training/PublicTest/PrivateTest)
    icml_face_data.csv   emotion, Usage, pixels      same rows, names with leading spaces
    train.csv, test.csv  emotion,pixels (test.csv may lack emotion: unlabelled, not ingested)
    train/<emotion>/<Usage>_<n>.jpg, test/<emotion>/<Usage>_<n>.jpg   the folder variant

A CSV is recognised by its header, not its name: ``fer2013 (1).csv`` or ``data.csv`` holding
``emotion`` and ``pixels`` columns is read like ``fer2013.csv``, with or without a UTF-8 byte-order
mark (UTF-16 with a byte-order mark is read too). Of several CSVs with a ``Usage`` column (the
full dataset: ``fer2013.csv`` and ``icml_face_data.csv`` hold the same rows) one is read, preferring
those names; the others are named in a notice. A CSV without ``Usage`` takes its split from the
``split`` option, else from its name (``train.csv``, ``test.csv``), else it is refused: rows
with no split would silently drop out of every split-based step.

``emotion`` is 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral. A CSV row's id
is its row number: ``fer2013-0000060`` for data row 60 of a CSV with a Usage column (the full
dataset, under any name), ``train-0000060`` for ``train.csv`` (the file's name otherwise). These
are deliberately not FER+'s ``fer0000000.png`` names: FER+ numbers only the rows it kept, so from
row 60 on its names and the row numbers differ; FER+ votes are matched by row (``source``).
Pixels are stored as lossless PNGs; ``sha256`` is taken of the decoded pixels. Every image has
the dataset's size (``layout.image_size`` in ``manifests/fer2013.toml``): a row with another
number of pixels is reported on its own and does not change how the other rows are read.
"""

from __future__ import annotations

import contextlib
import csv
import io
import posixpath
import re
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

import numpy as np

from ..errors import LayoutError, UsageError, shown
from ..resources import load_toml
from .base import (
    Item,
    Notice,
    Record,
    Source,
    SourceOptions,
    Unparsed,
    class_folders,
    file_record,
    is_image,
    roots_with_children,
    stem,
)

# Preferred among CSVs holding the whole dataset (a Usage column): the names it is published under.
_PREFERRED = ("fer2013.csv", "icml_face_data.csv")
_SPLIT_BY_NAME = {"train.csv": "train", "test.csv": "test"}  # Kaggle's challenge files have no Usage
_FULL_PREFIX = "fer2013"  # the id prefix of rows from a CSV with a Usage column, whatever its name
_MAX_PEEKED = 64  # CSV members whose header is read to recognise them (shallowest first)
_HEADER_BYTES = 64 * 1024
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, kept as lone surrogates
_BLOCK_CHARS = 1 << 22  # CSV text parsed as one task: about 500 rows of 48×48 pixels
_BLOCKS_AHEAD = 4  # blocks read and being parsed ahead of the rows handed out
_PARSERS = 2  # threads parsing blocks
_STRICT_FROMSTRING = tuple(int(part) for part in np.__version__.split(".")[:2]) >= (2, 3)  # see _fast_pixels

_headers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tree -> {member: header or None}


def _text(stream: BinaryIO) -> io.TextIOWrapper:
    """``stream`` as text: UTF-16 when it starts with a UTF-16 byte-order mark, else UTF-8 (a
    UTF-8 byte-order mark is dropped). Bytes that are not text are kept as lone surrogates, so that
    a bad byte condemns its row, not the file."""
    if not hasattr(stream, "peek"):
        stream = io.BufferedReader(cast(Any, stream))  # a member stream that cannot peek
    head = cast(io.BufferedReader, stream).peek(2)[:2]
    encoding = "utf-16" if head in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    return io.TextIOWrapper(stream, encoding=encoding, errors="surrogateescape", newline="")


def _columns(line: str) -> list[str]:
    """A header line's column names, stripped (icml_face_data.csv has leading spaces) and lower-cased."""
    try:
        fields = next(csv.reader([line]), [])
    except csv.Error:
        return []
    return [f.strip().lower() for f in fields]


def csv_headers(tree, names: list[str]) -> dict[str, list[str]]:
    """The header of each CSV member (at most ``_MAX_PEEKED``, shallowest first), read in one pass
    over the tree and remembered for it. Members with no header are left out."""
    members = sorted((n for n in names if n.lower().endswith(".csv")), key=lambda n: (n.count("/"), n))[:_MAX_PEEKED]
    seen = _headers.setdefault(tree, {})
    todo = [m for m in members if m not in seen]
    if todo:
        with contextlib.closing(tree.iter_open(todo)) as streams:
            for member, stream in streams:
                text = _text(stream)
                seen[member] = _columns(text.readline(_HEADER_BYTES)) or None
                text.detach()  # the tree closes its own stream
    return {m: seen[m] for m in members if seen.get(m)}


def _pixel_csvs(tree, names: list[str]) -> dict[str, list[str]]:
    return {m: h for m, h in csv_headers(tree, names).items() if "pixels" in h}


def choose_csvs(tree, names: list[str]) -> tuple[list[str], list[Notice]]:
    """The pixel CSVs to read, and a notice for each one left out.

    One CSV with a Usage column holds the whole dataset, so only one such CSV is read (two would
    give every image twice); without one, every pixel CSV is read (``train.csv`` + ``test.csv``).
    """
    csvs = _pixel_csvs(tree, names)
    full = [m for m, h in csvs.items() if "usage" in h and "emotion" in h]
    if not full:
        return list(csvs), []

    def preference(member: str) -> tuple:
        base = posixpath.basename(member).lower()
        return (_PREFERRED.index(base) if base in _PREFERRED else len(_PREFERRED), member.count("/"), member)

    chosen = min(full, key=preference)
    skipped = [
        Notice(f"{m} was not read: {chosen} holds the whole dataset (it has a Usage column)")
        for m in csvs
        if m != chosen
    ]
    return [chosen], skipped


def _split_of(member: str, header: list[str], split: str | None) -> str | None:
    """The split every row of a CSV without a Usage column gets (None: the CSV has one)."""
    if "usage" in header:
        if split is not None:
            raise UsageError(
                f"split={split!r} is for CSVs without a Usage column, but {member} has one, which gives each "
                "row its split: leave split out"
            )
        return None
    chosen = split or _SPLIT_BY_NAME.get(posixpath.basename(member).lower())
    if chosen is None:
        raise LayoutError(
            f"{member} has no Usage column, so its rows would have no split: name their split with split=NAME "
            "(train, val or test)"
        )
    return chosen


def read_pixel_csv(
    tree, member: str, classes: list[str], usage: dict[str, str], size: int, split: str | None = None
) -> Iterator[Item]:
    """Stream a FER2013-style CSV, yielding a Record with pixels per row (see the module docstring).

    The text is read in blocks of about ``_BLOCK_CHARS`` and the rows of each block are parsed on
    a few threads (numpy parses the pixel strings without holding the GIL) while the caller
    stores the rows of the blocks before; items come out in the file's order. At most
    ``_BLOCKS_AHEAD`` blocks are in flight, so memory does not grow with the file.
    """
    from concurrent.futures import ThreadPoolExecutor

    # a row holds size² pixel values of at most 3 digits and a separator each, plus emotion and Usage
    longest = 4 * size * size + 1024
    with tree.open(member) as raw:
        text = _text(raw)
        header = _columns(text.readline(_HEADER_BYTES))
        if not header:
            yield Unparsed(member, "the CSV is empty")
            return
        if "pixels" not in header:
            yield Unparsed(member, f"no 'pixels' column (header: {shown(', '.join(header), 200)})")
            return
        if "emotion" not in header:
            yield Notice(f"{member} has no emotion column: its images are unlabelled and were not ingested")
            return
        columns = _Columns(
            emotion=header.index("emotion"),
            pixels=header.index("pixels"),
            usage=header.index("usage") if "usage" in header else None,
        )
        rows = _RowReader(
            member=member,
            prefix=_FULL_PREFIX if columns.usage is not None else stem(member),
            columns=columns,
            classes=classes,
            usage=usage,
            size=size,
            split=_split_of(member, header, split),
            longest=longest,
        )
        with ThreadPoolExecutor(max_workers=_PARSERS, thread_name_prefix="ferdata-csv") as pool:
            pending: deque = deque()
            try:
                for block in _blocks(text, longest):
                    pending.append(pool.submit(rows.parse, block))
                    if len(pending) >= _BLOCKS_AHEAD:
                        yield from pending.popleft().result()
                while pending:
                    yield from pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()


@dataclass(frozen=True)
class _Columns:
    emotion: int
    pixels: int
    usage: int | None


@dataclass(frozen=True)
class _Block:
    """Consecutive lines of the CSV, without their line ends; None stands for a line too long to hold."""

    first_row: int  # the row number of lines[0]
    lines: list[str | None]
    plain: bool  # ASCII text without quotes: rows split at commas, pixels parsed by numpy directly


@dataclass(frozen=True)
class _RowReader:
    """Turns CSV lines into Records, or Unparsed items that say what is wrong with a row."""

    member: str
    prefix: str
    columns: _Columns
    classes: list[str]
    usage: dict[str, str]
    size: int
    split: str | None  # the split of every row (a CSV without a Usage column), else None
    longest: int

    def parse(self, block: _Block) -> list[Item]:
        items: list[Item] = []
        for row_number, line in enumerate(block.lines, block.first_row):
            where = f"{self.member}#row={row_number}"
            if line is None:
                items.append(
                    Unparsed(
                        where,
                        f"the row is longer than {self.longest:,} characters, more than {self.size}×{self.size} pixels take",
                    )
                )
                continue
            if not line or line.isspace():
                continue
            if not block.plain and _NOT_UTF8.search(line):
                items.append(Unparsed(where, "the row holds bytes that are not UTF-8 text"))
                continue
            row = line.split(",") if block.plain or '"' not in line else next(csv.reader([line]))
            items.append(self.record(row, where, row_number, fast=block.plain))
        return items

    def record(self, row: list[str], where: str, row_number: int, fast: bool) -> Item:
        """One CSV row as a Record, or an Unparsed saying what is wrong with it."""
        columns, size, classes = self.columns, self.size, self.classes
        if max(columns.emotion, columns.pixels, columns.usage or 0) >= len(row):
            return Unparsed(where, f"the row has only {len(row)} of the header's columns")
        try:
            emotion = int(row[columns.emotion])
        except ValueError:
            return Unparsed(where, f"emotion {shown(row[columns.emotion].strip())} is not a number")
        if not 0 <= emotion < len(classes):
            return Unparsed(where, f"emotion {emotion} is not in 0..{len(classes) - 1}")
        text = row[columns.pixels]
        pixels = _fast_pixels(text, size) if fast else None
        if pixels is None:
            checked = _checked_pixels(text, size)
            if isinstance(checked, str):
                return Unparsed(where, checked)
            pixels = checked
        split = self.split
        if columns.usage is not None:
            usage_value = row[columns.usage].strip()
            split = self.usage.get(usage_value)
            if split is None:
                return Unparsed(where, f"unknown Usage {shown(usage_value)} (expected {', '.join(self.usage)})")
        image_id = f"{self.prefix}-{row_number:07d}"
        return Record(
            image_id=image_id,
            source=where,
            label_original=classes[emotion],
            target=f"{split}/{image_id}.png",
            pixels=pixels,
            split=split,
        )


def _fast_pixels(text: str, size: int) -> np.ndarray | None:
    """The size×size pixels of a well-formed pixel string, parsed by numpy (no GIL held); None
    when the string is anything else, for :func:`_checked_pixels` to say what is wrong.

    Signs are left to the careful path: numpy reads "1 -2" like Python, but the careful path is
    the one that words the error. Before numpy 2.3, ``fromstring`` stopped at the first token that
    is not a number with a warning instead of an error, so those versions take the careful path.
    """
    if not _STRICT_FROMSTRING or "-" in text or "+" in text:
        return None
    try:
        values = np.fromstring(text, dtype=np.int64, sep=" ")
    except ValueError:  # a token that is not a number
        return None
    if len(values) != size * size or (values & ~0xFF).any():
        return None
    return values.astype(np.uint8).reshape(size, size)


def _checked_pixels(text: str, size: int) -> np.ndarray | str:
    """The size×size pixels of ``text`` split at whitespace, or the reason they are not."""
    try:
        values = np.array(text.split(), dtype=np.int64)
    except (ValueError, OverflowError):
        bad = next((v for v in text.split() if not v.lstrip("+-").isdigit() or len(v) > 18), text)
        return f"pixel value {shown(bad)} is not a number in 0..255"
    if len(values) == 0:
        return "pixels is empty"
    if len(values) != size * size:
        return f"pixels holds {len(values):,} values, not {size}×{size} = {size * size:,}"
    out_of_range = values[(values < 0) | (values > 255)]
    if len(out_of_range):
        return f"pixel value {out_of_range[0]} is not in 0..255"
    return values.astype(np.uint8).reshape(size, size)


_LINE_END = re.compile("\r\n|\r|\n")  # what readline() ends a line at, with newline=""


def _blocks(text: io.TextIOBase, longest: int) -> Iterator[_Block]:
    """The lines of ``text`` in blocks, split where ``readline`` splits them (at \\n, \\r or
    \\r\\n). A line of ``longest`` characters or more is never held whole: it comes back as None."""
    row, rest, skipping = 0, "", False  # rest: the start of a line whose end is not read yet
    while chunk := text.read(_BLOCK_CHARS):
        while chunk.endswith("\r") and (more := text.read(1)):  # the \n of a \r\n may come next
            chunk += more
        plain = chunk.isascii() and '"' not in chunk
        parts = _LINE_END.split(chunk) if "\r" in chunk else chunk.split("\n")
        tail = parts.pop()  # "" when the chunk ends with a line end
        if skipping and parts:  # the end of a line already reported as too long
            parts.pop(0)
            skipping = False
        elif skipping:
            continue
        elif parts:
            parts[0] = rest + parts[0]
            plain = plain and rest.isascii() and '"' not in rest
        else:
            tail = rest + tail
        rest = tail
        lines: list[str | None] = [line if len(line) < longest else None for line in parts]
        if len(rest) >= longest:
            lines.append(None)
            rest, skipping = "", True
        if lines:
            yield _Block(row, lines, plain)
            row += len(lines)
    if rest:
        yield _Block(row, [rest], plain=False)


def discover_csvs(tree, names: list[str], options: SourceOptions) -> Iterator[Item]:
    """Records of the pixel CSVs in the tree (FER2013's facts: classes, Usage, image size)."""
    fer = load_toml("fer2013")
    layout = fer["layout"]
    chosen, skipped = choose_csvs(tree, names)
    yield from skipped
    for member in chosen:
        yield from read_pixel_csv(tree, member, fer["classes"], layout["usage"], layout["image_size"], options.split)


class Fer2013(Source):
    name = "fer2013"
    takes_split = True

    def _folder_root(self, names: list[str]) -> str | None:
        """The folder holding ``train/<emotion>/`` (and usually ``test/<emotion>/``), if any."""
        emotions = set(self.facts["layout"]["folder_classes"])
        for root in roots_with_children(names, {"train"}):
            if class_folders(names, root) & emotions:
                return root
        return None

    def match(self, names: list[str]) -> float:
        known = set(self.facts["layout"]["csv_names"])
        if any(posixpath.basename(n).lower() in known for n in names):
            return 0.9
        return 0.8 if self._folder_root(names) is not None else 0.0

    def match_contents(self, tree, names: list[str]) -> float:
        return 0.9 if any("emotion" in h for h in _pixel_csvs(tree, names).values()) else 0.0

    def discover(self, tree, names: list[str], options: SourceOptions) -> Iterator[Item]:
        if _pixel_csvs(tree, names):
            yield from discover_csvs(tree, names, options)
            return
        if options.split is not None:
            raise UsageError(
                f"split={options.split!r} is for FER2013 CSVs without a Usage column; this tree holds the folder "
                "layout, whose folders give the splits: leave split out"
            )
        yield from self._discover_folders(names)

    def _discover_folders(self, names: list[str]) -> Iterator[Item]:
        layout = self.facts["layout"]
        root = self._folder_root(names) or ""
        usage_prefix = {k.lower(): v for k, v in layout["usage"].items()}
        ignored = 0
        for name in names:
            rel = name[len(root) :] if name.startswith(root) else ""
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
            split = usage_prefix.get(prefix) or layout["folder_splits"][folder_split]
            yield file_record(name, rel, label, split=split)
        if ignored:
            yield Notice(f"{ignored} files outside train/<emotion>/ and test/<emotion>/ were ignored")

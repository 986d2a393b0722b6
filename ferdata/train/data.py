"""Training data: a workspace or a published dataset folder -> the usable faces as uint8 arrays.

Every usable face (a label that relabelling did not remove, and a crop: ``aligned_path`` in a
workspace, the ``image`` bytes in a published folder) is decoded once, resized to the training
size and kept as one ``uint8`` array of N x 3 x S x S. Augmentation then runs on whole batches of
tensors (:mod:`ferdata.train.loop`). Where those bytes fit the memory budget they are held in
memory (a 112-pixel face takes 37 KB: MSD-E's 1,960 faces take 74 MB); beyond it they go to a
file on disk (:class:`DiskFaces`), read back a batch at a time through the operating system's
page cache, so a million FERV39k frames train with bounded memory.

Two inputs, one loader (:func:`load_faces`):

- a **workspace**: the manifest's usable rows (contract: a label and an ``aligned_path``;
  ``face_status`` ``aligned`` or ``registered``);
- a **published folder** (``ferdata publish --out DIR``): its Parquet shards, anywhere under the
  folder, with the columns ``image`` (a struct holding the PNG ``bytes``), ``label`` and, when
  present, ``fold``, ``masked``, ``pair_id``, ``clip_id``, ``image_id`` and ``in_pe``; the split
  is the shard's file name (``train-…``, ``validation-…``, ``test-…``). The shards are streamed
  row group by row group, never read whole.

Rows that cannot take part are counted by reason in :attr:`FaceData.skipped` (one reason per
line of the CLI's report), never dropped silently. Which rows a protocol then trains and
evaluates on (folds, official splits) is :mod:`ferdata.train.loop`'s business.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import ImageUnreadable, UsageError
from ..progress import ProgressFn, null_progress
from ..publish import layout
from ..schema import BASIC_LABELS, LABELS, REMOVED_REASON, left_out_reasons
from ..schema import usable_rows as schema_usable_rows

if TYPE_CHECKING:
    import torch

    from ..workspace import Workspace, WorkspaceLike

SUBSETS = ("nm", "m", "mix", "pe")
SPLITS = ("train", "val", "test")
MASKED, NON_MASKED, UNKNOWN = 1, 0, -1
NO_FOLD_VALUE = -1

# why a row takes no part in training (one line each in the report)

# faces decoded per step of the published reader (bounded memory, whatever the shard size)
_READ_BATCH = 256
# share of the available memory that faces may take by default
DEFAULT_MEMORY_SHARE = 0.5


@dataclass
class FaceData:
    """Usable faces and what the protocols need to know about each of them."""

    images: Any  # uint8 N x 3 x S x S, RGB: a torch.Tensor in memory, or DiskFaces
    image_id: np.ndarray  # object (str)
    label: np.ndarray  # int64 index into ``classes``
    masked: np.ndarray  # int8: MASKED, NON_MASKED or UNKNOWN
    fold: np.ndarray  # int64; NO_FOLD_VALUE where the row has no fold
    pair_id: np.ndarray  # object (str or None)
    in_pe: np.ndarray  # bool
    classes: tuple[str, ...]
    split: np.ndarray | None = None  # object: "train", "val", "test" or None
    clip_id: np.ndarray | None = None  # object: the video clip of a frame row, or None
    origin: dict[str, Any] = field(default_factory=dict)  # kind, path, dataset
    skipped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.image_id)
        if self.split is None:
            self.split = np.full(n, None, dtype=object)
        if self.clip_id is None:
            self.clip_id = np.full(n, None, dtype=object)

    def __len__(self) -> int:
        return len(self.image_id)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def folds(self) -> list[int]:
        return sorted(int(f) for f in np.unique(self.fold) if f != NO_FOLD_VALUE)

    @property
    def splits(self) -> list[str]:
        assert self.split is not None  # __post_init__ fills it
        present = {s for s in self.split if s is not None}
        return [s for s in SPLITS if s in present]

    @property
    def has_official_split(self) -> bool:
        """True when the source gives an evaluation split (val or test), not only train."""
        return any(s in ("val", "test") for s in self.splits)

    @property
    def is_video(self) -> bool:
        assert self.clip_id is not None  # __post_init__ fills it
        return any(c is not None for c in self.clip_id)


# ----------------------------------------------------------------------------- subsets


def subset_rows(data: FaceData, subset: str | None) -> np.ndarray:
    """Row indices of a subset (paper, section 3.2-3.3): nm, m, mix, or pe (both sides of MSD-PE pairs).
    Any other value, None included (a config not yet through ``for_data``), raises UsageError."""
    if subset == "nm":
        return np.flatnonzero(data.masked == NON_MASKED)
    if subset == "m":
        return np.flatnonzero(data.masked == MASKED)
    if subset == "mix":
        return np.arange(len(data))
    if subset == "pe":
        return np.sort(pe_pairs(data).ravel())
    raise UsageError(f"unknown subset {subset!r}: choose one of {', '.join(SUBSETS)}")


def pe_pairs(data: FaceData, *, rows: np.ndarray | None = None) -> np.ndarray:
    """MSD-PE pairs as an array of ``[non-masked row, masked row]``, in pair_id order.

    A pair counts when both of its rows are present (among ``rows`` when given), both are
    ``in_pe`` and one is masked and the other not. Both images of a pair must sit in the same
    fold and split (``ferdata folds`` keeps them together); a pair split across folds would leak a
    face into validation, so it is an error.
    """
    candidates = np.flatnonzero(data.in_pe & (data.masked != UNKNOWN))
    if rows is not None:
        candidates = np.intersect1d(candidates, rows)
    frame = pd.DataFrame({"row": candidates, "pair": data.pair_id[candidates], "masked": data.masked[candidates]})
    frame = frame[frame["pair"].notna()]
    counts = frame.groupby("pair")["masked"].agg(["size", "sum"])
    whole = counts.index[(counts["size"] == 2) & (counts["sum"] == MASKED)]
    frame = frame[frame["pair"].isin(whole)].sort_values(["pair", "masked"])
    pairs = frame["row"].to_numpy(dtype=np.int64).reshape(-1, 2)
    assert data.split is not None  # __post_init__ fills it
    split = (data.fold[pairs[:, 0]] != data.fold[pairs[:, 1]]) | (data.split[pairs[:, 0]] != data.split[pairs[:, 1]])
    if split.any():
        first = data.pair_id[pairs[split][0, 0]]
        raise UsageError(
            f"{int(split.sum())} MSD-PE pairs have their two images in different folds or splits (first: {first}): "
            "run ferdata folds again, which keeps pairs together"
        )
    return pairs


# ----------------------------------------------------------------------------- usable rows


def usable_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The manifest rows a trainer can use (:func:`ferdata.schema.usable_rows`), and how many it
    leaves out, by reason (pure)."""
    return frame[schema_usable_rows(frame).to_numpy(bool)], left_out_reasons(frame)


def classes_for(labels: pd.Series) -> tuple[str, ...]:
    """The 7 basic expressions in MSD-E order, plus contempt when the data has it."""
    present = set(labels.dropna())
    unknown = present - set(LABELS)
    if unknown:
        raise UsageError(f"labels outside ferdata's vocabulary: {', '.join(sorted(map(str, unknown)))}")
    return LABELS if "contempt" in present else BASIC_LABELS


# ----------------------------------------------------------------------------- memory


def parse_size(value: int | float | str | None) -> int | None:
    """Bytes from a number or a size such as ``8GiB``, ``8G`` (both binary), ``500MB`` (decimal)
    or ``0``; None stays None (the default budget)."""
    if value is None or isinstance(value, (int, float)):
        return None if value is None else int(value)
    match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)([kmgt]?)(i?b?)", str(value).strip().lower())
    if not match:
        raise UsageError(f"memory_budget={value!r} is not a size: write it like 8GiB, 500MB or 0")
    number, prefix, unit = match.groups()
    base = 1000 if unit == "b" else 1024  # "MB" is decimal; "MiB" and a bare "M" are binary
    return int(float(number) * base ** " kmgt".index(prefix or " "))


def available_memory() -> int:
    """Bytes of memory available to new allocations now (Linux MemAvailable, else free pages)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def default_memory_budget() -> int:
    return int(DEFAULT_MEMORY_SHARE * available_memory())


def faces_bytes(n: int, size: int) -> int:
    return n * 3 * size * size


def map_faces(path: Path | str, shape: tuple[int, ...]) -> np.ndarray:
    """A read-only uint8 array over a file of faces (memory-mapped)."""
    import mmap

    with open(path, "rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(mapped, dtype=np.uint8).reshape(shape)


class DiskFaces:
    """uint8 faces N x 3 x S x S in a file: what :func:`load_faces` returns beyond the memory
    budget. :meth:`take` reads only the faces asked for, each with one positional read
    (``os.preadv`` into the batch), so the process holds no more than its batches; the operating
    system keeps recently read pages in its page cache and drops them under pressure. Where
    ``os.preadv`` is missing (Windows) the file is memory-mapped instead.

    Why not a memory map everywhere: mapped pages count in the process's resident size, and on
    Linux 6.x, whose page cache holds files in large folios, touching one face maps its whole
    folio: a few thousand random batches mapped all of a 2.3 GiB cache (benchmarks.md)."""

    def __init__(self, path: Path, shape: tuple[int, int, int, int], *, fd: int | None = None) -> None:
        import weakref

        self.path: Path | None = path  # None once an unlinked temporary file is only held open
        self.shape = shape
        self.dtype = np.uint8
        self.face_bytes = int(np.prod(shape[1:]))
        self.fd = fd if fd is not None else os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._close = weakref.finalize(self, os.close, self.fd)
        self.array = None if hasattr(os, "preadv") else map_faces(path, shape)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def take(self, rows: np.ndarray) -> torch.Tensor:
        """The faces of ``rows`` (in that order) as a CPU uint8 tensor."""
        import torch

        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        if self.array is not None:
            out[:] = self.array[rows]
            return torch.from_numpy(out)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(f"face rows outside 0..{self.shape[0] - 1}")
        flat = out.reshape(len(rows), self.face_bytes)
        for i in np.argsort(rows, kind="stable"):  # read the file forwards
            if os.preadv(self.fd, [flat[i]], int(rows[i]) * self.face_bytes) != self.face_bytes:
                raise ImageUnreadable(
                    f"{self.path or 'the face cache'} is shorter than {self.shape[0]} faces: delete it"
                )
        return torch.from_numpy(out)

    def __getitem__(self, rows) -> torch.Tensor:
        import torch

        if isinstance(rows, torch.Tensor):
            rows = rows.cpu().numpy()
        return self.take(np.atleast_1d(np.asarray(rows)))


# ----------------------------------------------------------------------------- loading


def load_faces(
    source: WorkspaceLike,
    *,
    dataset: str | None = None,
    image_size: int = 112,
    memory_budget: int | str | None = None,
    cache_dir: Path | str | None = None,
    progress: ProgressFn | None = None,
) -> FaceData:
    """Decode every usable face of a workspace or a published folder.

    ``source`` is a :class:`~ferdata.workspace.Workspace`, a workspace folder (it holds
    ``manifests/``) or a published dataset folder (it holds Parquet shards). When the decoded
    faces (N x 3 x S x S bytes) exceed ``memory_budget`` (bytes or a size such as ``"8GiB"``;
    default half the memory available now) they are written to a file in ``cache_dir`` (reused
    while the sources do not change), else to an unlinked temporary file (:class:`DiskFaces`).
    """
    from ..workspace import Workspace

    if isinstance(source, Workspace):
        rows, skipped, origin = _workspace_rows(source, dataset)
    else:
        folder = Path(source)
        if (folder / "manifests").is_dir():
            rows, skipped, origin = _workspace_rows(Workspace.resolve(folder), dataset)
        elif folder.is_dir():
            rows, skipped, origin = _published_rows(folder)
        else:
            raise UsageError(f"{folder} is neither a workspace nor a published dataset folder")
    if rows.empty:
        reasons = "; ".join(f"{reason}: {n}" for reason, n in skipped.items()) or "no rows"
        raise UsageError(
            f"{origin['path']} has no usable image, one with a label and a face crop ({reasons}): "
            "run ferdata align (and ferdata relabel only as the votes say)"
        )
    classes = classes_for(rows["label"])
    index = {name: i for i, name in enumerate(classes)}
    budget = parse_size(memory_budget)
    budget = default_memory_budget() if budget is None else budget
    images = _decode(rows, origin, image_size, budget, cache_dir, progress or null_progress)

    masked = rows["masked"].map(lambda v: UNKNOWN if pd.isna(v) else (MASKED if bool(v) else NON_MASKED))
    origin = {
        **origin,
        "storage": "disk" if isinstance(images, DiskFaces) else "memory",
        "faces_bytes": faces_bytes(len(rows), image_size),
        "memory_budget": budget,
    }
    return FaceData(
        images=images,
        image_id=rows["image_id"].astype(str).to_numpy(dtype=object),
        label=rows["label"].map(index).to_numpy(dtype=np.int64),
        masked=masked.to_numpy(dtype=np.int8),
        fold=rows["fold"].to_numpy(dtype=np.int64),
        pair_id=_objects(rows["pair_id"]),
        in_pe=rows["in_pe"].fillna(False).to_numpy(dtype=bool),
        classes=classes,
        split=_objects(rows["split"]),
        clip_id=_objects(rows["clip_id"]),
        origin=origin,
        skipped=skipped,
    )


def _objects(series: pd.Series) -> np.ndarray:
    return series.astype(object).where(series.notna(), None).to_numpy(dtype=object)


def _fold_column(series: pd.Series) -> np.ndarray:
    return pd.array(series, dtype="Int64").fillna(NO_FOLD_VALUE).to_numpy(dtype=np.int64)


def _workspace_rows(ws: Workspace, dataset: str | None) -> tuple[pd.DataFrame, dict[str, int], dict[str, Any]]:
    manifest = ws.load(dataset)
    used, skipped = usable_rows(manifest.frame)
    rows = pd.DataFrame(
        {
            "image_id": used["image_id"].to_numpy(dtype=object),
            "label": used["label"].to_numpy(dtype=object),
            "fold": _fold_column(used["fold"]),
            "split": used["split"].to_numpy(dtype=object),
            "clip_id": used["clip_id"].to_numpy(dtype=object),
            "masked": used["masked"].to_numpy(dtype=object),
            "pair_id": used["pair_id"].to_numpy(dtype=object),
            "in_pe": used["in_pe"].fillna(False).to_numpy(dtype=bool),
            "image": [ws.absolute(p) for p in used["aligned_path"]],
        }
    )
    origin = {"kind": "workspace", "path": str(ws.root), "dataset": manifest.dataset}
    return rows, skipped, origin


def _label_names(schema) -> tuple[str, ...]:
    """A ClassLabel's names from the ``huggingface`` metadata; ferdata's order when there is none."""
    meta = (schema.metadata or {}).get(b"huggingface")
    if meta:
        label = json.loads(meta).get("info", {}).get("features", {}).get("label", {})
        if label.get("_type") == "ClassLabel" and label.get("names"):
            return tuple(label["names"])
    return LABELS


def _published_rows(folder: Path) -> tuple[pd.DataFrame, dict[str, int], dict[str, Any]]:
    import pyarrow.parquet as pq

    shards = layout.image_shards(folder)
    if not shards:
        raise UsageError(f"{folder} holds no Parquet shards: point it at a folder written by ferdata publish")
    frames = []
    for number, shard in enumerate(shards):
        file = pq.ParquetFile(shard)
        names = file.schema_arrow.names
        missing = {"image", "label"} - set(names)
        if missing:
            raise UsageError(f"{shard} lacks the columns {', '.join(sorted(missing))}: publish it with ferdata publish")
        # every column but the images: those are streamed later, a row group at a time
        frame = file.read(columns=[c for c in names if c != "image"]).to_pandas()
        if pd.api.types.is_integer_dtype(frame["label"]):
            names_of = dict(enumerate(_label_names(file.schema_arrow)))
            frame["label"] = frame["label"].map(names_of.get)
        frame["shard"] = shard.relative_to(folder).as_posix()
        frame["image"] = [(number, i) for i in range(len(frame))]
        frame["split"] = layout.split_of(shard)
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    if "image_id" not in frame:
        frame["image_id"] = frame["shard"] + "#" + frame.groupby("shard").cumcount().astype(str)
    for name in ("pair_id", "clip_id", "masked", "fold"):
        if name not in frame:
            frame[name] = None
    if "in_pe" not in frame:
        # no in_pe column: a pair is in MSD-PE when both of its images carry the same label
        agree = frame.groupby("pair_id")["label"].agg(lambda s: len(s) == 2 and s.nunique() == 1)
        frame["in_pe"] = frame["pair_id"].map(agree).fillna(False).astype(bool)
    labelled = frame["label"].notna().to_numpy(bool)
    skipped = {REMOVED_REASON: int((~labelled).sum())}  # publish leaves rows without a crop out
    used = frame[labelled]
    rows = pd.DataFrame(
        {
            "image_id": used["image_id"].astype(str).to_numpy(dtype=object),
            "label": used["label"].to_numpy(dtype=object),
            "fold": _fold_column(used["fold"]),
            "split": used["split"].to_numpy(dtype=object),
            "clip_id": used["clip_id"].to_numpy(dtype=object),
            "masked": used["masked"].to_numpy(dtype=object),
            "pair_id": used["pair_id"].to_numpy(dtype=object),
            "in_pe": used["in_pe"].fillna(False).to_numpy(dtype=bool),
            "image": used["image"].to_numpy(dtype=object),
        }
    )
    origin = {
        "kind": "published",
        "path": str(folder.resolve()),
        "dataset": layout.dataset_name(folder),
        "shards": [s.relative_to(folder).as_posix() for s in shards],
    }
    return rows, {k: v for k, v in skipped.items() if v}, origin


# ----------------------------------------------------------------------------- decoding


def _decode(
    rows: pd.DataFrame,
    origin: dict[str, Any],
    size: int,
    budget: int,
    cache_dir: Path | str | None,
    progress: ProgressFn,
) -> Any:
    """Decode into memory when the faces fit ``budget``, else into a file (:class:`DiskFaces`).

    The file is written sequentially, a block of faces at a time, so decoding never holds more
    than one block.
    """
    import torch

    shape = (len(rows), 3, size, size)
    if faces_bytes(len(rows), size) <= budget:
        target = np.empty(shape, dtype=np.uint8)

        def put(first: int, block: np.ndarray) -> None:
            target[first : first + len(block)] = block

        _decode_blocks(rows, origin, size, progress, put)
        return torch.from_numpy(target)
    if cache_dir is None:
        descriptor, name = tempfile.mkstemp(prefix="ferdata-faces-", suffix=".u8")
        os.close(descriptor)
        try:
            _decode_to_file(Path(name), rows, origin, size, progress)
            faces = DiskFaces(Path(name), shape)
        finally:
            with contextlib.suppress(OSError):  # the open descriptor keeps the data; the name is not needed (POSIX)
                os.unlink(name)
        faces.path = None
        return faces
    from ..fsutil import atomic_path

    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"faces-{size}px-{_cache_key(rows, origin, size)}.u8"
    if path.is_file() and path.stat().st_size == int(np.prod(shape)):
        progress("decode faces (cached on disk)", len(rows), len(rows))
        return DiskFaces(path, shape)
    for old in folder.glob(f"faces-{size}px-*.u8"):  # a cache of sources that changed since
        old.unlink(missing_ok=True)
    with atomic_path(path, durable=False) as tmp:  # a cache: rebuilt if a crash loses it
        _decode_to_file(tmp, rows, origin, size, progress)
    return DiskFaces(path, shape)


def _decode_to_file(path: Path, rows: pd.DataFrame, origin: dict[str, Any], size: int, progress: ProgressFn) -> None:
    with open(path, "wb") as fh:
        written = 0

        def put(first: int, block: np.ndarray) -> None:
            nonlocal written
            if first != written:
                raise AssertionError(f"faces decoded out of order: block at {first}, file at {written}")
            fh.write(block.tobytes())
            written += len(block)

        _decode_blocks(rows, origin, size, progress, put)


def _cache_key(rows: pd.DataFrame, origin: dict[str, Any], size: int) -> str:
    """Changes whenever a source file, the rows or the size change."""
    digest = hashlib.sha256(f"{size}\n".encode())
    digest.update("\n".join(rows["image_id"]).encode())
    if origin["kind"] == "workspace":
        for path in rows["image"]:
            stat = Path(path).stat()
            digest.update(f"\n{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    else:
        base = Path(origin["path"])
        for shard in origin["shards"]:
            stat = (base / shard).stat()
            digest.update(f"\n{shard}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        digest.update(repr(rows["image"].tolist()).encode())
    return digest.hexdigest()[:16]


def _decode_blocks(
    rows: pd.DataFrame, origin: dict[str, Any], size: int, progress: ProgressFn, put: Callable[[int, np.ndarray], None]
) -> None:
    """Decode the faces of ``rows`` in row order, handing ``put(first row, block)`` consecutive
    blocks of at most ``_READ_BATCH`` faces (``block`` is n x 3 x S x S)."""
    from ..vision.decode import read_crop

    total = len(rows)
    done = 0
    fix = "align the dataset again" if origin["kind"] == "workspace" else "publish the dataset again"

    def one(job: tuple[int, Path | bytes | None, str], block: np.ndarray, first: int) -> None:
        # aligned crops are square already; other faces are resized (bilinear, see read_crop)
        i, source, where = job
        if source is None:
            raise ImageUnreadable(f"{where} holds no image bytes: publish the dataset again")
        try:
            block[i - first] = read_crop(source, size, name=where).transpose(2, 0, 1)
        except ImageUnreadable as exc:
            raise ImageUnreadable(f"cannot decode the face crop {exc}; {fix}") from None

    if origin["kind"] == "workspace":
        paths = rows["image"].tolist()
        batches = (
            [(i, paths[i], str(paths[i])) for i in range(first, min(first + _READ_BATCH, total))]
            for first in range(0, total, _READ_BATCH)
        )
    else:
        batches = (
            [(target, cell, f"{shard} row {row}") for target, cell, row in jobs]
            for _, shard, jobs in _published_batches(Path(origin["path"]), origin["shards"], rows["image"].tolist())
        )
    # Pillow releases the GIL while it decodes, so a few threads keep every core busy
    with ThreadPoolExecutor(max_workers=4) as pool:
        for jobs in batches:
            first = jobs[0][0]
            block = np.empty((len(jobs), 3, size, size), dtype=np.uint8)
            list(pool.map(functools.partial(one, block=block, first=first), jobs))
            put(first, block)
            done += len(jobs)
            progress("decode faces", done, total)


def _published_batches(
    base: Path, shards: Sequence[str], refs: Sequence[tuple[int, int]]
) -> Iterator[tuple[int, str, list[tuple[int, bytes, int]]]]:
    """``(shard number, shard, [(target row, PNG bytes, row in shard)])`` a record batch at a time."""
    import pyarrow.parquet as pq

    wanted: dict[int, dict[int, int]] = {}
    for target_row, (number, row) in enumerate(refs):
        wanted.setdefault(number, {})[row] = target_row
    for number in sorted(wanted):
        rows_here = wanted[number]
        offset = 0
        for batch in pq.ParquetFile(base / shards[number]).iter_batches(batch_size=_READ_BATCH, columns=["image"]):
            column = batch.column(0)
            cells = (column.field("bytes") if hasattr(column, "field") else column).to_pylist()
            jobs = [
                (rows_here[offset + i], cell, offset + i) for i, cell in enumerate(cells) if offset + i in rows_here
            ]
            offset += batch.num_rows
            if jobs:
                yield number, shards[number], jobs

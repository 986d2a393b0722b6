"""A curated workspace as a Hugging Face–style dataset folder, and its upload to the Hub.

Layout (the Hub's own convention, described by the ``configs:`` block of the card)::

    DIR/
      README.md                                   dataset card: YAML header + prose
      data/<config>/<split>-00000-of-00002.parquet

Configs: ``mix`` (every kept image), ``nm`` (non-masked), ``m`` (masked) and ``pe`` (one row per
MSD-PE pair, paper section 2.2 step 4); a config without rows is not written. Splits are the
source's (``train``, ``validation``, ``test``); rows without a split are ``train``. Folds stay a
column: the paper's protocol cross-validates inside ``train``.

Every column's type comes from the manifest schema (:mod:`ferdata.schema`); images become an
``Image`` feature (file bytes embedded as they are on disk) and labels a ``ClassLabel`` over the
canonical names. The Parquet files carry the ``huggingface`` schema metadata that ``datasets``
reads, and are written with pyarrow alone: ``datasets`` is not needed to publish, only to load.

Shards are deterministic: rows sorted by ``image_id`` (``pair_id`` for ``pe``), a shard count
derived from the bytes to embed, fixed row groups, no timestamps. The same workspace therefore
gives byte-identical files (with the same pyarrow). A pool of threads reads the images of the next
row groups while the current one is written, in order, so memory stays bounded (``2 × workers``
row groups of at most 100 images and 64 MiB) whatever the dataset's size.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import __version__
from .errors import FerdataError, PublishError, UsageError
from .fsutil import TEMP_PREFIX, atomic_path, atomic_write_bytes, sync
from .progress import ProgressFn, null_progress
from .schema import (
    BASIC_LABELS,
    LABELS,
    REMOVED_REASON,
    Column,
    Manifest,
    column,
    has_crop,
    no_crop_reason,
    to_arrow,
)

if TYPE_CHECKING:
    from .workspace import Workspace

CONFIGS = ("mix", "nm", "m", "pe")
IMAGE_MODES = ("aligned", "original")
# manifest split -> Hub split name (the Hub's viewer and trainers expect "validation")
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}
MAX_SHARD_BYTES = 500 * 10**6  # datasets' own max_shard_size ("500MB")
# Row groups: at most 100 rows and 64 MiB of images (datasets caps them at 100 MB), so that the
# Hub's viewer and streaming readers fetch little at a time and the writer's memory stays small.
ROW_GROUP_ROWS = 100
ROW_GROUP_MAX_BYTES = 64 * 2**20
PUSH_TIMEOUT_S = 10.0
CARD_MARKER = "<!-- written by ferdata publish: edits are lost when it runs again -->"

# Manifest columns published beside the image and the label, in this order (mix, nm, m).
IMAGE_ROW_COLUMNS = (
    "image_id", "subject_id", "clip_id", "masked", "occlusion", "fold", "pair_id", "in_pe",
    "label_original", "label_status", "det_score", "sha256",
)
# Columns of a pe row besides the two images and the label; each pair shares them.
PAIR_ROW_COLUMNS = ("pair_id", "subject_id", "fold")
# Left out when null in every published row (clip_id outside video datasets, fold before folds).
OPTIONAL_COLUMNS = ("subject_id", "clip_id", "fold", "pair_id", "det_score")

# why a row is not published (one line each in the summary and the card), besides the reasons
# every usable-row consumer shares (schema.left_out_reasons)
PAIR_WITHOUT_FACE = "MSD-PE pair with a side without a face crop"
PAIR_INCOMPLETE = "in_pe pair_id not held by exactly one non-masked and one masked row"


# ----------------------------------------------------------------------------- features


@dataclass(frozen=True)
class Feature:
    """One published column: its Arrow type, its ``datasets`` feature (JSON) and its card entry."""

    name: str
    arrow_type: pa.DataType
    hf: dict[str, Any]
    card: dict[str, Any]
    source: str  # manifest column (or, for images, the column holding the file path)
    doc: str
    kind: str  # as the card's column list names it
    image: bool = False
    class_names: tuple[str, ...] | None = None


_IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])


def image_feature(name: str, path_column: str, doc: str) -> Feature:
    return Feature(name, _IMAGE_TYPE, {"_type": "Image"}, {"name": name, "dtype": "image"}, path_column, doc, "Image", image=True)


def schema_feature(col: Column, *, name: str | None = None, source: str | None = None, doc: str | None = None,
                   class_names: Sequence[str] = BASIC_LABELS) -> Feature:
    """The published form of a manifest column: labels become a ClassLabel, the rest keep their type.

    ``name``/``source``/``doc`` let one schema column appear under another name (the pe config's
    ``image_id_masked``). Lists use the ``Sequence`` spelling, which every ``datasets`` release
    since 2.x reads.
    """
    name, source, doc = name or col.name, source or col.name, doc or col.doc
    if col.vocabulary == LABELS:
        names = tuple(class_names)
        return Feature(
            name, pa.int64(), {"names": list(names), "_type": "ClassLabel"},
            {"name": name, "dtype": {"class_label": {"names": {str(i): n for i, n in enumerate(names)}}}},
            source, doc, "ClassLabel", class_names=names,
        )
    if col.is_list:
        inner = col.type_name.removeprefix("list<").split(">")[0]  # the schema's names are the Hub's dtypes
        hf: dict[str, Any] = {"feature": {"dtype": inner, "_type": "Value"}, "_type": "Sequence"}
        card: dict[str, Any] = {"name": name, "sequence": inner}
        if col.list_size:
            hf["length"] = card["length"] = col.list_size
        return Feature(name, col.arrow_type, hf, card, source, doc, col.type_name)
    return Feature(name, col.arrow_type, {"dtype": col.type_name, "_type": "Value"}, {"name": name, "dtype": col.type_name},
                   source, doc, col.type_name)


def arrow_schema(features: Sequence[Feature]) -> pa.Schema:
    """The shards' schema, with the ``huggingface`` metadata ``datasets`` reads its features from."""
    info = {"info": {"features": {f.name: f.hf for f in features}}}
    return pa.schema(
        [pa.field(f.name, f.arrow_type) for f in features],
        metadata={b"huggingface": json.dumps(info, sort_keys=False).encode()},
    )


def class_names_for(frame: pd.DataFrame) -> tuple[str, ...]:
    """The canonical 7 basic labels, or all 8 when the data holds contempt."""
    has_contempt = (frame["label"] == "contempt").any() or (frame["label_original"] == "contempt").any()
    return LABELS if has_contempt else BASIC_LABELS


# ----------------------------------------------------------------------------- plan


@dataclass
class _Part:
    """The rows of one config and split, in publishing order, plus the files to embed."""

    config: str
    split: str
    rows: pa.Table  # manifest columns (+ image path columns)
    features: tuple[Feature, ...]

    @property
    def n(self) -> int:
        return self.rows.num_rows

    @functools.cached_property
    def schema(self) -> pa.Schema:
        return arrow_schema(self.features)


@dataclass
class _Shard:
    part: _Part
    row_groups: list[tuple[int, int]]  # (start, stop) rows of the part
    path: Path


def _hub_split(split: Any) -> str:
    return HUB_SPLITS.get(split, "train") if isinstance(split, str) else "train"


def _image_paths(ws: Workspace, frame: pd.DataFrame, images: str) -> pd.Series:
    """Absolute path of each row's image for ``images``, None where the row has none."""
    rel = frame["aligned_path"] if images == "aligned" else frame["original_path"]
    if images == "aligned":
        rel = rel.where(has_crop(frame), None)
    root = str(ws.root)
    return rel.map(lambda p: None if p is None or pd.isna(p) else os.path.join(root, p)).astype(object)


def _is(series: pd.Series, value: bool) -> np.ndarray:
    """Rows where a nullable bool column equals ``value`` (null matches neither)."""
    return series.astype("boolean").eq(value).fillna(False).to_numpy(dtype=bool)


def _select(frame: pd.DataFrame, *, include_removed: bool, left_out: dict[str, int]) -> pd.DataFrame:
    kept = frame
    if not include_removed:
        removed = kept["label_status"] == "removed"
        if removed.any():
            left_out[REMOVED_REASON] = int(removed.sum())
        kept = kept[~removed]
    missing = kept["_image"].isna()
    if missing.any():
        for status, n in kept.loc[missing, "face_status"].fillna("").value_counts().sort_index().items():
            left_out[no_crop_reason(status)] = int(n)
    return kept[~missing]


def _row_features(class_names: tuple[str, ...], present: set[str]) -> tuple[Feature, ...]:
    feats = [image_feature("image", "_image", "the face image (file bytes embedded)"), schema_feature(column("label"), class_names=class_names)]
    for name in IMAGE_ROW_COLUMNS:
        if name in present:
            feats.append(schema_feature(column(name), class_names=class_names))
    return tuple(feats)


def _pair_rows(kept: pd.DataFrame) -> pd.DataFrame:
    """One row per MSD-PE pair: ``pair_id``, the non-masked side's columns, both image paths."""
    pe = kept[_is(kept["in_pe"], True) & kept["pair_id"].notna().to_numpy()]
    nm = pe[_is(pe["masked"], False)].set_index("pair_id", drop=False)
    m = pe[_is(pe["masked"], True)].set_index("pair_id", drop=False)
    good = nm.index[~nm.index.duplicated(keep=False)].intersection(m.index[~m.index.duplicated(keep=False)])
    good = good.sort_values()
    out = nm.loc[good].copy()
    out["_image_masked"] = m.loc[good, "_image"].to_numpy(dtype=object)
    out["_image_id_masked"] = m.loc[good, "image_id"].to_numpy(dtype=object)
    return out.reset_index(drop=True)


def _count_pe_losses(full: pd.DataFrame, published_pairs: int, left_out: dict[str, int]) -> None:
    in_pe = full[_is(full["in_pe"], True) & full["pair_id"].notna().to_numpy()]
    sizes = in_pe.groupby("pair_id").size()
    incomplete = int((sizes != 2).sum())
    complete = int((sizes == 2).sum())
    if incomplete:
        left_out[PAIR_INCOMPLETE] = incomplete
    if complete > published_pairs:
        left_out[PAIR_WITHOUT_FACE] = complete - published_pairs


def plan_parts(
    ws: Workspace,
    manifest: Manifest,
    *,
    images: str = "aligned",
    include_removed: bool = False,
    configs: Sequence[str] = CONFIGS,
) -> tuple[list[_Part], dict[str, int], tuple[str, ...]]:
    """The rows of every config × split, the rows left out (by reason) and the class names."""
    frame = manifest.frame.reset_index(drop=True).copy()
    class_names = class_names_for(frame)
    frame["_image"] = _image_paths(ws, frame, images)
    frame["_split"] = frame["split"].map(_hub_split).astype(object)
    left_out: dict[str, int] = {}
    kept = _select(frame, include_removed=include_removed, left_out=left_out)
    kept = kept.sort_values("image_id", kind="stable")
    present = {n for n in IMAGE_ROW_COLUMNS if n not in OPTIONAL_COLUMNS or kept[n].notna().any()}

    selections = {"mix": kept, "nm": kept[_is(kept["masked"], False)], "m": kept[_is(kept["masked"], True)]}
    parts: list[_Part] = []
    row_feats = _row_features(class_names, present)
    split_order = list(HUB_SPLITS.values())
    for config in (c for c in CONFIGS if c in configs):
        if config == "pe":
            pe_source = frame[frame["_image"].notna()]  # removed rows are never in_pe
            rows = _pair_rows(pe_source.sort_values("image_id", kind="stable"))
            _count_pe_losses(frame, len(rows), left_out)
            feats = _pe_features(class_names, present={n for n in PAIR_ROW_COLUMNS if rows[n].notna().any()})
        else:
            rows = selections[config]
            feats = row_feats
        for split in split_order:
            chosen = rows[rows["_split"] == split]
            if len(chosen):
                parts.append(_Part(config, split, _to_table(chosen), feats))
    return parts, left_out, class_names


def _pe_features(class_names: tuple[str, ...], present: set[str]) -> tuple[Feature, ...]:
    image_id = column("image_id")
    return (
        image_feature("image_nonmasked", "_image", "the non-masked face image (file bytes embedded)"),
        image_feature("image_masked", "_image_masked", "the masked face image (file bytes embedded)"),
        schema_feature(column("label"), class_names=class_names, doc="The label both images of the pair share."),
        *(schema_feature(column(n)) for n in PAIR_ROW_COLUMNS if n in present),
        schema_feature(image_id, name="image_id_nonmasked", doc="`image_id` of the non-masked image."),
        schema_feature(image_id, name="image_id_masked", source="_image_id_masked", doc="`image_id` of the masked image."),
    )


def _to_table(rows: pd.DataFrame) -> pa.Table:
    """The manifest columns of ``rows`` exactly typed, plus the private ``_image*`` path columns."""
    schema_part = rows[[c for c in rows.columns if not c.startswith("_")]]
    table = to_arrow(schema_part.reset_index(drop=True))
    for name in (c for c in rows.columns if c.startswith("_image")):
        table = table.append_column(name, pa.array(rows[name].tolist(), type=pa.string()))
    return table


def _row_groups(row_bytes: Sequence[int], start: int, stop: int) -> list[tuple[int, int]]:
    """Cut rows start:stop into groups of at most ROW_GROUP_ROWS rows and ROW_GROUP_MAX_BYTES."""
    groups, first, size = [], start, 0
    for i in range(start, stop):
        if i > first and (i - first == ROW_GROUP_ROWS or size + row_bytes[i] > ROW_GROUP_MAX_BYTES):
            groups.append((first, i))
            first, size = i, 0
        size += row_bytes[i]
    groups.append((first, stop))
    return groups


def _shards(part: _Part, out_dir: Path, sizes: dict[str, int], shards: int | None) -> list[_Shard]:
    """Even row ranges of ``part`` (``shards`` of them, default one per MAX_SHARD_BYTES), cut into row groups."""
    columns = [part.rows.column(f.source).to_pylist() for f in part.features if f.image]
    row_bytes = [sum(sizes[path] for path in paths) for paths in zip(*columns)]
    if shards is None:
        shards = max(1, math.ceil(sum(row_bytes) / MAX_SHARD_BYTES))
    per = math.ceil(part.n / min(shards, part.n))
    count = math.ceil(part.n / per)
    folder = out_dir / "data" / part.config
    return [
        _Shard(part, _row_groups(row_bytes, i * per, min(part.n, (i + 1) * per)), folder / f"{part.split}-{i:05d}-of-{count:05d}.parquet")
        for i in range(count)
    ]


# ----------------------------------------------------------------------------- writing


def _read_image(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise PublishError(
            f"cannot read {path}: {exc.strerror}; run ferdata align --only-missing (aligned crops) "
            "or ferdata ingest again (originals) to restore it"
        ) from None


def _column(feature: Feature, rows: pa.Table) -> pa.Array:
    values = rows.column(feature.source)
    if feature.image:
        data = [_read_image(p) for p in values.to_pylist()]
        return pa.StructArray.from_arrays(
            [pa.array(data, type=pa.binary()), pa.nulls(len(data), type=pa.string())], fields=list(_IMAGE_TYPE)
        )
    if feature.class_names is not None:
        return pc.index_in(values, value_set=pa.array(feature.class_names)).cast(pa.int64()).combine_chunks()
    return values.cast(feature.arrow_type).combine_chunks()


def _row_group(shard: _Shard, start: int, stop: int) -> pa.Table:
    """Rows ``start:stop`` of a shard as the published table (image files read here)."""
    rows = shard.part.rows.slice(start, stop - start)
    return pa.Table.from_arrays([_column(f, rows) for f in shard.part.features], schema=shard.part.schema)


def _leaf_paths(name: str, kind: pa.DataType) -> list[str]:
    """Parquet's column paths under an Arrow field (what per-column writer options name)."""
    if pa.types.is_struct(kind):
        return [p for child in kind for p in _leaf_paths(f"{name}.{child.name}", child.type)]
    if pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind):
        return _leaf_paths(f"{name}.list.element", kind.value_type)
    return [name]


class _ShardWriter:
    """One shard's Parquet writer on a temporary file that replaces ``shard.path`` on close."""

    def __init__(self, shard: _Shard) -> None:
        schema = shard.part.schema
        images = {f.name for f in shard.part.features if f.image}
        plain = [p for f in schema if f.name not in images for p in _leaf_paths(f.name, f.type)]
        # image bytes are compressed already (PNG/JPEG): no codec, no dictionary, no statistics
        compression = dict.fromkeys(plain, "zstd") | {p: "none" for f in schema if f.name in images for p in _leaf_paths(f.name, f.type)}
        self.shard = shard
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(shard.path, durable=False))
        try:
            self._writer = self._stack.enter_context(
                pq.ParquetWriter(
                    tmp, schema, compression=compression, use_dictionary=plain,
                    write_statistics=plain, write_page_index=False, store_schema=True,
                )
            )
        except BaseException as exc:  # a full disk fails here already: drop the temporary file, say it in one line
            self.close(exc)
            raise

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)

    def close(self, error: BaseException | None = None) -> None:
        if error is None:
            self._stack.close()
        else:  # the temporary file is deleted, shard.path left as it was
            self._stack.__exit__(type(error), error, error.__traceback__)


def _write_shards(jobs: Sequence[_Shard], pool: ThreadPoolExecutor, window: int, advance: Callable[[int], None]) -> list[Path]:
    """Read row groups in parallel (at most ``window`` in memory), write them in order, shard by shard."""
    tasks = ((shard, start, stop) for shard in jobs for start, stop in shard.row_groups)
    pending: deque[tuple[_Shard, int, Future]] = deque()

    def fill() -> None:
        while len(pending) < window and (task := next(tasks, None)) is not None:
            pending.append((task[0], task[2] - task[1], pool.submit(_row_group, *task)))

    written: list[Path] = []
    writer: _ShardWriter | None = None
    try:
        fill()
        while pending:
            shard, n, future = pending.popleft()
            table = future.result()
            fill()
            if writer is None or writer.shard is not shard:
                if writer is not None:
                    writer.close()
                    written.append(writer.shard.path)
                writer = _ShardWriter(shard)
            writer.write(table)
            advance(n)
        if writer is not None:
            writer.close()
            written.append(writer.shard.path)
    except BaseException as exc:
        for _, _, future in pending:
            future.cancel()
        if writer is not None:
            writer.close(exc)
        raise
    return written


def _file_sizes(parts: Sequence[_Part], pool: ThreadPoolExecutor) -> dict[str, int]:
    paths = sorted({p for part in parts for f in part.features if f.image for p in part.rows.column(f.source).to_pylist()})

    def sizes(batch: list[str]) -> list[int]:
        try:
            return [os.stat(path).st_size for path in batch]
        except OSError as exc:
            raise PublishError(
                f"image {exc.filename} is missing ({exc.strerror}): run ferdata align --only-missing, "
                "or ferdata ingest again for originals"
            ) from None

    batches = [paths[i : i + 1024] for i in range(0, len(paths), 1024)]
    return dict(zip(paths, (n for batch in pool.map(sizes, batches) for n in batch)))


_SHARD_NAME = re.compile(r"(?:train|validation|test)-\d{5}-of-\d{5}\.parquet")  # the names _shards gives


def _written_by_publish(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds only what publish writes: its card, or, when a publish was killed
    before the card, nothing but shards and temporary files under publish's own names."""
    card = out_dir / "README.md"
    if card.is_file():
        return CARD_MARKER in card.read_text(encoding="utf-8", errors="replace")

    def shard_folder(folder: Path) -> bool:
        return folder.name in CONFIGS and folder.is_dir() and not folder.is_symlink() and all(
            f.is_file() and not f.is_symlink() and (f.name.startswith(TEMP_PREFIX) or _SHARD_NAME.fullmatch(f.name))
            for f in folder.iterdir()
        )

    for entry in out_dir.iterdir():
        if entry.name.startswith(TEMP_PREFIX) and entry.is_file() and not entry.is_symlink():
            continue
        if entry.name == "data" and entry.is_dir() and not entry.is_symlink() and all(map(shard_folder, entry.iterdir())):
            continue
        return False
    return True


def _prepare_out_dir(out_dir: Path) -> None:
    """``out_dir`` may be new, empty, or a folder an earlier publish wrote (even one killed before
    its card); nothing else is touched."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file: choose a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not _written_by_publish(out_dir):
        raise UsageError(
            f"--out {out_dir} is not empty and was not written by ferdata publish: choose a new or empty folder"
        )
    out_dir.mkdir(parents=True, exist_ok=True)


def _remove_stale(out_dir: Path, written: set[Path]) -> None:
    """Shards of an earlier publish that this one did not write (another shard count or config),
    and the temporary files of a publish that was killed."""
    for path in sorted(out_dir.glob(f"{TEMP_PREFIX}*")):
        path.unlink()
    data = out_dir / "data"
    for path in sorted(data.glob("*/*.parquet")) if data.is_dir() else []:
        if path not in written:
            path.unlink()
    for path in sorted(data.glob(f"*/{TEMP_PREFIX}*")) if data.is_dir() else []:
        path.unlink()
    for folder in sorted(data.iterdir()) if data.is_dir() else []:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


# ----------------------------------------------------------------------------- dataset card


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./*-]*$")
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    text = str(value)
    # JSON's double-quoted strings are valid YAML; plain words stay plain for a readable header
    return text if _PLAIN.match(text) and text.lower() not in _YAML_WORDS else json.dumps(text, ensure_ascii=False)


def to_yaml(value: Any, indent: int = 0) -> str:
    """A small, deterministic YAML writer for the card header (dicts, lists, scalars)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{_scalar(key)}:")
                lines.append(to_yaml(item, indent + (0 if isinstance(item, list) else 2)))
            else:
                empty = "[]" if isinstance(item, list) else "{}" if isinstance(item, dict) else _scalar(item)
                lines.append(f"{pad}{_scalar(key)}: {empty}")
    else:
        for item in value:
            if isinstance(item, dict) and item or isinstance(item, list) and item:
                nested = to_yaml(item, indent + 2)
                lines.append(f"{pad}- {nested[indent + 2:]}")
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return "\n".join(lines)


GATED_FIELDS = {
    "Name": "text",
    "Affiliation (university or lab)": "text",
    "Institutional e-mail": "text",
    "I received this dataset from its authors and will not share it outside my lab": "checkbox",
}


def card_header(dataset: str, parts: Sequence[_Part], terms: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML header: licence, gating, configs and their features and split sizes."""
    header: dict[str, Any] = {
        "pretty_name": f"{terms['title']} (curated with ferdata)",
        "license": terms.get("license", "other"),
    }
    if header["license"] == "other":
        header["license_name"] = f"{dataset}-terms"
    header["task_categories"] = ["image-classification"]
    header["tags"] = ["facial-expression-recognition", "ferdata"]
    if terms["gated"]:
        header["extra_gated_prompt"] = " ".join(terms.get("text", terms.get("summary", "")).split())
        header["extra_gated_fields"] = dict(GATED_FIELDS)
    configs: dict[str, list[_Part]] = {}
    for part in parts:
        configs.setdefault(part.config, []).append(part)
    header["configs"] = [
        {
            "config_name": name,
            **({"default": True} if i == 0 else {}),
            "data_files": [{"split": p.split, "path": f"data/{name}/{p.split}-*"} for p in config_parts],
        }
        for i, (name, config_parts) in enumerate(configs.items())
    ]
    header["dataset_info"] = [
        {
            "config_name": name,
            "features": [f.card for f in config_parts[0].features],
            "splits": [{"name": p.split, "num_examples": p.n} for p in config_parts],
        }
        for name, config_parts in configs.items()
    ]
    return header


def _curation(provenance: dict[str, Any], images: str, include_removed: bool) -> list[str]:
    """One line per step that shaped the data, from the manifest's provenance."""
    lines = []
    ingest = provenance.get("ingest")
    if ingest:
        lines.append(f"- **ingest**: {ingest.get('rows', '?')} images read from `{ingest.get('archive', '?')}` "
                     f"by ferdata {ingest.get('ferdata_version', '?')} (adapter `{ingest.get('adapter', '?')}`).")
    align = provenance.get("align")
    if align:
        model = f" (model SHA-256 `{align['model_sha256'][:16]}…`)" if align.get("model_sha256") else ""
        lines.append(f"- **face alignment**: detector `{align.get('detector', '?')}` on `{align.get('provider', '?')}`{model}, "
                     f"5-point similarity transform to a {align.get('size', '?')}×{align.get('size', '?')} crop; faces: "
                     + ", ".join(f"{k} {v}" for k, v in align.get("counts", {}).items()) + ".")
    else:
        lines.append("- **face alignment**: not run.")
    relabel = provenance.get("relabel")
    if relabel:
        rule = f"scheme `{relabel.get('scheme', '?')}`"
        if relabel.get("scheme") == "msd-e":
            rule += (f": the winning class needs at least {relabel.get('min_agree')} of the annotators, "
                     f"another class at most {relabel.get('max_other')} (`{relabel.get('other_rule')}` rule), "
                     f"annotators: {relabel.get('annotators')}")
        lines.append(f"- **relabelling** (paper section 2.2): {rule}; votes file SHA-256 "
                     f"`{str(relabel.get('votes_sha256', '?'))[:16]}…`.")
    else:
        lines.append("- **relabelling**: not run; labels are the source's.")
    pairs = provenance.get("pairs")
    if pairs:
        lines.append(f"- **pairs**: {pairs.get('pairs', '?')} non-masked/masked pairs, {pairs.get('in_pe', '?')} in MSD-PE "
                     "(both sides keep the same label).")
    folds = provenance.get("folds")
    if folds:
        lines.append(f"- **folds**: {folds.get('k', '?')} identity-independent folds, seed {folds.get('seed', '?')}, "
                     f"method `{folds.get('method', '?')}`, stratified by {folds.get('stratified_by', '?')}, "
                     f"balanced on {folds.get('balanced_on', 'labelled rows')}; pairs, clips and verified duplicates "
                     "never span two folds.")
    else:
        lines.append("- **folds**: not assigned.")
    lines.append(f"- **publish**: ferdata {__version__}, images: {images} "
                 f"({'aligned crops' if images == 'aligned' else 'the original files, unchanged'}); "
                 f"removed images {'kept, with label_status removed' if include_removed else 'left out'}.")
    return lines


def _counts_table(parts: Sequence[_Part], class_names: tuple[str, ...]) -> list[str]:
    label_cols = list(class_names) + (["(removed)"] if any(None in p.rows.column("label").to_pylist() for p in parts) else [])
    lines = ["| config | split | rows | " + " | ".join(label_cols) + " |", "|---|---|---:|" + "---:|" * len(label_cols)]
    for part in parts:
        counts = _label_counts(part, class_names)
        lines.append(f"| {part.config} | {part.split} | {part.n:,} | " + " | ".join(f"{counts.get(c, 0):,}" for c in label_cols) + " |")
    return lines


def fold_counts(parts: Sequence[_Part], config: str = "mix") -> dict[int, int]:
    """Published rows per fold of one config (all its splits); empty before folds are assigned."""
    counts: dict[int, int] = {}
    for part in parts:
        if part.config == config and "fold" in part.rows.column_names:
            for fold in part.rows.column("fold").to_pylist():
                if fold is not None:
                    counts[int(fold)] = counts.get(int(fold), 0) + 1
    return dict(sorted(counts.items()))


def _fold_lines(parts: Sequence[_Part]) -> list[str]:
    counts = fold_counts(parts)
    if not counts:
        return []
    mean = sum(counts.values()) / len(counts)
    worst = max(abs(n / mean - 1) for n in counts.values())
    listed = ", ".join(f"fold {f}: {n:,}" for f, n in counts.items())
    return [f"Published `mix` images per fold: {listed} (largest deviation from the mean: {worst:.1%}).", ""]


_CONFIG_DOCS = {
    "mix": "every published image, non-masked and masked",
    "nm": "non-masked images (`masked` false)",
    "m": "masked images (`masked` true)",
    "pe": "one row per MSD-PE pair: the non-masked and the masked image of one subject and expression, same label",
}


def dataset_card(manifest: Manifest, result: PublishResult, parts: Sequence[_Part], terms: dict[str, Any], *, include_removed: bool) -> str:
    """README.md: YAML header, then what the data is, counts, columns, curation, terms, citation."""
    name = manifest.dataset
    out = ["---", to_yaml(card_header(name, parts, terms)), "---", "", CARD_MARKER, ""]
    out += [f"# {terms['title']}, curated with ferdata", ""]
    what = "aligned face crops" if result.images == "aligned" else "original images"
    out += [
        (f"{terms['title']} (`{name}`) as curated in one licensee's ferdata workspace: a facial expression "
         f"recognition dataset with canonical labels ({', '.join(result.class_names)}), {what} embedded as "
         "`Image`, and the curation columns of the ferdata manifest."),
        "",
    ]
    if terms["gated"]:
        out += [
            (f"**Not for redistribution.** {terms.get('summary', '')} Keep any copy of this folder or repository "
             "private to your lab (see *Terms of use*)."),
            "",
        ]
    out += ["## Load", "", "```python", "from datasets import load_dataset", "",
            f'ds = load_dataset("path/to/this/folder", "{parts[0].config}")  # or the Hub repo id', "```", ""]
    out += ["## Configs and counts", ""]
    out += [f"- `{c}`: {_CONFIG_DOCS[c]}" for c in result.counts]
    out += ["", "Folds are a column (`fold`), not splits: cross-validate inside `train`.", ""]
    out += _counts_table(parts, result.class_names) + [""]
    out += _fold_lines(parts)
    if result.left_out:
        out += ["Left out: " + "; ".join(f"{reason}: {n:,}" for reason, n in result.left_out.items()) + ".", ""]
    out += ["## Columns", ""]
    seen: set[str] = set()
    for feat in (f for part in parts for f in part.features):
        if feat.name not in seen:
            seen.add(feat.name)
            out.append(f"- `{feat.name}` ({feat.kind}): {feat.doc}")
    out += ["", "## Curation", ""]
    out += _curation(manifest.provenance, result.images, include_removed) + [""]
    out += ["## Terms of use", "", terms.get("summary", ""), "", " ".join(terms.get("text", "").split()) or "(none given)", ""]
    citation = terms.get("citation", "").strip()
    if citation:
        out += ["## Citation", "", "```bibtex", citation, "```", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- push


def check_push_allowed(dataset: str, terms: dict[str, Any], *, public: bool, repo_private: bool | None = None) -> None:
    """Refuse a copy of a gated dataset that anyone could read, unless ``public`` says so knowingly.

    ``repo_private`` is the visibility of an existing Hub repo (None: not known yet). A private
    push never needs --public; pushing into an existing public repo does, and the error names the
    dataset's terms.
    """
    if not terms.get("gated") or public:
        return
    if repo_private is False:
        raise PublishError(
            f"the Hub repo is public and {dataset} may not be shared freely (terms: {terms.get('summary', 'see manifests/')}): "
            "push to a private repo, or pass --public if these terms allow it"
        )


def _within(seconds: float, call: Callable[[], Any], what: str) -> Any:
    """``call()`` in a helper thread, abandoned after ``seconds``: an unreachable Hub must not hang."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread below)
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="ferdata-push-probe")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise PublishError(f"no answer from {what} within {seconds:g} s: check the network (or HF_ENDPOINT) and push again")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _hub_failure(exc: BaseException, endpoint: str, step: str) -> PublishError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 401:
        return PublishError(f"{endpoint} rejected the Hugging Face token while {step}: run `hf auth login` again or set HF_TOKEN")
    if status == 403:
        return PublishError(f"{endpoint} refused {step} (403): the token needs write access to that namespace")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PublishError(f"cannot reach the Hub at {endpoint} while {step} ({first}): check the network, then push again")


def hub_client(timeout: float = PUSH_TIMEOUT_S):
    """A logged-in ``HfApi`` whose token the Hub accepted, or a one-line PublishError within ``timeout`` s.

    Needs a token (``hf auth login`` or ``$HF_TOKEN``). :func:`publish` calls it before writing
    anything, so that a push without a token or network fails at once, not after the shards.
    """
    try:
        from huggingface_hub import HfApi, get_token
    except ImportError:
        raise PublishError("--push needs huggingface_hub: pip install huggingface_hub") from None
    try:
        token = get_token()
    except Exception as exc:  # noqa: BLE001 (an OIDC token exchange via $HF_OIDC_RESOURCE failed)
        raise PublishError(f"cannot get a Hugging Face token ({exc}): run `hf auth login` or set HF_TOKEN") from None
    if not token:
        raise PublishError("no Hugging Face token: run `hf auth login` (or set HF_TOKEN), then publish again with --push")
    api = HfApi(token=token)
    try:
        _within(timeout, api.whoami, api.endpoint)
    except FerdataError:
        raise
    except Exception as exc:  # noqa: BLE001 (huggingface_hub and httpx errors share no useful base class)
        raise _hub_failure(exc, api.endpoint, "checking the token") from None
    return api


def push_folder(out_dir: Path, repo_id: str, *, dataset: str, terms: dict[str, Any], public: bool = False,
                api=None, timeout: float = PUSH_TIMEOUT_S) -> str:
    """Upload ``out_dir`` to the Hub dataset repo ``repo_id`` (private unless ``public``); its URL.

    Only README.md and data/ go up; shards the folder no longer has are deleted on the Hub too.
    An existing public repo is refused for a gated dataset unless ``public``; a public gated
    dataset gets the Hub's manual approval of access requests.
    """
    api = api or hub_client(timeout)
    step = f"creating {repo_id}"
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=not public, exist_ok=True)
        info = api.repo_info(repo_id, repo_type="dataset")
        check_push_allowed(dataset, terms, public=public, repo_private=bool(getattr(info, "private", True)))
        if public and terms.get("gated"):
            step = f"turning on access requests for {repo_id}"
            api.update_repo_settings(repo_id, repo_type="dataset", gated="manual")
        step = f"uploading to {repo_id}"
        api.upload_folder(
            repo_id=repo_id, repo_type="dataset", folder_path=str(out_dir),
            allow_patterns=["README.md", "data/**"], delete_patterns=["data/**"],
            commit_message=f"ferdata {__version__} publish of {dataset}",
        )
    except FerdataError:
        raise
    except Exception as exc:  # noqa: BLE001 (huggingface_hub and httpx errors share no useful base class)
        raise _hub_failure(exc, api.endpoint, step) from None
    return str(url)


# ----------------------------------------------------------------------------- entry point


@dataclass
class PublishResult:
    """What :func:`publish` wrote (and pushed)."""

    dataset: str
    out_dir: Path
    images: str
    class_names: tuple[str, ...]
    counts: dict[str, dict[str, int]]  # config -> split -> rows
    left_out: dict[str, int]  # reason -> rows (pairs for the pe reasons)
    gated: bool
    folds: dict[int, int] = field(default_factory=dict)  # published mix rows per fold
    files: list[Path] = field(default_factory=list)
    bytes_written: int = 0
    seconds: float = 0.0
    pushed_to: str | None = None

    @property
    def configs(self) -> list[str]:
        return list(self.counts)

    @property
    def rows(self) -> int:
        return sum(n for splits in self.counts.values() for n in splits.values())


def _label_counts(part: _Part, class_names: tuple[str, ...]) -> dict[str, int]:
    labels = pd.Series(part.rows.column("label").to_pylist(), dtype=object)
    counts = {name: int((labels == name).sum()) for name in class_names}
    if labels.isna().any():
        counts["(removed)"] = int(labels.isna().sum())
    return counts


def terms_of(dataset: str) -> dict[str, Any]:
    """The ``[terms]`` and ``title`` of ``manifests/<dataset>.toml`` (empty terms if it has none)."""
    from .resources import load_toml

    try:
        facts = load_toml(dataset)
    except FerdataError:
        facts = {}
    terms = dict(facts.get("terms", {}))
    terms.setdefault("license", "other")
    terms["gated"] = bool(terms.get("gated", False))
    terms["title"] = facts.get("title", dataset)
    return terms


def publish(
    ws: Workspace,
    out_dir: Path | str,
    *,
    dataset: str | None = None,
    images: str = "aligned",
    include_removed: bool = False,
    push: str | None = None,
    public: bool = False,
    shards: int | None = None,
    configs: Sequence[str] | None = None,
    workers: int | None = None,
    push_timeout: float = PUSH_TIMEOUT_S,
    progress: ProgressFn | None = None,
) -> PublishResult:
    """Write ``out_dir`` as a Hugging Face dataset folder (README.md card + Parquet shards).

    ``images``: ``aligned`` embeds the face crops of the usable rows (label and crop: ``aligned``
    or ``registered``; the others are left out and counted by reason), ``original`` the extracted
    originals of every labelled row. Removed rows are left out unless ``include_removed``
    (their ``label`` is then null and ``label_status`` says ``removed``). ``shards`` fixes the
    shard count of every config × split (default: one per 500 MB of images); ``configs``
    chooses among mix, nm, m, pe (default: all that have rows). ``push`` then uploads the folder
    to that Hub dataset repo, private unless ``public``. Reads the workspace only: no lock needed.
    """
    started = time.perf_counter()
    if images not in IMAGE_MODES:
        raise UsageError(f"--images {images} is not one of {', '.join(IMAGE_MODES)}")
    configs = tuple(configs or CONFIGS)
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise UsageError(f"unknown config {', '.join(unknown)}: choose from {', '.join(CONFIGS)}")
    if shards is not None and shards < 1:
        raise UsageError(f"--shards {shards} must be 1 or more")
    if public and push is None:
        raise UsageError("--public only applies with --push REPO_ID: a local folder is neither public nor private")
    progress = progress or null_progress
    manifest = ws.load(dataset)
    terms = terms_of(manifest.dataset)
    hub = hub_client(push_timeout) if push is not None else None  # no token or network: fail before writing
    out_dir = Path(out_dir).expanduser().resolve()
    _prepare_out_dir(out_dir)

    parts, left_out, class_names = plan_parts(ws, manifest, images=images, include_removed=include_removed, configs=configs)
    if not parts:
        reasons = ", ".join(f"{k}: {v}" for k, v in left_out.items()) or "the manifest is empty"
        raise PublishError(
            f"nothing to publish from {manifest.dataset} ({reasons}): run ferdata align, or pass --images original"
        )
    total = sum(p.n for p in parts)
    done = 0
    lock = threading.Lock()

    def advance(n: int) -> None:
        nonlocal done
        with lock:
            done += n
            progress("publish", done, total)

    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    progress("publish", 0, total)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ferdata-publish") as pool:
        sizes = _file_sizes(parts, pool)
        jobs = [s for part in parts for s in _shards(part, out_dir, sizes, shards)]
        written = _write_shards(jobs, pool, window=2 * workers, advance=advance)

    counts: dict[str, dict[str, int]] = {}
    for part in parts:
        counts.setdefault(part.config, {})[part.split] = part.n
    result = PublishResult(
        dataset=manifest.dataset, out_dir=out_dir, images=images, class_names=class_names,
        counts=counts, left_out=left_out, gated=terms["gated"], folds=fold_counts(parts),
    )
    card = out_dir / "README.md"
    atomic_write_bytes(card, dataset_card(manifest, result, parts, terms, include_removed=include_removed).encode(), durable=False)
    _remove_stale(out_dir, set(written))
    sync()
    result.files = [card, *written]
    result.bytes_written = sum(p.stat().st_size for p in result.files)
    if push is not None:
        result.pushed_to = push_folder(out_dir, push, dataset=manifest.dataset, terms=terms, public=public, api=hub)
    result.seconds = time.perf_counter() - started
    return result

"""Which manifest rows each config and split publishes, and why the others are left out.

Configs (:data:`~ferdata.publish.layout.CONFIGS`): ``mix`` (every kept image), ``nm``
(non-masked), ``m`` (masked) and ``pe`` (one row per MSD-PE pair, paper section 2.2 step 4); a
config without rows is not written. Splits are the source's under their Hub names (``train``,
``validation``, ``test``); rows without a split are ``train``. Folds stay a column: the paper's
protocol cross-validates inside ``train``.

Rows are sorted by ``image_id`` (``pe``: by ``pair_id``), so the plan, and the shards written
from it, depend on the manifest alone.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from ..schema import REMOVED_REASON, Manifest, has_crop, no_crop_reason, to_arrow
from . import layout
from .features import (
    IMAGE_PATH,
    IMAGE_ROW_COLUMNS,
    MASKED_IMAGE_ID,
    MASKED_IMAGE_PATH,
    OPTIONAL_COLUMNS,
    PAIR_ROW_COLUMNS,
    Feature,
    arrow_schema,
    class_names_for,
    pe_features,
    row_features,
)

if TYPE_CHECKING:
    from ..workspace import Workspace

IMAGE_MODES = ("aligned", "original")
_PATH_COLUMNS = (IMAGE_PATH, MASKED_IMAGE_PATH, MASKED_IMAGE_ID)

# why a row is not published (one line each in the summary and the card), besides the reasons
# every usable-row consumer shares (schema.left_out_reasons)
PAIR_WITHOUT_FACE = "MSD-PE pair with a side without a face crop"
PAIR_INCOMPLETE = "in_pe pair_id not held by exactly one non-masked and one masked row"


@dataclass
class Part:
    """The rows of one config and split, in publishing order, plus the files to embed."""

    config: str
    split: str  # Hub split name
    rows: pa.Table  # manifest columns (+ the private image path columns)
    features: tuple[Feature, ...]
    # filled when the shards are written (shards.write_parts): the rows' Arrow size, which
    # ``datasets`` records as the split's ``num_bytes``, and the shard files
    num_bytes: int = 0
    files: list[Path] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.rows.num_rows

    @functools.cached_property
    def schema(self) -> pa.Schema:
        return arrow_schema(self.features)


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
    missing = kept[IMAGE_PATH].isna()
    if missing.any():
        for status, n in kept.loc[missing, "face_status"].fillna("").value_counts().sort_index().items():
            left_out[no_crop_reason(status)] = int(n)
    return kept[~missing]


def _pair_rows(kept: pd.DataFrame) -> pd.DataFrame:
    """One row per MSD-PE pair: ``pair_id``, the non-masked side's columns, both image paths."""
    pe = kept[_is(kept["in_pe"], True) & kept["pair_id"].notna().to_numpy()]
    nm = pe[_is(pe["masked"], False)].set_index("pair_id", drop=False)
    m = pe[_is(pe["masked"], True)].set_index("pair_id", drop=False)
    good = nm.index[~nm.index.duplicated(keep=False)].intersection(m.index[~m.index.duplicated(keep=False)])
    good = good.sort_values()
    out = nm.loc[good].copy()
    out[MASKED_IMAGE_PATH] = m.loc[good, IMAGE_PATH].to_numpy(dtype=object)
    out[MASKED_IMAGE_ID] = m.loc[good, "image_id"].to_numpy(dtype=object)
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


def _to_table(rows: pd.DataFrame) -> pa.Table:
    """The manifest columns of ``rows`` exactly typed, plus the private image path columns."""
    schema_part = rows[[c for c in rows.columns if not c.startswith("_")]]
    table = to_arrow(schema_part.reset_index(drop=True))
    for name in (c for c in rows.columns if c in _PATH_COLUMNS):
        table = table.append_column(name, pa.array(rows[name].tolist(), type=pa.string()))
    return table


def plan_parts(
    ws: Workspace,
    manifest: Manifest,
    *,
    images: str = "aligned",
    include_removed: bool = False,
    configs: Sequence[str] = layout.CONFIGS,
) -> tuple[list[Part], dict[str, int], tuple[str, ...]]:
    """The rows of every config × split, the rows left out (by reason) and the class names.

    A published ``in_pe`` says that the image's pair is a row of ``pe``: the manifest's
    ``in_pe`` (the MSD-PE rule) and both sides published. A pair with a side left out (no face
    crop) is in MSD-PE in the manifest but not in the published data, so its other side is
    published with ``in_pe`` false; the card counts the pair under its reason.
    """
    frame = manifest.frame.reset_index(drop=True).copy()
    class_names = class_names_for(frame)
    frame[IMAGE_PATH] = _image_paths(ws, frame, images)
    frame["_split"] = frame["split"].map(layout.hub_split).astype(object)
    left_out: dict[str, int] = {}
    kept = _select(frame, include_removed=include_removed, left_out=left_out)
    kept = kept.sort_values("image_id", kind="stable")
    present = {n for n in IMAGE_ROW_COLUMNS if n not in OPTIONAL_COLUMNS or kept[n].notna().any()}

    pe_source = frame[frame[IMAGE_PATH].notna()]  # removed rows are never in_pe
    pair_rows = _pair_rows(pe_source.sort_values("image_id", kind="stable"))
    if layout.PAIR_CONFIG in configs:
        _count_pe_losses(frame, len(pair_rows), left_out)
    in_published_pairs = set(pair_rows["image_id"]) | set(pair_rows[MASKED_IMAGE_ID])
    kept = kept.assign(in_pe=kept["image_id"].isin(in_published_pairs).to_numpy(dtype=bool))

    selections = {"mix": kept, "nm": kept[_is(kept["masked"], False)], "m": kept[_is(kept["masked"], True)]}
    parts: list[Part] = []
    image_row_features = row_features(class_names, present, images=images, include_removed=include_removed)
    for config in (c for c in layout.CONFIGS if c in configs):
        if config == layout.PAIR_CONFIG:
            rows = pair_rows
            feats = pe_features(
                class_names, present={n for n in PAIR_ROW_COLUMNS if rows[n].notna().any()}, images=images
            )
        else:
            rows = selections[config]
            feats = image_row_features
        for split in layout.HUB_SPLITS.values():
            chosen = rows[rows["_split"] == split]
            if len(chosen):
                parts.append(Part(config, split, _to_table(chosen), feats))
    return parts, left_out, class_names


def fold_counts(parts: Sequence[Part], config: str = "mix") -> dict[int, int]:
    """Published rows per fold of one config (all its splits); empty before folds are assigned."""
    counts: dict[int, int] = {}
    for part in parts:
        if part.config == config and "fold" in part.rows.column_names:
            for fold in part.rows.column("fold").to_pylist():
                if fold is not None:
                    counts[int(fold)] = counts.get(int(fold), 0) + 1
    return dict(sorted(counts.items()))

"""Pairing each non-masked image with its masked twin, and the MSD-PE subset.

Pure table functions: :func:`pair_images` takes a manifest frame and returns a new frame with
``pair_id`` and ``in_pe`` set, the pair table and the list of unpaired images.

Twins are found by ``pair_key`` (set by the source adapter; MSD-E: the file name an image shares
with its twin across ``MSD-E/`` and ``MSD-ME/``). Rows without a ``pair_key`` fall back to
``subject_id`` + ``label_original`` (+ ``take`` where the frame has that column, for subjects who
posed twice). A group pairs when it holds exactly one non-masked and one masked image; its
``pair_id`` is the ``pair_key`` itself, or ``subject|label[|take]`` for the fallback, so the same
manifest always gets the same ids.

A pair is in MSD-PE (``in_pe``) when both images keep a label and the two labels agree (paper,
section 2.2, step 3). :func:`pair_images` recomputes everything from scratch, so it is idempotent;
:func:`refresh_in_pe` only re-marks ``in_pe`` for existing pairs (after a relabel).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .schema import LABELS
from .workspace import Workspace, WorkspaceLike, writes_workspace

TAKE_COLUMN = "take"  # optional extra manifest column: which posing session of a subject

# why a pair is not in MSD-PE
KEPT = "kept"
LABEL_MISMATCH = "label mismatch"
ONE_SIDE_REMOVED = "one side removed"
BOTH_REMOVED = "both sides removed"
# why an image has no pair
TWIN_MISSING = "twin missing"
AMBIGUOUS = "several candidate twins"
MASKED_UNKNOWN = "masked unknown"
NO_KEY = "no pair_key or subject_id"

PAIR_COLUMNS = (
    "pair_id",
    "subject_id",
    "nonmasked_id",
    "masked_id",
    "label_nonmasked",
    "label_masked",
    "in_pe",
    "status",
)
UNPAIRED_COLUMNS = ("image_id", "masked", "label", "reason")


def _text(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), None)


def pair_keys(frame: pd.DataFrame) -> pd.Series:
    """The key each image pairs on (None where it has none): ``pair_key``, else subject|label[|take]."""
    fallback = _text(frame["subject_id"]) + "|" + _text(frame["label_original"])
    if TAKE_COLUMN in frame.columns:
        take = frame[TAKE_COLUMN].map(lambda v: None if pd.isna(v) else str(v)).astype(object)
        fallback = fallback.where(take.isna(), fallback + "|" + take)
    fallback = fallback.where(frame["subject_id"].notna(), None)
    key = _text(frame["pair_key"]) if "pair_key" in frame.columns else pd.Series(None, index=frame.index, dtype=object)
    return key.where(key.notna(), fallback).astype(object)


def _pe_status(label_nm: pd.Series, label_m: pd.Series) -> pd.Series:
    nm, m = label_nm.notna(), label_m.notna()
    status = np.select(
        [nm & m & (label_nm == label_m), nm & m, nm ^ m],
        [KEPT, LABEL_MISMATCH, ONE_SIDE_REMOVED],
        default=BOTH_REMOVED,
    )
    return pd.Series(status, index=label_nm.index, dtype=object)


@dataclass
class Pairing:
    """The result of :func:`pair_images`."""

    frame: pd.DataFrame
    pairs: pd.DataFrame
    unpaired: pd.DataFrame

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)

    @property
    def n_in_pe(self) -> int:
        return int(self.pairs["in_pe"].sum())

    def removed_by_reason(self) -> dict[str, int]:
        """Pairs left out of MSD-PE, by reason."""
        counts = self.pairs.loc[self.pairs["status"] != KEPT, "status"].value_counts()
        return {k: int(counts.get(k, 0)) for k in (LABEL_MISMATCH, ONE_SIDE_REMOVED, BOTH_REMOVED) if counts.get(k, 0)}

    def unpaired_by_reason(self) -> dict[str, int]:
        counts = self.unpaired["reason"].value_counts()
        return {str(k): int(v) for k, v in counts.items()}

    def pe_per_label(self) -> dict[str, int]:
        """MSD-PE pairs per label, as in the paper's Table 2."""
        counts = self.pairs.loc[self.pairs["in_pe"], "label_nonmasked"].value_counts()
        return {label: int(counts.get(label, 0)) for label in LABELS if counts.get(label, 0)}


def pair_images(frame: pd.DataFrame) -> Pairing:
    """Link twins and mark MSD-PE; ``pair_id`` and ``in_pe`` are recomputed from scratch."""
    key = pair_keys(frame)
    masked = frame["masked"].astype("boolean")
    known = key.notna() & masked.notna()
    groups = pd.DataFrame({"key": key[known], "masked": masked[known].astype(bool)})
    sizes = groups.groupby("key", sort=False)["masked"].agg(["size", "sum"])
    good = sizes.index[(sizes["size"] == 2) & (sizes["sum"] == 1)]

    is_pair = known & key.isin(good)
    rows = frame.loc[is_pair, ["image_id", "subject_id", "label"]].assign(
        key=key[is_pair], masked=masked[is_pair].astype(bool)
    )
    nonmasked = rows[~rows["masked"]].set_index("key")
    masked_side = rows[rows["masked"]].set_index("key").reindex(nonmasked.index)
    pairs = pd.DataFrame(
        {
            "pair_id": nonmasked.index.to_numpy(dtype=object),
            "subject_id": _text(nonmasked["subject_id"]).to_numpy(dtype=object),
            "nonmasked_id": nonmasked["image_id"].to_numpy(dtype=object),
            "masked_id": masked_side["image_id"].to_numpy(dtype=object),
            "label_nonmasked": _text(nonmasked["label"]).to_numpy(dtype=object),
            "label_masked": _text(masked_side["label"]).to_numpy(dtype=object),
        }
    )
    pairs["status"] = _pe_status(pairs["label_nonmasked"], pairs["label_masked"])
    pairs["in_pe"] = pairs["status"] == KEPT
    pairs = pairs[list(PAIR_COLUMNS)].sort_values("pair_id", kind="stable").reset_index(drop=True)

    in_pe_keys = set(pairs.loc[pairs["in_pe"], "pair_id"])
    out = frame.copy()
    out["pair_id"] = key.where(is_pair, None).astype(object)
    out["in_pe"] = pd.array(is_pair & key.isin(in_pe_keys), dtype="boolean")

    size = key.map(sizes["size"]).fillna(0)
    reason = np.select(
        [key.isna(), masked.isna().to_numpy(dtype=bool, na_value=True), size == 1],
        [NO_KEY, MASKED_UNKNOWN, TWIN_MISSING],
        default=AMBIGUOUS,
    )
    lonely = ~is_pair
    unpaired = pd.DataFrame(
        {
            "image_id": frame.loc[lonely, "image_id"].to_numpy(dtype=object),
            "masked": masked[lonely].to_numpy(),
            "label": _text(frame.loc[lonely, "label"]).to_numpy(dtype=object),
            "reason": reason[lonely.to_numpy()].astype(object),
        }
    )
    unpaired["masked"] = unpaired["masked"].astype("boolean")
    return Pairing(frame=out, pairs=pairs, unpaired=unpaired)


def refresh_in_pe(frame: pd.DataFrame) -> pd.DataFrame:
    """``in_pe`` re-marked from the current labels of the existing pairs (pair_id kept as is)."""
    if "pair_id" not in frame.columns or frame["pair_id"].isna().all():
        return frame
    label = _text(frame["label"])
    has_pair = frame["pair_id"].notna()
    by_pair = pd.DataFrame({"pair_id": frame.loc[has_pair, "pair_id"], "label": label[has_pair]}).groupby("pair_id")[
        "label"
    ]
    agree = (by_pair.size() == 2) & (by_pair.count() == 2) & (by_pair.nunique() == 1)
    out = frame.copy()
    out["in_pe"] = pd.array(has_pair & frame["pair_id"].map(agree).fillna(False).astype(bool), dtype="boolean")
    return out


# ----------------------------------------------------------------------------- workspace entry point


@dataclass
class PairsResult:
    """What :func:`make_pairs` did."""

    dataset: str
    n_images: int
    n_pairs: int
    n_in_pe: int
    removed_by_reason: dict[str, int]
    unpaired_by_reason: dict[str, int]
    pe_per_label: dict[str, int]
    unpaired: pd.DataFrame
    written: list[Path] = field(default_factory=list)


@writes_workspace("pairs")
def make_pairs(ws: WorkspaceLike, *, dataset: str | None = None) -> PairsResult:
    """Pair a workspace's images and write the manifest plus ``tables/<dataset>/pairs.*``.

    Writes ``pairs.parquet``/``pairs.csv`` (one row per pair) and ``unpaired.csv``, each
    atomically, then the manifest; records ``provenance["pairs"]``.
    """
    ws = Workspace.of(ws)
    from .fsutil import atomic_path
    from .schema import Manifest

    name = ws.dataset_name(dataset)
    manifest = ws.load(name)
    pairing = pair_images(manifest.frame)
    folder = ws.tables_dir(name)
    written = [folder / "pairs.parquet", folder / "pairs.csv", folder / "unpaired.csv"]
    with atomic_path(written[0]) as tmp:
        pairing.pairs.to_parquet(tmp, index=False)
    with atomic_path(written[1]) as tmp:
        pairing.pairs.to_csv(tmp, index=False)
    with atomic_path(written[2]) as tmp:
        pairing.unpaired.to_csv(tmp, index=False)
    result = PairsResult(
        dataset=name,
        n_images=len(manifest.frame),
        n_pairs=pairing.n_pairs,
        n_in_pe=pairing.n_in_pe,
        removed_by_reason=pairing.removed_by_reason(),
        unpaired_by_reason=pairing.unpaired_by_reason(),
        pe_per_label=pairing.pe_per_label(),
        unpaired=pairing.unpaired,
        written=written,
    )
    info: dict[str, Any] = {
        "pairs": result.n_pairs,
        "in_pe": result.n_in_pe,
        "removed": result.removed_by_reason,
        "unpaired": result.unpaired_by_reason,
        "keys": "pair_key, else subject_id|label_original"
        + (f"|{TAKE_COLUMN}" if TAKE_COLUMN in manifest.frame else ""),
        "table": ws.relative(written[0]),
    }
    manifest.provenance["pairs"] = info
    ws.save(Manifest(dataset=name, frame=pairing.frame, provenance=manifest.provenance))
    return result

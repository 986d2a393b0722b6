"""``ferdata stats``: counts by label × masked × split (× fold), shaped like the paper's tables."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .schema import LABELS, Manifest


def _masked_name(value: Any) -> str:
    if value is True:
        return "masked"
    if value is False:
        return "non-masked"
    return "unknown"


def count_table(frame: pd.DataFrame, by: str | None) -> pd.DataFrame:
    """Rows: current labels in canonical order (removed images left out); columns: ``by`` values + total."""
    kept = frame[frame["label"].notna()]
    labels = [x for x in LABELS if x in set(kept["label"])]
    if by is None:
        table = kept.groupby("label").size().reindex(labels).to_frame("total")
    else:
        keys = kept[by].map(_masked_name) if by == "masked" else kept[by].astype(object).where(kept[by].notna(), "none")
        table = pd.crosstab(kept["label"], keys.astype(str)).reindex(labels)
        table["total"] = table.sum(axis=1)
    table = table.fillna(0).astype(int)
    table.loc["total"] = table.sum(axis=0)
    table.index.name = "label"
    return table


def summary(manifest: Manifest) -> dict[str, Any]:
    """Everything ``ferdata stats`` shows, as plain data (also what ``--json`` prints)."""
    frame = manifest.frame
    tables: dict[str, pd.DataFrame] = {"label × masked": count_table(frame, "masked")}
    if frame["split"].notna().any():
        tables["label × split"] = count_table(frame, "split")
    fold_deviation = None
    if frame["fold"].notna().any():
        from .folds import balance_table, max_deviation

        tables["label × fold"] = count_table(frame, "fold")
        fold_deviation = max_deviation(balance_table(frame))
    return {
        "dataset": manifest.dataset,
        "images": len(frame),
        "kept": int(frame["label"].notna().sum()),
        "subjects": int(frame["subject_id"].nunique()),
        "clips": int(frame["clip_id"].nunique()),
        "label_status": {k: int(v) for k, v in frame["label_status"].value_counts().sort_index().items()},
        "face_status": {k: int(v) for k, v in frame["face_status"].value_counts().sort_index().items()},
        "pairs": int(frame["pair_id"].nunique()),
        "pe_pairs": int(frame.loc[frame["in_pe"] == True, "pair_id"].nunique()),  # noqa: E712
        "fold_deviation": fold_deviation,  # largest |fold size / mean - 1|
        "tables": tables,
    }


def to_json(data: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with its tables as nested dicts ({row: {column: count}})."""
    out = dict(data)
    out["tables"] = {
        name: {str(r): {str(c): int(v) for c, v in row.items()} for r, row in table.iterrows()}
        for name, table in data["tables"].items()
    }
    return out

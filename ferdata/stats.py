"""``ferdata stats``: counts by label × masked × split (× fold), shaped like the paper's tables."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .schema import LABELS, Manifest, left_out_reasons, usable_rows
from .workspace import Workspace, WorkspaceLike


def _masked_name(value: Any) -> str:
    if value is True:
        return "masked"
    if value is False:
        return "non-masked"
    return "unknown"


def counted_rows(frame: pd.DataFrame) -> tuple[pd.Series, str]:
    """The rows the tables count, and what they are: the usable rows (label and face crop: what is
    trained on and published), or every labelled row while no row has a crop (alignment not run)."""
    usable = usable_rows(frame)
    if usable.any():
        return usable, "usable"
    return frame["label"].notna().fillna(False).astype(bool), "labelled"


def left_out(frame: pd.DataFrame) -> dict[str, int]:
    """Rows the tables leave out, one entry per reason (as ``ferdata publish`` words them)."""
    _, what = counted_rows(frame)
    return left_out_reasons(frame, need_crop=what == "usable")


def count_table(frame: pd.DataFrame, by: str | None) -> pd.DataFrame:
    """Rows: current labels in canonical order; columns: ``by`` values + total.

    Counts the rows :func:`counted_rows` chooses (usable rows once faces are aligned).
    """
    kept = frame[counted_rows(frame)[0]]
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
    counted, what = counted_rows(frame)
    return {
        "dataset": manifest.dataset,
        "images": len(frame),
        "kept": int(frame["label"].notna().sum()),
        "counted": what,  # "usable" (label and face crop: what is published) or "labelled"
        "usable": int(counted.sum()) if what == "usable" else 0,
        "left_out": left_out(frame),
        "subjects": int(frame["subject_id"].nunique()),
        "clips": int(frame["clip_id"].nunique()),
        "label_status": {k: int(v) for k, v in frame["label_status"].value_counts().sort_index().items()},
        "face_status": {k: int(v) for k, v in frame["face_status"].value_counts().sort_index().items()},
        "pairs": int(frame["pair_id"].nunique()),
        "pe_pairs": int(frame.loc[frame["in_pe"] == True, "pair_id"].nunique()),  # noqa: E712
        "fold_deviation": fold_deviation,  # largest |fold size / mean - 1|, counted rows
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


def stats(ws: WorkspaceLike, *, dataset: str | None = None) -> dict[str, Any]:
    """The :func:`summary` of a workspace's dataset (the only one when ``dataset`` is None)."""
    return summary(Workspace.of(ws).load(dataset))

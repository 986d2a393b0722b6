"""What other commands found about the images, read for the review page: leak pairs and
label-issue scores.

Both are read defensively: a report written in another shape (by another version of ferdata),
or one that cannot be read, leaves the page without that evidence instead of failing it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Where a leakage report may live in tables/<dataset>/, newest name first.
LEAK_REPORTS = ("leakage.parquet", "leakage.csv", "leaks.parquet", "leaks.csv")
LABEL_ISSUES = "label_issues.csv"
LEAK_COLUMNS = ["image_id", "partner", "kind", "distance"]


def _read_table(path: Path) -> pd.DataFrame | None:
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError):
        return None


def read_leak_pairs(tables_dir: Path) -> pd.DataFrame:
    """Leak pairs from whatever leakage report ``tables_dir`` holds, both directions listed.

    Columns :data:`LEAK_COLUMNS`. The two sides are the first pair of columns named ``X_a`` and
    ``X_b`` where X mentions an image or id (``image_id_a``/``image_id_b`` today), else ``a``/``b``;
    ``kind`` and ``distance`` are taken when present. No report, or none in a known shape: empty.
    """
    for name in LEAK_REPORTS:
        table = _read_table(tables_dir / name) if (tables_dir / name).is_file() else None
        if table is None:
            continue
        columns = {str(c).lower(): c for c in table.columns}
        stems = [
            c[:-2] for c in columns if c.endswith("_a") and c[:-2] + "_b" in columns and ("image" in c or "id" in c)
        ]
        sides = (
            (columns[stems[0] + "_a"], columns[stems[0] + "_b"])
            if stems
            else ((columns["a"], columns["b"]) if {"a", "b"} <= set(columns) else None)
        )
        if sides is None:
            continue
        a, b = table[sides[0]].astype(str), table[sides[1]].astype(str)
        kind = table[columns["kind"]].astype(str) if "kind" in columns else pd.Series("leak", index=table.index)
        distance = (
            pd.to_numeric(table[columns["distance"]], errors="coerce")
            if "distance" in columns
            else pd.Series(np.nan, index=table.index)
        )
        both = pd.DataFrame(
            {
                "image_id": pd.concat([a, b], ignore_index=True),
                "partner": pd.concat([b, a], ignore_index=True),
                "kind": pd.concat([kind, kind], ignore_index=True),
                "distance": pd.concat([distance, distance], ignore_index=True).astype("float64"),
            }
        )
        return both[both["image_id"] != both["partner"]].drop_duplicates(["image_id", "partner", "kind"])
    return pd.DataFrame(columns=LEAK_COLUMNS)


def find_scores(ws, dataset: str, path: Path | str | None = None) -> Path | None:
    """The label-issues table to sort by: ``path`` if given (read once, at start), else
    ``tables/<dataset>/label_issues.csv`` when the workspace holds one."""
    if path is not None:
        return Path(path)
    inside = ws.tables_dir(dataset) / LABEL_ISSUES
    return inside if inside.is_file() else None


def read_scores(path: Path | None, manifest_columns: list[str]) -> pd.DataFrame:
    """A table of extra per-image values indexed by ``image_id`` (cleanlab's ``label_quality``,
    ``rank``, ``predicted`` ...): every column the manifest does not already have. Empty when
    ``path`` is None; a file without ``image_id`` raises ValueError naming the file."""
    if path is None:
        return pd.DataFrame(index=pd.Index([], name="image_id"))
    if not path.is_file():
        raise ValueError(f"{path} does not exist: pass the label_issues.csv that ferdata label-issues wrote")
    table = _read_table(path)
    if table is None or "image_id" not in table.columns:
        raise ValueError(f"{path} is not a table with an image_id column (such as RUN_DIR/{LABEL_ISSUES})")
    extra = [c for c in table.columns if c != "image_id" and c not in manifest_columns]
    table = table.drop_duplicates("image_id", keep="first").set_index("image_id")[extra]
    for column in extra:
        numbers = pd.to_numeric(table[column], errors="coerce")
        if numbers.notna().sum() == table[column].replace("", np.nan).notna().sum():
            table[column] = numbers.astype("float64")
    return table


def jsonable(value: Any) -> Any:
    """A cell as JSON wants it: NaN and missing values as None, numpy scalars as Python ones."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value

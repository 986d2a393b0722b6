"""The library's result objects as JSON: what every command's ``--json`` prints.

Each command's summary is a dataclass the library returns (``IngestResult``, ``PairsResult``,
``RunResult`` ...); :func:`to_data` turns it into plain JSON values field by field, so the CLI
never recomputes a number for its JSON. The rules, in order:

- a dataclass: its fields, except those declared with ``field(metadata={"json": False})``
  (bulky tables already written to a file, whose path is among the other fields);
- a manifest: its :func:`ferdata.stats.summary` (the counts ``ferdata stats --json`` prints),
  never its rows;
- a pandas table: a list of records (a named or non-default index becomes a column);
- paths as strings, enums as their value, numpy and pandas scalars as Python numbers, NaN and NA
  as null, tuples and sets as lists, mapping keys as strings.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from enum import Enum
from typing import Any


def to_data(obj: Any) -> Any:
    """``obj`` as JSON-ready values (dicts, lists, str, int, float, bool, None); see the module doc."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj.value if isinstance(obj, Enum) else obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Enum):
        return to_data(obj.value)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, dict):
        return {str(to_data(k)): to_data(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_data(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((to_data(v) for v in obj), key=str)
    from .schema import Manifest

    if isinstance(obj, Manifest):
        from .stats import summary
        from .stats import to_json as stats_json

        return to_data(stats_json(summary(obj)))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.metadata.get("json", True)}
    return _tabular_or_scalar(obj)


def _tabular_or_scalar(obj: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        frame = obj if isinstance(obj.index, pd.RangeIndex) and obj.index.name is None else obj.reset_index()
        return [{str(k): to_data(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
    if isinstance(obj, pd.Series):
        return {str(to_data(k)): to_data(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [to_data(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        return to_data(obj.item())
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if obj is pd.NA or obj is pd.NaT:
        return None
    raise TypeError(f"cannot write a {type(obj).__name__} as JSON")


def to_json(obj: Any, *, indent: int | None = 2) -> str:
    """``obj`` as one JSON document (strict JSON: no NaN)."""
    return json.dumps(to_data(obj), indent=indent, ensure_ascii=False, allow_nan=False)

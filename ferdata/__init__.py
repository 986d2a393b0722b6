"""ferdata: clean, reproducible, research-ready facial-expression-recognition datasets.

The public API is re-exported here lazily, so that ``import ferdata`` and ``ferdata --help`` stay
fast: heavy dependencies (pandas, pyarrow, onnxruntime, torch) load only when a function runs.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "Workspace": "workspace",
    "Manifest": "schema",
    "read_manifest": "schema",
    "write_manifest": "schema",
    "FerdataError": "errors",
    "ingest": "ingest",
    "align_manifest": "align",
    "relabel": "relabel",
    "make_pairs": "pairs",
    "assign_folds": "folds",
    "balance_table": "folds",
    "make_folds": "folds",
    "check_leakage": "leakage",
    "publish": "publish",
    "train_baseline": "train.loop",
    "TrainConfig": "train.loop",
    "label_issues": "labelissues",
    "run_demo": "demo",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__", *_API]

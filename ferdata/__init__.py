"""ferdata: clean, reproducible, research-ready facial-expression-recognition datasets.

The public API is re-exported here lazily, so that ``import ferdata`` and ``ferdata --help`` stay
fast: heavy dependencies (pandas, pyarrow, onnxruntime, torch) load only when a function runs.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
from typing import Any

# A library configures no logging: its records go where the application sends them (the CLI's -v),
# and nowhere, not even Python's last-resort stderr handler, when it sends them nowhere.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    # the workspace
    "Workspace": "workspace",
    "WorkspaceLike": "workspace",
    "Manifest": "schema",
    "read_manifest": "schema",
    "write_manifest": "schema",
    # the steps, in the order a dataset goes through them (each takes the workspace first)
    "ingest": "ingest",
    "align": "align",
    "relabel": "relabel",
    "make_pairs": "pairs",
    "make_folds": "folds",
    "check_leakage": "leakage",
    "tag_images": "tags",
    "import_tags": "tags",
    "list_tags": "tags",
    "auto_tag_masks": "masks.tagging",
    "synthesize_masks": "masks.synth",
    "stats": "stats",
    "write_contact_sheet": "vision.contact",
    "publish": "publish",
    "train_baseline": "train.loop",
    "TrainConfig": "train.config",
    "label_issues": "labelissues",
    # pure functions on tables
    "assign_folds": "folds",
    "balance_table": "folds",
    # archives and passwords
    "Secret": "archives",
    "Password": "archives",
    "Limits": "archives",
    "open_tree": "archives",
    # the embedded demo delivery
    "build_sample": "demo",
    "run_demo": "demo",
    # errors: every one is a FerdataError
    "FerdataError": "errors",
    "UsageError": "errors",
    "WorkspaceError": "errors",
    "WorkspaceLocked": "errors",
    "WorkspaceWriteError": "errors",
    "SchemaError": "errors",
    "ArchiveError": "errors",
    "PasswordError": "errors",
    "UnsafeArchiveError": "errors",
    "LayoutError": "errors",
    "VotesError": "errors",
    "DetectorError": "errors",
    "ImageUnreadable": "errors",
    "LeakageFound": "errors",
    "PublishError": "errors",
    "TagError": "errors",
}


class _Package(types.ModuleType):
    """Keeps ``ferdata.ingest`` (and ``relabel``, ``publish``) the function, not the submodule of
    the same name: the import system binds a submodule on its package once it is imported, which
    would hide the function (a second ``ferdata.ingest(...)`` failed with "'module' object is not
    callable"). The name is left to :func:`__getattr__`, which binds the function itself."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{_API[name]}":
            return  # not bound: __getattr__ gives the function, loading it only when asked for
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
        globals()[name] = value  # found directly next time
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__", *_API]

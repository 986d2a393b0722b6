"""A curated workspace as a Hugging Face–style dataset folder, and its upload to the Hub.

One job per module::

    layout.py     where things lie in a published folder (the one module that knows it)
    features.py   manifest columns -> Arrow types, ``datasets`` features and card entries
    plan.py       which rows each config and split publishes; why the others are left out
    shards.py     deterministic Parquet shards, written by a pool of readers
    card.py       the dataset card: YAML header (PyYAML) and prose
    hub.py        the push to a Hub dataset repo
    folder.py     publish(): the steps above, in order, and PublishResult

The names below are loaded on first use, so that ``ferdata.publish.layout`` (which the trainer
reads published folders with) imports neither pandas nor pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .card import dataset_card, terms_of
    from .features import class_names_for
    from .folder import PublishResult, publish
    from .hub import check_push_allowed, hub_client, push_folder
    from .layout import CARD_MARKER, CONFIGS, HUB_SPLITS

# public name -> module that defines it
_API = {
    "publish": "folder",
    "PublishResult": "folder",
    "CONFIGS": "layout",
    "HUB_SPLITS": "layout",
    "CARD_MARKER": "layout",
    "class_names_for": "features",
    "dataset_card": "card",
    "terms_of": "card",
    "check_push_allowed": "hub",
    "hub_client": "hub",
    "push_folder": "hub",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_API)

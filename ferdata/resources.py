"""Where the declarative facts in ``manifests/`` live, installed or in a checkout."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

from .errors import FerdataError

_PACKAGE = Path(__file__).resolve().parent


@cache
def manifests_dir() -> Path:
    # A wheel carries the folder as ferdata/_manifests; an editable install reads the checkout's.
    for candidate in (_PACKAGE / "_manifests", _PACKAGE.parent / "manifests"):
        if (candidate / "schema.toml").is_file():
            return candidate
    raise FerdataError(
        "ferdata's manifests/ folder is missing from this installation: reinstall with pip install ferdata"
    )


@cache
def load_toml(name: str) -> dict:
    """Parsed ``manifests/<name>.toml`` (cached: these files never change at run time)."""
    path = manifests_dir() / f"{name}.toml"
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise FerdataError(f"no facts file {path}: every dataset needs one in manifests/") from None

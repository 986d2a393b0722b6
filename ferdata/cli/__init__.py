"""The ``ferdata`` command line: one thin module per command, each calling one library function."""

from __future__ import annotations

import importlib
import sys

from .common import app

# Modules that register commands on ``app`` when imported, in the order --help lists them.
COMMAND_MODULES = ("ingest", "align", "relabel", "pairs", "folds", "tag", "stats", "publish", "train", "review", "demo")


def load_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}")


load_commands()


def main() -> None:
    sys.exit(app())


__all__ = ["app", "main"]

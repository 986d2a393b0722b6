"""Dataset source adapters: one module per dataset, registered in :data:`SOURCES`.

Each adapter implements :class:`~ferdata.sources.base.Source`: ``match(names)`` says how well a
tree's member names fit its layout (for auto-detection), ``match_contents(tree, names)`` the same
from what files hold (a CSV's header, asked only when no name is certain), and
``discover(tree, names, options)``
yields a :class:`Record` per image plus :class:`Unparsed` files, :class:`SideFile` tables and
:class:`Notice` messages. The declarative facts (class maps, layout names, expected counts,
terms) live in ``manifests/<dataset>.toml``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import LayoutError
from .base import Item, Notice, Record, SideFile, Source, SourceOptions, Unparsed
from .fer2013 import Fer2013
from .ferplus import FerPlus
from .ferv39k import Ferv39k
from .imagefolder import ImageFolder
from .msd_e import MsdE
from .occlu_fer import OccluFer

if TYPE_CHECKING:
    from ..archives import Tree

SOURCES: dict[str, type[Source]] = {cls.name: cls for cls in (MsdE, OccluFer, Fer2013, FerPlus, Ferv39k, ImageFolder)}


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]()
    except KeyError:
        raise LayoutError(f"unknown dataset {name!r}: choose one of {', '.join(SOURCES)}") from None


def detect_source(names: list[str], where: str, tree: Tree | None = None) -> Source:
    """The adapter whose layout fits ``names`` best, or a LayoutError asking for --dataset.

    When no name fits a layout for certain and ``tree`` is given, adapters also look at what the
    files hold (a CSV's header), so that ``data.csv`` with FER2013's columns is FER2013.
    """
    adapters = {name: cls() for name, cls in SOURCES.items()}
    scores = {name: adapter.match(names) for name, adapter in adapters.items()}
    if tree is not None and max(scores.values()) < 1.0:
        scores = {name: max(score, adapters[name].match_contents(tree, names)) for name, score in scores.items()}
    (best, best_name), (second, second_name) = sorted(((s, n) for n, s in scores.items()), reverse=True)[:2]
    if best < 0.3:
        raise LayoutError(
            f"{where} does not look like any supported dataset (MSD-E/ + MSD-ME/, train/ + valid/, "
            f"a FER2013 CSV, 2_ClipsforFaceCrop/, <split>/<label>/): pass dataset=NAME"
        )
    if best == second:
        raise LayoutError(f"{where} could be {best_name} or {second_name}: pass dataset=NAME")
    return adapters[best_name]


__all__ = [
    "SOURCES",
    "Item",
    "Notice",
    "Record",
    "SideFile",
    "Source",
    "SourceOptions",
    "Unparsed",
    "detect_source",
    "get_source",
]

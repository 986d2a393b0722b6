"""Dataset source adapters: one module per dataset, registered in :data:`SOURCES`.

Each adapter implements :class:`~ferdata.sources.base.Source`: ``match(names)`` says how well a
tree's member names fit its layout (for auto-detection) and ``discover(tree, names, options)``
yields a :class:`Record` per image plus :class:`Unparsed` files, :class:`SideFile` tables and
:class:`Notice` messages. The declarative facts (class maps, layout names, expected counts,
terms) live in ``manifests/<dataset>.toml``.
"""

from __future__ import annotations

from ..errors import LayoutError
from .base import Item, Notice, Record, SideFile, Source, SourceOptions, Unparsed
from .fer2013 import Fer2013
from .ferplus import FerPlus
from .ferv39k import Ferv39k
from .imagefolder import ImageFolder
from .msd_e import MsdE
from .occlu_fer import OccluFer

SOURCES: dict[str, type[Source]] = {
    cls.name: cls for cls in (MsdE, OccluFer, Fer2013, FerPlus, Ferv39k, ImageFolder)
}


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]()
    except KeyError:
        raise LayoutError(f"unknown dataset {name!r}: choose one of {', '.join(SOURCES)}") from None


def detect_source(names: list[str], where: str) -> Source:
    """The adapter whose layout fits ``names`` best, or a LayoutError asking for --dataset."""
    scores = sorted(((cls().match(names), name) for name, cls in SOURCES.items()), reverse=True)
    (best, best_name), (second, second_name) = scores[0], scores[1]
    if best < 0.3:
        raise LayoutError(
            f"{where} does not look like any supported dataset (MSD-E/ + MSD-ME/, train/ + valid/, "
            f"fer2013.csv, 2_ClipsforFaceCrop/, <split>/<label>/): pass --dataset NAME"
        )
    if best == second:
        raise LayoutError(f"{where} could be {best_name} or {second_name}: pass --dataset NAME")
    return SOURCES[best_name]()


__all__ = ["SOURCES", "Item", "Notice", "Record", "SideFile", "Source", "SourceOptions", "Unparsed", "detect_source", "get_source"]

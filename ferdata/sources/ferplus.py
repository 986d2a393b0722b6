"""FER+: FER2013's pixels with the crowd votes of ``fer2013new.csv`` (microsoft/FERPlus).

Expected layout: a FER2013 CSV (see :mod:`ferdata.sources.fer2013`) and ``fer2013new.csv``
anywhere in the archive or folder::

    fer2013.csv       emotion,pixels,Usage
    fer2013new.csv    Usage,Image name,neutral,happiness,...,unknown,NF   (row-aligned with fer2013.csv)

Rows keep FER2013's label as ``label_original``; ``ferdata relabel --scheme ferplus-majority``
applies the votes, which ingest keeps as ``tables/ferplus/fer2013new.csv``; they are matched to
images by row, since FER+'s image names skip the 173 rows it dropped.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from .base import Item, SideFile, Source, SourceOptions, Unparsed
from .fer2013 import find_csvs, read_pixel_csv


class FerPlus(Source):
    name = "ferplus"

    def _votes(self, names: list[str]) -> list[str]:
        votes = self.facts["layout"]["votes_file"]
        return [n for n in names if posixpath.basename(n) == votes]

    def match(self, names: list[str]) -> float:
        return 1.0 if self._votes(names) and find_csvs(names) else 0.0

    def discover(self, tree, names: list[str], options: SourceOptions) -> Iterator[Item]:
        from ..resources import load_toml

        votes = self._votes(names)
        csvs = find_csvs(names)
        if not votes or not csvs:
            missing = "fer2013new.csv (the FER+ votes)" if not votes else "fer2013.csv (the FER2013 pixels)"
            yield Unparsed(tree.path.name, f"FER+ needs {missing} in the same archive or folder")
            return
        yield SideFile(member=votes[0], name=self.facts["layout"]["votes_file"])
        fer = load_toml("fer2013")
        for member in csvs:
            yield from read_pixel_csv(tree, member, self.name, fer["classes"], fer["layout"]["usage"])

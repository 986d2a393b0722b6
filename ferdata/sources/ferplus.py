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
from .fer2013 import csv_headers, discover_csvs


class FerPlus(Source):
    name = "ferplus"
    takes_split = True

    def _vote_columns(self) -> set[str]:
        return {c.lower() for c in self.facts["layout"]["vote_columns"]}

    def _votes(self, tree, names: list[str]) -> list[str]:
        """CSV members whose header holds FER+'s vote columns, whatever their name."""
        columns = self._vote_columns()
        return [m for m, header in csv_headers(tree, names).items() if columns <= set(header)]

    def match(self, names: list[str]) -> float:
        votes = self.facts["layout"]["votes_file"]
        fer = {"fer2013.csv", "icml_face_data.csv"}
        bases = {posixpath.basename(n).lower() for n in names}
        return 1.0 if votes in bases and bases & fer else 0.0

    def match_contents(self, tree, names: list[str]) -> float:
        headers = csv_headers(tree, names)
        has_votes = any(self._vote_columns() <= set(h) for h in headers.values())
        has_pixels = any("pixels" in h and "emotion" in h for h in headers.values())
        return 1.0 if has_votes and has_pixels else 0.0

    def discover(self, tree, names: list[str], options: SourceOptions) -> Iterator[Item]:
        votes = self._votes(tree, names)
        has_pixels = any("pixels" in h for h in csv_headers(tree, names).values())
        if not votes or not has_pixels:
            missing = "fer2013new.csv (the FER+ votes)" if not votes else "fer2013.csv (the FER2013 pixels)"
            yield Unparsed(tree.path.name, f"FER+ needs {missing} in the same archive or folder")
            return
        yield SideFile(member=votes[0], name=self.facts["layout"]["votes_file"])
        yield from discover_csvs(tree, names, options)

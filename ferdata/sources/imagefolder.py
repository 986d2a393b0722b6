"""Any image-folder tree: ``<split>/<label>/<image>`` or ``<label>/<image>``.

Split folder names such as train/training, val/valid/validation, test/testing are recognised.
Label folder names map to canonical labels through the synonyms in ``manifests/imagefolder.toml``
(``Angry``, ``anger``, ``AN`` → angry, ...) or through ``--label-map`` (``AN=angry,HA=happy`` or a
file with one ``folder,label`` per line). A folder that maps to nothing is reported.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..schema import LABELS
from .base import Item, Notice, Source, SourceOptions, Unparsed, file_record, is_image


class ImageFolder(Source):
    name = "imagefolder"
    _synonym_map: dict[str, str] | None = None

    def _synonyms(self) -> dict[str, str]:
        """Alias (lower case) -> label; built once per source, not once per file."""
        if self._synonym_map is None:
            self._synonym_map = {
                alias.lower(): label for label, aliases in self.facts["synonyms"].items() for alias in aliases
            }
        return self._synonym_map

    def _label(self, folder: str, options: SourceOptions) -> str | None:
        if options.label_map:
            return options.label_map.get(folder) or options.label_map.get(folder.lower())
        return self._synonyms().get(folder.lower())

    def _layout(self, names: list[str]) -> tuple[str, bool]:
        """(root, has split folders): the shallowest folder whose children are splits or labels."""
        splits = self.facts["layout"]["splits"]
        synonyms = self._synonyms()
        best: tuple[int, str, bool] | None = None
        for name in names:
            if not is_image(name):
                continue
            parts = name.split("/")
            for depth in range(len(parts) - 1):
                folder = parts[depth].lower()
                if folder in splits and depth + 2 < len(parts) or folder in synonyms:
                    candidate = (depth, "/".join(parts[:depth]) + ("/" if depth else ""), folder in splits)
                    if best is None or candidate[0] < best[0]:
                        best = candidate
                    break
        return (best[1], best[2]) if best else ("", False)

    def match(self, names: list[str]) -> float:
        images = [n for n in names if is_image(n)]
        return (
            0.3 if images and any(self._label(n.split("/")[-2], SourceOptions()) for n in images if "/" in n) else 0.0
        )

    def discover(self, tree, names: list[str], options: SourceOptions) -> Iterator[Item]:
        root, has_splits = self._layout(names)
        splits = self.facts["layout"]["splits"]
        ignored = 0
        for name in names:
            if not is_image(name) or not name.startswith(root):
                ignored += 1
                continue
            rel = name[len(root) :]
            parts = rel.split("/")
            split = None
            if has_splits:
                if len(parts) < 3 or parts[0].lower() not in splits:
                    ignored += 1
                    continue
                split, parts = splits[parts[0].lower()], parts[1:]
            if len(parts) < 2:
                ignored += 1
                continue
            label = self._label(parts[0], options)
            if label is None or label not in LABELS:
                yield Unparsed(
                    name,
                    f"folder {parts[0]!r} names no known expression: map it with label_map={{{parts[0]!r}: '<label>'}}",
                )
                continue
            yield file_record(name, rel, label, split=split)
        if ignored:
            yield Notice(f"{ignored} files that are not images under <split>/<label>/ were ignored")

"""Occlu-FER: occluded faces in torchvision ImageFolder layout (as its reference code ORSANet reads it).

Expected layout (any wrapping folders are ignored)::

    ROOT/
      train/<class>/<image>     6,838 images
      valid/<class>/<image>       880 images

``<class>`` is one of AN CO DI FE HA NE SA SU (a later upstream version drops CO; 7 or 8 folders
are both fine). Every image is occluded but the kind is not given, so rows carry the tag ``other``.
"""

from __future__ import annotations

from collections.abc import Iterator

from .base import (
    Item,
    Notice,
    Source,
    SourceOptions,
    Unparsed,
    class_folders,
    file_record,
    is_image,
    roots_with_children,
)


class OccluFer(Source):
    name = "occlu-fer"

    def _root(self, names: list[str]) -> str | None:
        codes = set(self.facts["classes"])
        for root in roots_with_children(names, set(self.facts["layout"]["splits"])):
            if len(class_folders(names, root) & codes) >= 2:
                return root
        return None

    def match(self, names: list[str]) -> float:
        return 0.9 if self._root(names) is not None else 0.0

    def discover(self, tree, names: list[str], options: SourceOptions) -> Iterator[Item]:
        classes = self.facts["classes"]
        splits = self.facts["layout"]["splits"]
        tag = self.facts["layout"]["occlusion_tag"]
        root = self._root(names) or ""
        ignored = 0
        for name in names:
            rel = name[len(root) :] if name.startswith(root) else ""
            parts = rel.split("/")
            if len(parts) != 3 or parts[0] not in splits or not is_image(name):
                ignored += 1
                continue
            label = classes.get(parts[1].upper())
            if label is None:
                yield Unparsed(name, f"unknown class folder {parts[1]!r} (expected {', '.join(classes)})")
                continue
            yield file_record(name, rel, label, split=splits[parts[0]], occlusion=(tag,))
        if ignored:
            yield Notice(f"{ignored} files outside train/<class>/ and valid/<class>/ were ignored")

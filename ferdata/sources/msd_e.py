"""MSD-E, the Masked Student Dataset of Expressions.

Expected layout (any wrapping folders above ``ROOT`` are ignored)::

    ROOT/
      MSD-E/                    non-masked images
        <subject>_<label>_<anything>.jpg
      MSD-ME/                   masked images, same file names as their non-masked twins
        <subject>_<label>_<anything>.jpg
      Paired_files.txt          one file name per line (kept in tables/msd-e/)

``<label>`` is the 0-based index in RAF-DB order (surprise, fear, disgust, happy, sad, angry,
neutral). The folder says ``masked`` (and, in ``MSD-ME/``, the tag ``mask``): both get the origin
``source``, so ``ferdata tag auto`` never overrides them and ``ferdata tag remove`` keeps the tag
without ``--force``. No real file name has been published, so any suffix after the second underscore and
any common image extension is accepted; a name that does not fit is reported, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .base import (
    Item,
    Notice,
    SideFile,
    Source,
    SourceOptions,
    Unparsed,
    file_record,
    is_image,
    roots_with_children,
    without_ext,
)


class MsdE(Source):
    name = "msd-e"

    def _layout(self) -> tuple[str, str, str]:
        layout = self.facts["layout"]
        return layout["nonmasked_dir"], layout["masked_dir"], layout["pairs_file"]

    def match(self, names: list[str]) -> float:
        nonmasked, masked, _ = self._layout()
        if roots_with_children(names, {nonmasked, masked}):
            return 1.0
        return 0.6 if roots_with_children(names, {nonmasked}) else 0.0

    def discover(self, tree, names: list[str], options: SourceOptions) -> Iterator[Item]:
        nonmasked, masked, pairs_file = self._layout()
        roots = roots_with_children(names, {nonmasked, masked}) or roots_with_children(names, {nonmasked})
        root = roots[0] if roots else ""
        pattern = re.compile(self.facts["layout"]["filename_pattern"])
        classes = self.facts["classes"]
        ignored = 0
        for name in names:
            if not name.startswith(root):
                ignored += 1
                continue
            rel = name[len(root) :]
            if rel == pairs_file:
                yield SideFile(member=name, name=pairs_file)
                continue
            folder, _, inner = rel.partition("/")
            if folder not in (nonmasked, masked) or not inner:
                ignored += 1
                continue
            if not is_image(inner):
                ignored += 1
                continue
            base = inner.rsplit("/", 1)[-1]
            m = pattern.match(without_ext(base))
            if m is None:
                yield Unparsed(name, "file name does not start with <subject>_<label>_")
                continue
            index = int(m.group("label"))
            if index >= len(classes):
                yield Unparsed(name, f"label index {index} is not in 0..{len(classes) - 1}")
                continue
            yield file_record(
                name,
                rel,
                classes[index],
                subject_id=m.group("subject"),
                masked=folder == masked,
                occlusion=("mask",) if folder == masked else (),
                pair_key=without_ext(inner),
            )
        if ignored:
            yield Notice(f"{ignored} files outside {nonmasked}/ and {masked}/ (or not images) were ignored")

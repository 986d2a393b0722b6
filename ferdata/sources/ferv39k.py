"""FERV39k: face-crop frames of 38,935 video clips; one manifest row per frame.

Expected layout (any wrapping folders are ignored)::

    ROOT/
      2_ClipsforFaceCrop/<Scene>/<Emotion>/<clip>/<frame>.jpg    face crops (ingested)
      3_ClipsforScenImages/...                                    scene frames (ignored)
      4_setups/All_scenes/train_All.csv, test_All.csv             '<Scene>/<Emotion>/<clip> <Label>' per line

``clip_id`` is ``<Scene>/<Emotion>/<clip>``; folds never split a clip. The split comes from the
All_scenes setup files; clips they do not list get no split.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from .base import Item, Notice, Source, SourceOptions, Unparsed, file_record, is_image, without_ext


class Ferv39k(Source):
    name = "ferv39k"

    def _root(self, names: list[str]) -> str | None:
        marker = self.facts["layout"]["frames_dir"] + "/"
        for name in names:
            at = name.find(marker)
            if at == 0 or (at > 0 and name[at - 1] == "/"):
                return name[:at]
        return None

    def match(self, names: list[str]) -> float:
        return 1.0 if self._root(names) is not None else 0.0

    def _splits(self, tree, names: list[str], root: str) -> dict[str, str]:
        layout = self.facts["layout"]
        clip_split: dict[str, str] = {}
        for file, split in layout["setup_files"].items():
            member = posixpath.join(root + layout["setups_dir"], file)
            if member not in names:
                continue
            for line in tree.read(member).decode("utf-8", "replace").splitlines():
                if line.strip():
                    clip_split[line.split()[0].strip("/")] = split
        return clip_split

    def discover(self, tree, names: list[str], options: SourceOptions) -> Iterator[Item]:
        classes = self.facts["classes"]
        root = self._root(names) or ""
        frames = root + self.facts["layout"]["frames_dir"] + "/"
        clip_split = self._splits(tree, names, root)
        if not clip_split:
            yield Notice("no 4_setups/All_scenes/train_All.csv or test_All.csv: rows get no split")
        ignored = 0
        for name in names:
            if not name.startswith(frames) or not is_image(name):
                ignored += 1
                continue
            parts = name[len(frames) :].split("/")
            if len(parts) != 4:
                yield Unparsed(name, "expected <Scene>/<Emotion>/<clip>/<frame> under 2_ClipsforFaceCrop/")
                continue
            scene, emotion, clip, _ = parts
            label = classes.get(emotion) or classes.get(emotion.capitalize())
            if label is None:
                yield Unparsed(name, f"unknown emotion folder {emotion!r} (expected {', '.join(classes)})")
                continue
            clip_id = f"{scene}/{emotion}/{clip}"
            rel = name[len(root) :]
            yield file_record(
                name,
                rel,
                label,
                image_id=without_ext(name[len(frames) :]),
                clip_id=clip_id,
                split=clip_split.get(clip_id),
            )
        if ignored:
            yield Notice(f"{ignored} files outside 2_ClipsforFaceCrop/ (or not frames) were ignored")

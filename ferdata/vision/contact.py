"""A contact sheet: aligned faces in a grid, one row per label x masked group, failures shown.

People check an alignment run by looking, not by reading counts: a row of crops per group shows
at a glance whether the eyes sit on one line, whether masked faces were found, and which images
failed (a grey tile saying ``no face`` or ``unreadable``, framed in red). A ``registered`` crop
(warped with the dataset's mean landmark shape, not by a detection) is framed in amber and marked
with an ``R``, so it is never mistaken for a detected face.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fsutil import atomic_write_bytes
from .encode import encode_png

_GREY = (96, 96, 96)
_RED = (200, 40, 40)
_AMBER = (255, 176, 0)
_WHITE = (255, 255, 255)
_BACKGROUND = (24, 24, 24)


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float, colour=_WHITE) -> None:
    import cv2

    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def _failure_tile(status: str, tile: int) -> np.ndarray:
    import cv2

    cell = np.full((tile, tile, 3), _GREY, dtype=np.uint8)
    cv2.rectangle(cell, (0, 0), (tile - 1, tile - 1), _RED, max(2, tile // 32))
    words = status.replace("_", " ").split()
    for k, word in enumerate(words):
        _text(cell, word, 6, tile // 2 - 6 + 16 * k, tile / 220, _WHITE)
    return cell


def _face_tile(path: Path, tile: int, registered: bool = False) -> np.ndarray | None:
    """The crop at ``path`` shrunk to a tile (area averaging: a sharp thumbnail), None if unreadable."""
    import cv2

    from ..errors import ImageUnreadable
    from .decode import read_crop

    try:
        pixels = read_crop(path)
    except ImageUnreadable:
        return None
    cell = np.ascontiguousarray(cv2.resize(pixels, (tile, tile), interpolation=cv2.INTER_AREA))
    if registered:
        cv2.rectangle(cell, (0, 0), (tile - 1, tile - 1), _AMBER, max(2, tile // 24))
        badge = max(14, tile // 5)
        cell[:badge, :badge] = _AMBER
        _text(cell, "R", max(2, badge // 5), badge - max(3, badge // 5), badge / 28, (0, 0, 0))
    return cell


def render_contact_sheet(ws, frame, *, per_group: int = 10, tile: int = 96) -> np.ndarray:
    """The sheet as an RGB array: a row per (label, masked) group, up to ``per_group`` tiles each.

    Within a group, failed rows come first (up to half the row, so that they are seen), then a
    few registered crops (amber frame, ``R``), then aligned faces, each in image_id order. The
    row's caption gives the group's counts per status.
    """
    label_column = frame["label"].where(frame["label"].notna(), frame["label_original"])
    import pandas as pd

    masked = [("unknown" if pd.isna(v) else "masked" if v else "unmasked") for v in frame["masked"]]
    groups = {}
    for i, key in enumerate(zip(label_column, masked)):
        groups.setdefault(key, []).append(i)
    caption_w = 190
    rows = []
    for (label, mask_state), members in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        members = sorted(members, key=lambda i: frame["image_id"].iat[i])
        statuses = [frame["face_status"].iat[i] for i in members]
        failed = [i for i, s in zip(members, statuses) if s in ("no_face", "unreadable")]
        aligned = [i for i, s in zip(members, statuses) if s == "aligned"]
        registered = [i for i, s in zip(members, statuses) if s == "registered"]
        shown = failed[: per_group // 2] if aligned or registered else failed[:per_group]
        if registered:
            shown += registered[: max(1, per_group // 4) if aligned else per_group - len(shown)]
        shown += aligned[: per_group - len(shown)]
        shown += [i for i in registered if i not in shown][: per_group - len(shown)]
        counts = {s: statuses.count(s) for s in sorted(set(statuses))}
        height = max(tile + 8, 76 + 16 * len(counts))
        line = np.full((height, caption_w + per_group * (tile + 4), 3), _BACKGROUND, dtype=np.uint8)
        _text(line, f"{label}", 6, 24, 0.6)
        _text(line, mask_state, 6, 46, 0.5)
        for k, (status, n) in enumerate(counts.items()):
            colour = _RED if status in ("no_face", "unreadable") else _AMBER if status == "registered" else _WHITE
            _text(line, f"{n} {status.replace('_', ' ')}", 6, 68 + 16 * k, 0.42, colour)
        for k, i in enumerate(shown):
            status = frame["face_status"].iat[i]
            cell = None
            if status in ("aligned", "registered") and frame["aligned_path"].iat[i]:
                cell = _face_tile(ws.absolute(frame["aligned_path"].iat[i]), tile, registered=status == "registered")
                if cell is None:
                    status = "crop_missing"
            if cell is None:
                cell = _failure_tile(status, tile)
            x = caption_w + k * (tile + 4)
            line[4 : 4 + tile, x : x + tile] = cell
        rows.append(line)
    if not rows:
        empty = np.full((tile, caption_w + tile, 3), _BACKGROUND, dtype=np.uint8)
        _text(empty, "no rows", 6, 24, 0.6)
        return empty
    return np.vstack(rows)


def write_contact_sheet(ws, manifest, out: Path, *, per_group: int = 10, tile: int = 96) -> Path:
    """Render the manifest's contact sheet and write it as a PNG at ``out`` (atomically)."""
    from ..errors import UsageError

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"contact sheet {out}: the file name must end in .png")
    sheet = render_contact_sheet(ws, manifest.frame, per_group=per_group, tile=tile)
    atomic_write_bytes(out, encode_png(sheet))
    return out

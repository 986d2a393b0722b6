"""A contact sheet: aligned faces in a grid, one row per label x masked group, failures shown.

People check an alignment run by looking, not by reading counts: a row of crops per group shows
at a glance whether the eyes sit on one line, whether masked faces were found, and which images
failed (a grey tile saying ``no face`` or ``unreadable``, framed in red). A ``registered`` crop
(warped with the dataset's mean landmark shape, not by a detection) is framed in amber and marked
with an ``R``, so it is never mistaken for a detected face. With ``label_ids`` each tile carries
its ``image_id`` (the end of it, where it is longer than the tile), so a face that looks wrong can
be found in the manifest.

The sheet is a picture of pixels (the crops are); :func:`write_contact_sheet` writes it as a PNG,
or inside a PDF or SVG page (lossless, at ``dpi``) for a paper, as the file's suffix says.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..fsutil import atomic_write_bytes
from .encode import encode_png

if TYPE_CHECKING:
    from ..schema import Manifest
    from ..workspace import WorkspaceLike

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


def _id_caption(image_id: str, width: int, height: int) -> np.ndarray:
    """A strip under a tile with as much of ``image_id``'s end as fits (``..`` where cut)."""
    import cv2

    strip = np.full((height, width, 3), _BACKGROUND, dtype=np.uint8)
    scale = height / 40
    text = image_id
    while text and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width - 2:
        text = ".." + text[3:] if text.startswith("..") else ".." + text[2:]
        if len(text) <= 3:
            break
    _text(strip, text, 1, height - max(2, height // 4), scale)
    return strip


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


def render_contact_sheet(ws, frame, *, per_row: int = 10, tile: int = 96, label_ids: bool = False) -> np.ndarray:
    """The sheet as an RGB array: a row per (label, masked) group, up to ``per_row`` tiles each.

    Within a group, failed rows come first (up to half the row, so that they are seen), then a
    few registered crops (amber frame, ``R``), then aligned faces, each in image_id order. The
    row's caption gives the group's counts per status. ``label_ids`` writes each tile's image_id
    under it.
    """
    from ..errors import UsageError

    if not 1 <= per_row <= 200:
        raise UsageError(f"per_row={per_row} must be between 1 and 200")
    if not 16 <= tile <= 1024:
        raise UsageError(f"tile={tile} must be between 16 and 1024 pixels")
    label_column = frame["label"].where(frame["label"].notna(), frame["label_original"])
    import pandas as pd

    masked = [("unknown" if pd.isna(v) else "masked" if v else "unmasked") for v in frame["masked"]]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(label_column, masked, strict=True)):
        groups.setdefault(key, []).append(i)
    caption_w = 190
    id_h = max(12, tile // 7) if label_ids else 0
    rows = []
    for (label, mask_state), members in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        members = sorted(members, key=lambda i: frame["image_id"].iat[i])
        statuses = [frame["face_status"].iat[i] for i in members]
        failed = [i for i, s in zip(members, statuses, strict=True) if s in ("no_face", "unreadable")]
        aligned = [i for i, s in zip(members, statuses, strict=True) if s == "aligned"]
        registered = [i for i, s in zip(members, statuses, strict=True) if s == "registered"]
        shown = failed[: per_row // 2] if aligned or registered else failed[:per_row]
        if registered:
            shown += registered[: max(1, per_row // 4) if aligned else per_row - len(shown)]
        shown += aligned[: per_row - len(shown)]
        shown += [i for i in registered if i not in shown][: per_row - len(shown)]
        counts = {s: statuses.count(s) for s in sorted(set(statuses))}
        height = max(tile + id_h + 8, 76 + 16 * len(counts))
        line = np.full((height, caption_w + per_row * (tile + 4), 3), _BACKGROUND, dtype=np.uint8)
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
            if label_ids:
                line[4 + tile : 4 + tile + id_h, x : x + tile] = _id_caption(str(frame["image_id"].iat[i]), tile, id_h)
        rows.append(line)
    if not rows:
        empty = np.full((tile, caption_w + tile, 3), _BACKGROUND, dtype=np.uint8)
        _text(empty, "no rows", 6, 24, 0.6)
        return empty
    return np.vstack(rows)


def write_contact_sheet(
    ws: WorkspaceLike,
    manifest: Manifest,
    out: str | os.PathLike[str],
    *,
    per_row: int = 10,
    tile: int = 96,
    label_ids: bool = False,
    dpi: int = 100,
) -> Path:
    """Render the manifest's contact sheet and write it at ``out`` (atomically), in the format
    its suffix names: ``.png``, or ``.pdf``/``.svg`` holding the same pixels, lossless, on a page
    of ``dpi`` pixels per inch."""
    from ..figures import format_of, pyplot, save
    from ..workspace import Workspace

    ws = Workspace.of(ws)

    out = Path(out)
    fmt = format_of(out)
    sheet = render_contact_sheet(ws, manifest.frame, per_row=per_row, tile=tile, label_ids=label_ids)
    if fmt == "png":
        atomic_write_bytes(out, encode_png(sheet))
        return out
    height, width = sheet.shape[:2]
    fig = pyplot().figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    fig.figimage(sheet, 0, 0, origin="upper", resize=False)
    return save(fig, out, fmt, dpi)

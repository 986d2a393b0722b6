"""``ferdata mask-synth``: a synthetic masked twin for each eligible non-masked face, added to the
manifest as a new row paired with its original.

The workspace side of mask synthesis: which rows may get a twin, the new rows' columns, pairing,
provenance, and where the twins' crops are stored (content-addressed, :func:`ferdata.vision.encode.write_crop`).
The pixels are drawn by :mod:`ferdata.vision.masks`; scoring real masks is the separate job of
:mod:`ferdata.masks.tagging`. A face crop is a face crop whether it was ``aligned`` from a
detection or ``registered`` with the dataset's mean landmark shape (:func:`ferdata.schema.has_crop`):
both get twins, and a twin keeps its original's ``face_status``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ImageUnreadable, UsageError
from ..progress import ProgressFn, null_progress
from ..schema import SYNTHETIC_SOURCE_PREFIX, has_crop, no_crop_reason
from ..vision.masks import builtin_textures, choose_style, crop_points, draw_mask, load_textures
from ..workspace import Workspace, WorkspaceLike, writes_workspace

SYNTH_ID_SUFFIX = "#synthetic_mask"  # ``image_id`` of a synthetic row: the original's id + suffix


@dataclass
class MaskSynthResult:
    """What :func:`synthesize_masks` did."""

    dataset: str
    created: int
    skipped: dict[str, int]
    by_shape: dict[str, int]
    by_texture: dict[str, int]
    seed: int


def _eligibility(frame: pd.DataFrame) -> pd.Series:
    """Why each row cannot get a synthetic twin (None where it can)."""
    from ..tags import MASK_TAGS

    key_counts = frame["pair_key"].value_counts()
    crop = has_crop(frame).tolist()
    reasons: list[str | None] = []
    for row, with_crop in zip(frame.itertuples(index=False), crop, strict=True):
        tags = list(row.occlusion) if row.occlusion is not None else []
        if str(row.source).startswith(SYNTHETIC_SOURCE_PREFIX):
            reasons.append("is synthetic")
        elif not with_crop:
            reasons.append(no_crop_reason(row.face_status))
        elif (not pd.isna(row.masked) and bool(row.masked)) or any(t in tags for t in MASK_TAGS):
            reasons.append("already masked")
        elif row.pair_id is not None:
            reasons.append("already paired")
        elif row.pair_key is not None and key_counts.get(row.pair_key, 0) > 1:
            reasons.append("shares pair_key with other images")
        else:
            reasons.append(None)
    return pd.Series(reasons, index=frame.index, dtype=object)


@writes_workspace("mask-synth")
def synthesize_masks(
    ws: WorkspaceLike,
    *,
    dataset: str | None = None,
    seed: int = 0,
    where: str | None = None,
    mask_images: Sequence[Path] = (),
    builtin: bool = True,
    limit: int | None = None,
    progress: ProgressFn | None = None,
) -> MaskSynthResult:
    """``ferdata mask-synth``: a masked twin for each eligible non-masked face crop.

    Eligible: a face crop (``aligned`` or ``registered``), not masked (``masked`` false or
    unknown, no mask tag), not yet paired, optionally narrowed by ``where`` (as in ``ferdata
    tag``). Each new row copies its original's label, subject, split, fold and ``face_status``; gets ``masked=true``, the tag ``synthetic_mask`` (origin
    source) and ``source`` ``mask-synth:<original id>``; its crop is both ``original_path`` and
    ``aligned_path`` (``aligned/<dataset>/<size>px/synthetic/``). Original and twin share a
    ``pair_key`` (the original's, or ``synthetic|<id>``), so ``pair_id`` holds and a later
    ``ferdata pairs`` finds the same pairs. An original whose ``masked`` was unknown becomes
    ``false`` (origin manual): choosing it as the unmasked side says so.
    """
    ws = Workspace.of(ws)
    from ..fsutil import sync
    from ..pairs import refresh_in_pe
    from ..schema import Manifest, new_frame
    from ..tags import MANUAL, MASKED_ORIGIN_COLUMN, SOURCE, select, with_origins
    from ..vision.decode import read_crop
    from ..vision.encode import write_crop

    textures = (builtin_textures() if builtin else []) + load_textures(mask_images)
    if not textures:
        raise UsageError("no mask textures: keep builtin=True or give mask_images")
    if limit is not None and limit < 1:
        raise UsageError(f"limit={limit} must be 1 or more")
    progress = progress or null_progress
    name = ws.dataset_name(dataset)
    manifest = ws.load(name)
    frame = with_origins(manifest.frame)
    reasons = _eligibility(frame)
    if where is not None:
        chosen = select(frame, where)
        reasons = reasons.where(chosen | reasons.notna(), "not selected by the where expression")
    todo = list(frame.index[reasons.isna()])
    skipped = {str(k): int(v) for k, v in reasons.dropna().value_counts().items()}
    if limit is not None and len(todo) > limit:
        skipped["beyond the limit"] = len(todo) - limit
        todo = todo[:limit]

    new_rows: list[dict[str, Any]] = []
    by_shape: dict[str, int] = {}
    by_texture: dict[str, int] = {}
    pair_keys: dict[Any, str] = {}
    progress("mask-synth", 0, len(todo))
    for done, index in enumerate(todo, start=1):
        row = frame.loc[index]
        try:
            crop = read_crop(ws.absolute(row["aligned_path"]))
        except ImageUnreadable:
            skipped["crop unreadable"] = skipped.get("crop unreadable", 0) + 1
            continue
        size = crop.shape[0]
        points = crop_points(row["landmarks"], size)
        style = choose_style(seed, row["image_id"], len(textures))
        masked_crop = draw_mask(crop, points, textures[style.texture], style)
        path = write_crop(ws.aligned_dir(name) / f"{size}px" / "synthetic", masked_crop, durable=False)
        key = row["pair_key"] if row["pair_key"] is not None else f"synthetic|{row['image_id']}"
        pair_keys[index] = key
        relative = ws.relative(path)
        registered = row["face_status"] == "registered"  # its geometry is the mean shape, not a detection
        new_rows.append(
            {
                "image_id": row["image_id"] + SYNTH_ID_SUFFIX,
                "dataset": row["dataset"],
                "source": SYNTHETIC_SOURCE_PREFIX + row["image_id"],
                "sha256": path.stem,
                "split": row["split"],
                "subject_id": row["subject_id"],
                "clip_id": row["clip_id"],
                "label_original": row["label_original"],
                "label": row["label"],
                "label_status": row["label_status"],
                "masked": True,
                "occlusion": [*(t for t in row["occlusion"] if t != "synthetic_mask"), "synthetic_mask"],
                "pair_id": key,
                "pair_key": key,
                "fold": row["fold"],
                "original_path": relative,
                "width": size,
                "height": size,
                "face_status": row["face_status"],
                "det_score": None,
                "n_faces": row["n_faces"] if registered else 1,
                "bbox": None if registered else [0.0, 0.0, float(size), float(size)],
                "landmarks": [float(v) for v in points.reshape(-1)],
                "aligned_path": relative,
                MASKED_ORIGIN_COLUMN: SOURCE,
                "face_error": row["face_error"],  # a registered row's: why its detection was not used
            }
        )
        by_shape[style.shape] = by_shape.get(style.shape, 0) + 1
        by_texture[textures[style.texture].name] = by_texture.get(textures[style.texture].name, 0) + 1
        if done % 32 == 0 or done == len(todo):
            progress("mask-synth", done, len(todo))

    if new_rows:
        sync()  # the PNGs are on disk before the manifest names them
    out = frame.copy()
    for index, key in pair_keys.items():
        out.at[index, "pair_key"] = key
        out.at[index, "pair_id"] = key
    originals = list(pair_keys)
    unknown = [i for i in originals if pd.isna(out.at[i, "masked"])]
    if unknown:
        masked = out["masked"].astype("boolean").copy()
        masked.loc[unknown] = False
        out["masked"] = masked
        out.loc[unknown, MASKED_ORIGIN_COLUMN] = MANUAL
    if new_rows:
        added = new_frame(new_rows)
        # a new row's last tag, synthetic_mask, has no origin in its original's list: zip stops before it
        added["tag_origin"] = [
            [*(o for t, o in zip(r["occlusion"], orig, strict=False) if t != "synthetic_mask"), SOURCE]
            for r, orig in zip(new_rows, (frame.at[i, "tag_origin"] for i in originals), strict=True)
        ]
        for column in out.columns:
            if column not in added.columns:  # extra columns (mask_score, ...): empty on new rows
                dtype = out[column].dtype
                added[column] = pd.Series([None] * len(added), dtype=dtype)
        out = pd.concat([out, added[out.columns]], ignore_index=True)
        out = refresh_in_pe(out)
    manifest.provenance["mask_synth"] = {
        "seed": seed,
        "created": len(new_rows),
        "skipped": skipped,
        "shapes": by_shape,
        "textures": by_texture,
        "mask_images": [str(p) for p in mask_images],
        "builtin_textures": builtin,
        "where": where,
    }
    ws.save(Manifest(dataset=name, frame=out, provenance=manifest.provenance))
    return MaskSynthResult(name, len(new_rows), skipped, by_shape, by_texture, seed)

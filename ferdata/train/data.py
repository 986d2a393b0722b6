"""Training data: a workspace or a published dataset folder -> aligned faces held in memory.

Every face is decoded once, resized to the training size and kept as one ``uint8`` tensor
(N x 3 x S x S): a 112-pixel face takes 37 KB, so MSD-E's 1,960 images fit in 74 MB and no epoch
ever touches the disk or a decoder again. Augmentation then runs on whole batches of tensors
(:mod:`ferdata.train.loop`).

Two inputs, one loader (:func:`load_faces`):

- a **workspace**: the manifest rows with a ``label``, a ``fold`` and an ``aligned_path``;
- a **published folder** (``ferdata publish --out DIR``): its Parquet shards, anywhere under the
  folder, with the columns ``image`` (a struct holding the PNG ``bytes``), ``label``, ``fold``,
  ``masked``, ``pair_id`` and, when present, ``image_id`` and ``in_pe``.

Rows that cannot take part are counted by reason in :attr:`FaceData.skipped`, never dropped
silently.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import ImageUnreadable, UsageError
from ..progress import ProgressFn, null_progress
from ..schema import BASIC_LABELS, LABELS

if TYPE_CHECKING:
    import torch

    from ..workspace import Workspace

SUBSETS = ("nm", "m", "mix", "pe")
MASKED, NON_MASKED, UNKNOWN = 1, 0, -1

# why a labelled row takes no part in training
NO_FOLD = "no fold (run ferdata folds)"
NO_FACE = "no aligned face"
REMOVED = "label removed"


@dataclass
class FaceData:
    """Aligned faces and what the protocol needs to know about each of them."""

    images: torch.Tensor  # uint8, N x 3 x S x S, RGB
    image_id: np.ndarray  # object (str)
    label: np.ndarray  # int64 index into ``classes``
    masked: np.ndarray  # int8: MASKED, NON_MASKED or UNKNOWN
    fold: np.ndarray  # int64
    pair_id: np.ndarray  # object (str or None)
    in_pe: np.ndarray  # bool
    classes: tuple[str, ...]
    origin: dict[str, Any] = field(default_factory=dict)  # kind, path, dataset
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.image_id)

    @property
    def folds(self) -> list[int]:
        return sorted(int(f) for f in np.unique(self.fold))


# ----------------------------------------------------------------------------- subsets


def subset_rows(data: FaceData, subset: str) -> np.ndarray:
    """Row indices of a subset (paper, section 3.2-3.3): nm, m, mix, or pe (both sides of MSD-PE pairs)."""
    if subset == "nm":
        return np.flatnonzero(data.masked == NON_MASKED)
    if subset == "m":
        return np.flatnonzero(data.masked == MASKED)
    if subset == "mix":
        return np.arange(len(data))
    if subset == "pe":
        return np.sort(pe_pairs(data).ravel())
    raise UsageError(f"unknown subset {subset!r}: choose one of {', '.join(SUBSETS)}")


def pe_pairs(data: FaceData) -> np.ndarray:
    """MSD-PE pairs as an array of ``[non-masked row, masked row]``, in pair_id order.

    A pair counts when both of its rows are present, both are ``in_pe`` and one is masked and the
    other not. Both images of a pair must sit in the same fold (``ferdata folds`` keeps them
    together); a pair split across folds would leak a face into validation, so it is an error.
    """
    rows = np.flatnonzero(data.in_pe & (data.masked != UNKNOWN))
    frame = pd.DataFrame({"row": rows, "pair": data.pair_id[rows], "masked": data.masked[rows]})
    frame = frame[frame["pair"].notna()]
    counts = frame.groupby("pair")["masked"].agg(["size", "sum"])
    whole = counts.index[(counts["size"] == 2) & (counts["sum"] == MASKED)]
    frame = frame[frame["pair"].isin(whole)].sort_values(["pair", "masked"])
    pairs = frame["row"].to_numpy(dtype=np.int64).reshape(-1, 2)
    split = data.fold[pairs[:, 0]] != data.fold[pairs[:, 1]]
    if split.any():
        first = data.pair_id[pairs[split][0, 0]]
        raise UsageError(
            f"{int(split.sum())} MSD-PE pairs have their two images in different folds (first: {first}): "
            "run ferdata folds again, which keeps pairs together"
        )
    return pairs


# ----------------------------------------------------------------------------- loading


def classes_for(labels: pd.Series) -> tuple[str, ...]:
    """The 7 basic expressions in MSD-E order, plus contempt when the data has it."""
    present = set(labels.dropna())
    unknown = present - set(LABELS)
    if unknown:
        raise UsageError(f"labels outside ferdata's vocabulary: {', '.join(sorted(map(str, unknown)))}")
    return LABELS if "contempt" in present else BASIC_LABELS


def load_faces(
    source: Workspace | Path | str,
    *,
    dataset: str | None = None,
    image_size: int = 112,
    progress: ProgressFn | None = None,
) -> FaceData:
    """Decode every usable face of a workspace or a published folder into memory.

    ``source`` is a :class:`~ferdata.workspace.Workspace`, a workspace folder (it holds
    ``manifests/``) or a published dataset folder (it holds Parquet shards).
    """
    from ..workspace import Workspace

    if isinstance(source, Workspace):
        rows, skipped, origin = _workspace_rows(source, dataset)
    else:
        folder = Path(source)
        if (folder / "manifests").is_dir():
            rows, skipped, origin = _workspace_rows(Workspace.resolve(folder), dataset)
        elif folder.is_dir():
            rows, skipped, origin = _published_rows(folder)
        else:
            raise UsageError(f"{folder} is neither a workspace nor a published dataset folder")
    if rows.empty:
        raise UsageError(
            f"{origin['path']} has no image with a label, a fold and an aligned face "
            f"(skipped: {skipped or 'none'}): run ferdata align and ferdata folds first"
        )
    classes = classes_for(rows["label"])
    index = {name: i for i, name in enumerate(classes)}
    images = _decode_all(rows["image"].tolist(), image_size, progress or null_progress)

    import torch

    masked = rows["masked"].map(lambda v: UNKNOWN if pd.isna(v) else (MASKED if bool(v) else NON_MASKED))
    pair_id = rows["pair_id"].astype(object).where(rows["pair_id"].notna(), None)
    return FaceData(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        image_id=rows["image_id"].astype(str).to_numpy(dtype=object),
        label=rows["label"].map(index).to_numpy(dtype=np.int64),
        masked=masked.to_numpy(dtype=np.int8),
        fold=rows["fold"].to_numpy(dtype=np.int64),
        pair_id=pair_id.to_numpy(dtype=object),
        in_pe=rows["in_pe"].fillna(False).to_numpy(dtype=bool),
        classes=classes,
        origin=origin,
        skipped=skipped,
    )


def _workspace_rows(ws: Workspace, dataset: str | None) -> tuple[pd.DataFrame, dict[str, int], dict[str, Any]]:
    manifest = ws.load(dataset)
    frame = manifest.frame
    labelled = frame["label"].notna()
    has_fold = frame["fold"].notna()
    has_face = frame["aligned_path"].notna()
    skipped = {
        REMOVED: int((~labelled).sum()),
        NO_FOLD: int((labelled & ~has_fold).sum()),
        NO_FACE: int((labelled & has_fold & ~has_face).sum()),
    }
    used = frame[labelled & has_fold & has_face]
    rows = pd.DataFrame(
        {
            "image_id": used["image_id"].to_numpy(dtype=object),
            "label": used["label"].to_numpy(dtype=object),
            "fold": used["fold"].astype("int64").to_numpy(),
            "masked": used["masked"].to_numpy(dtype=object),
            "pair_id": used["pair_id"].to_numpy(dtype=object),
            "in_pe": used["in_pe"].fillna(False).to_numpy(dtype=bool),
            "image": [ws.absolute(p) for p in used["aligned_path"]],
        }
    )
    origin = {"kind": "workspace", "path": str(ws.root), "dataset": manifest.dataset}
    return rows, {k: v for k, v in skipped.items() if v}, origin


def published_shards(folder: Path) -> list[Path]:
    """The shards holding one row per image: ``data/mix/`` (else ``data/nm/`` + ``data/m/``) of a
    ``ferdata publish`` folder, or every Parquet file of another folder. The ``pe`` config (one
    row per pair) is never read: pairs come from ``pair_id`` and ``in_pe`` of the image rows."""
    configs = folder / "data"
    for chosen in (("mix",), ("nm", "m")):
        shards = sorted(p for c in chosen for p in (configs / c).glob("*.parquet") if not p.name.startswith("."))
        if shards:
            return shards
    return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith(".") and "pe" not in p.relative_to(folder).parts[:-1])


def _label_names(schema) -> tuple[str, ...]:
    """A ClassLabel's names from the ``huggingface`` metadata; ferdata's order when there is none."""
    meta = (schema.metadata or {}).get(b"huggingface")
    if meta:
        label = json.loads(meta).get("info", {}).get("features", {}).get("label", {})
        if label.get("_type") == "ClassLabel" and label.get("names"):
            return tuple(label["names"])
    return LABELS


def _published_rows(folder: Path) -> tuple[pd.DataFrame, dict[str, int], dict[str, Any]]:
    import pyarrow.parquet as pq

    shards = published_shards(folder)
    if not shards:
        raise UsageError(f"{folder} holds no Parquet shards: point --data at a folder written by ferdata publish")
    frames = []
    for shard in shards:
        table = pq.read_table(shard)
        missing = {"image", "label", "fold", "masked"} - set(table.column_names)
        if missing:
            raise UsageError(f"{shard} lacks the columns {', '.join(sorted(missing))}: publish after ferdata folds")
        frame = table.to_pandas()
        if pd.api.types.is_integer_dtype(frame["label"]):
            names = dict(enumerate(_label_names(table.schema)))
            frame["label"] = frame["label"].map(names.get)
        frame["shard"] = shard.relative_to(folder).as_posix()
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    if "image_id" not in frame:
        frame["image_id"] = frame["shard"] + "#" + frame.groupby("shard").cumcount().astype(str)
    if "pair_id" not in frame:
        frame["pair_id"] = None
    if "in_pe" not in frame:
        # no in_pe column: a pair is in MSD-PE when both of its images carry the same label
        agree = frame.groupby("pair_id")["label"].agg(lambda s: len(s) == 2 and s.nunique() == 1)
        frame["in_pe"] = frame["pair_id"].map(agree).fillna(False).astype(bool)
    labelled = frame["label"].notna()
    has_fold = frame["fold"].notna()
    skipped = {REMOVED: int((~labelled).sum()), NO_FOLD: int((labelled & ~has_fold).sum())}
    used = frame[labelled & has_fold]
    rows = pd.DataFrame(
        {
            "image_id": used["image_id"].astype(str).to_numpy(dtype=object),
            "label": used["label"].to_numpy(dtype=object),
            "fold": used["fold"].astype("int64").to_numpy(),
            "masked": used["masked"].to_numpy(dtype=object),
            "pair_id": used["pair_id"].to_numpy(dtype=object),
            "in_pe": used["in_pe"].fillna(False).to_numpy(dtype=bool),
            "image": [cell["bytes"] if isinstance(cell, dict) else cell for cell in used["image"]],
        }
    )
    origin = {"kind": "published", "path": str(folder.resolve()), "dataset": folder.name}
    return rows, {k: v for k, v in skipped.items() if v}, origin


def decode_face(source: Path | bytes, size: int) -> np.ndarray:
    """One face as ``size x size x 3`` uint8 RGB (aligned crops are square; others are resized)."""
    from PIL import Image

    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(image, dtype=np.uint8)


def _decode_all(sources: list[Path | bytes], size: int, progress: ProgressFn) -> np.ndarray:
    images = np.empty((len(sources), size, size, 3), dtype=np.uint8)

    def one(i: int) -> int:
        try:
            images[i] = decode_face(sources[i], size)
        except (OSError, ValueError) as exc:
            where = sources[i] if isinstance(sources[i], Path) else f"row {i}"
            raise ImageUnreadable(f"cannot decode the aligned face {where}: {exc}; run ferdata align again") from None
        return i

    # Pillow releases the GIL while it decodes, so a few threads keep every core busy
    with ThreadPoolExecutor(max_workers=4) as pool:
        for done, _ in enumerate(pool.map(one, range(len(sources))), start=1):
            if done % 256 == 0 or done == len(sources):
                progress("decode faces", done, len(sources))
    return images

"""Automatic mask tagging (``ferdata tag auto --mask``): features of a face crop, a logistic
regression that turns them into ``mask_score``, and the workspace step that tags the masked faces.

Its own module because it is one job with its own inputs and evidence: it reads crops and never
draws any (drawing is :mod:`ferdata.vision.masks`, used by :mod:`ferdata.masks.synth`), and its
features and :data:`DEFAULT_MODEL`'s coefficients change together (a new feature means fitting
the model again with ``benchmarks/mask_tagging.py``).

:func:`mask_features` measures, on fixed regions of an aligned crop (the face sits on the
standard 5-point template, :mod:`ferdata.vision.align`, so the nose-mouth-chin region is at known
coordinates), how much the nose and mouth regions still look like the skin of the forehead and
nose bridge (colour distance, lightness, share of skin-coloured pixels) and how much texture they
hold relative to the upper face; a logistic regression (:class:`MaskModel`) turns those numbers
into ``mask_score``, the probability of a mask. :data:`DEFAULT_MODEL` was fitted by
``benchmarks/mask_tagging.py``; ``docs/tag.md`` gives its precision and recall and says what it
was measured on. :func:`fit_mask_model` fits a model to any labelled crops, e.g. MSD-E's own
folders. Every row with a face crop is scored: ``aligned`` and ``registered`` rows alike
(:func:`ferdata.schema.has_crop`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ImageUnreadable, TagError, UsageError
from ..progress import ProgressFn, null_progress
from ..schema import has_crop
from ..vision.align import TEMPLATE_SIZE
from ..workspace import Workspace, WorkspaceLike, writes_workspace

FEATURES = (
    "chroma_gap_mouth",  # median colour distance of the mouth/chin region to the upper-face skin
    "chroma_gap_nose",  # the same beside the nose
    "light_gap_mouth",  # lightness of the mouth/chin region minus the upper face's
    "light_gap_nose",
    "skin_share_mouth",  # share of mouth/chin pixels with the upper face's skin colour
    "skin_share_nose",
    "edge_ratio",  # log of the mouth/chin region's gradient energy over the upper face's
    "spread_ratio",  # log of the mouth/chin region's lightness spread over the upper face's
    "colourful",  # chroma of the upper-face skin: near 0 on grayscale photos
    "top_edge",  # strongest horizontal edge running across the face between nose bridge and mouth
    "fine_texture",  # log of the mouth/chin region's fine detail (high-pass spread) over the upper face's
    "mouth_line",  # log of the horizontal-edge energy at the lips over that beside the nose
)

# Regions in 112-pixel template coordinates: x1, y1, x2, y2.
_UPPER = ((40, 22, 72, 38), (49, 44, 63, 58))  # forehead, nose bridge
_NOSE = ((28, 64, 46, 80), (66, 64, 84, 80))  # cheeks beside the nose
_MOUTH = ((34, 84, 78, 108),)  # mouth and chin


def _region(lab: np.ndarray, boxes: tuple, size: int) -> np.ndarray:
    k = size / TEMPLATE_SIZE
    parts = [
        lab[round(y1 * k) : round(y2 * k), round(x1 * k) : round(x2 * k)].reshape(-1, lab.shape[2])
        for x1, y1, x2, y2 in boxes
    ]
    return np.concatenate(parts, axis=0)


def mask_features(crop: np.ndarray) -> np.ndarray:
    """The :data:`FEATURES` of one aligned RGB crop (any size; 112 or 224 in practice)."""
    import cv2

    size = crop.shape[0]
    lab = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0  # L in 0..100, a and b around 0
    lab[..., 1:] -= 128.0
    gray = cv2.GaussianBlur(lab[..., 0], (0, 0), size / 112)
    gx, gy = cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    energy = np.sqrt(gx * gx + gy * gy)[..., None]
    upper, nose, mouth = (_region(lab, boxes, size) for boxes in (_UPPER, _NOSE, _MOUTH))
    upper_e, mouth_e = (_region(energy, boxes, size)[:, 0] for boxes in (_UPPER, _MOUTH))
    skin = np.median(upper, axis=0)
    k = size / TEMPLATE_SIZE
    # A mask's upper edge is a horizontal line across the whole face; a face has none there.
    vertical = np.abs(gy)
    band = vertical[round(50 * k) : round(82 * k), round(26 * k) : round(86 * k)].mean(axis=1)
    lips = vertical[round(86 * k) : round(98 * k), round(40 * k) : round(72 * k)].mean()
    cheeks = vertical[round(64 * k) : round(80 * k), round(28 * k) : round(84 * k)].mean()
    detail = (gray - cv2.GaussianBlur(gray, (0, 0), 3 * k))[..., None]
    upper_d, mouth_d = (_region(detail, boxes, size)[:, 0] for boxes in (_UPPER, _MOUTH))

    def chroma_gap(pixels: np.ndarray) -> float:
        return float(np.median(np.linalg.norm(pixels[:, 1:] - skin[1:], axis=1)))

    def skin_share(pixels: np.ndarray) -> float:
        close = (np.linalg.norm(pixels[:, 1:] - skin[1:], axis=1) < 6.0) & (np.abs(pixels[:, 0] - skin[0]) < 25.0)
        return float(close.mean())

    return np.array(
        [
            chroma_gap(mouth) / 10.0,
            chroma_gap(nose) / 10.0,
            float(np.median(mouth[:, 0]) - skin[0]) / 25.0,
            float(np.median(nose[:, 0]) - skin[0]) / 25.0,
            skin_share(mouth),
            skin_share(nose),
            float(np.log((mouth_e.mean() + 0.5) / (upper_e.mean() + 0.5))),
            float(np.log((mouth[:, 0].std() + 1.0) / (upper[:, 0].std() + 1.0))),
            float(np.hypot(skin[1], skin[2])) / 10.0,
            float(np.log((band.max() + 1.0) / (np.median(band) + 1.0))),
            float(np.log((mouth_d.std() + 0.2) / (upper_d.std() + 0.2))),
            float(np.log((lips + 1.0) / (cheeks + 1.0))),
        ],
        dtype=np.float64,
    )


@dataclass(frozen=True)
class MaskModel:
    """Logistic regression on standardised :data:`FEATURES`: ``mask_score = sigmoid(w·z + b)``."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float = 0.5
    trained_on: str = ""
    features: tuple[str, ...] = FEATURES

    def score(self, features: np.ndarray) -> np.ndarray:
        """Mask probability of each row of ``features`` (n, len(FEATURES))."""
        if tuple(self.features) != FEATURES:
            raise TagError(f"this mask model uses the features {', '.join(self.features)}, not ferdata's; fit it again")
        z = (np.atleast_2d(features) - np.array(self.mean)) / np.array(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.array(self.weights) + self.bias)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "ferdata-mask-logistic",
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "weights": list(self.weights),
            "bias": self.bias,
            "threshold": self.threshold,
            "trained_on": self.trained_on,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaskModel:
        try:
            return cls(
                tuple(data["mean"]),
                tuple(data["scale"]),
                tuple(data["weights"]),
                float(data["bias"]),
                float(data.get("threshold", 0.5)),
                str(data.get("trained_on", "")),
                tuple(data["features"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TagError(f"not a ferdata mask model ({exc}): give a mask_model.json written with fit=True") from None

    def save(self, path: Path) -> None:
        from ..fsutil import atomic_write_bytes

        atomic_write_bytes(path, json.dumps(self.to_dict(), indent=2).encode())

    @classmethod
    def load(cls, path: Path) -> MaskModel:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise TagError(f"cannot read mask model {path}: {exc}") from None


def fit_mask_model(features: np.ndarray, masked: np.ndarray, *, l2: float = 1.0, trained_on: str = "") -> MaskModel:
    """Fit a :class:`MaskModel` by Newton's method (L2-penalised logistic regression)."""
    x = np.asarray(features, np.float64)
    y = np.asarray(masked, np.float64)
    if len(np.unique(y)) < 2:
        raise TagError("fitting a mask model needs both masked and non-masked faces")
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0  # the bias is not shrunk
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        gradient = z.T @ (p - y) + penalty * w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return MaskModel(tuple(mean), tuple(scale), tuple(w[:-1]), float(w[-1]), trained_on=trained_on)


def precision_recall(scores: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    """(precision, recall) of ``scores >= threshold`` against boolean ``truth``."""
    predicted = np.asarray(scores) >= threshold
    truth = np.asarray(truth, dtype=bool)
    tp = int((predicted & truth).sum())
    return (tp / predicted.sum() if predicted.sum() else 1.0, tp / truth.sum() if truth.sum() else 1.0)


# Fitted by benchmarks/mask_tagging.py (see docs/tag.md for the labelled set and its precision/recall).
DEFAULT_MODEL = MaskModel(
    mean=(
        0.495264,
        0.446381,
        -0.34554,
        -0.107077,
        0.566918,
        0.648761,
        -0.00326298,
        -0.043882,
        0.519212,
        1.0806,
        -0.114923,
        0.234512,
    ),
    scale=(
        1.17378,
        1.08127,
        0.843264,
        0.822434,
        0.374058,
        0.394734,
        0.771157,
        0.561053,
        0.951782,
        0.489442,
        0.859354,
        0.597119,
    ),
    weights=(
        0.68093,
        1.00695,
        1.8982,
        -1.00864,
        0.347118,
        -0.884096,
        -0.0706981,
        0.135109,
        -1.33419,
        2.62923,
        -1.6452,
        -2.67219,
    ),
    bias=1.32604,
    trained_on="benchmarks/mask_tagging.py: 133 faces x (unmasked, built-in fabric, mask photo)",
)


# ----------------------------------------------------------------------------- the workspace step


def workspace_features(ws: Workspace, frame: pd.DataFrame, progress: ProgressFn | None = None) -> pd.DataFrame:
    """:data:`FEATURES` of every row with a face crop, ``aligned`` or ``registered``
    (:func:`ferdata.schema.has_crop`); rows whose crop cannot be read are left out."""
    from ..vision.decode import read_crop

    progress = progress or null_progress
    with_crop = frame.index[has_crop(frame)]
    rows, values = [], []
    progress("mask features", 0, len(with_crop))
    for done, index in enumerate(with_crop, start=1):
        try:
            crop = read_crop(ws.absolute(frame.at[index, "aligned_path"]))
        except ImageUnreadable:
            pass  # not scored: its mask_score and tags stay as they were
        else:
            rows.append(index)
            values.append(mask_features(crop))
        if done % 64 == 0 or done == len(with_crop):
            progress("mask features", done, len(with_crop))
    return pd.DataFrame(values, index=rows, columns=list(FEATURES)) if rows else pd.DataFrame(columns=list(FEATURES))


@dataclass
class AutoMaskResult:
    """What :func:`auto_tag_masks` did."""

    dataset: str
    scored: int
    tagged: int  # rows at or above the threshold
    changed: int  # rows whose mask tag changed
    threshold: float
    model: str
    # Rows whose ``masked`` came from the source or a user: the model's precision and recall there.
    checked: int = 0
    precision: float | None = None
    recall: float | None = None
    fitted: MaskModel | None = None
    written: list[Path] = field(default_factory=list)


@writes_workspace("tag auto")
def auto_tag_masks(
    ws: WorkspaceLike,
    *,
    dataset: str | None = None,
    threshold: float | None = None,
    model: MaskModel | Path | None = None,
    fit: bool = False,
    progress: ProgressFn | None = None,
) -> AutoMaskResult:
    """``ferdata tag auto --mask``: score every face crop and tag those at or above ``threshold``.

    ``model`` is a :class:`MaskModel` or its JSON file; default :data:`DEFAULT_MODEL`. With
    ``fit``, a model is first fitted on this workspace's rows whose ``masked`` is known from the
    source or a person (MSD-E's folders, ``ferdata mask-synth`` rows; origins ``manual`` and
    ``review``) and saved as ``tables/<dataset>/mask_model.json``. Tags from the source or a
    person are never changed
    (:func:`ferdata.tags.apply_auto_mask`). Writes the ``mask_score`` column.
    """
    ws = Workspace.of(ws)
    from ..schema import Manifest
    from ..tags import MANUAL, MASKED_ORIGIN_COLUMN, REVIEW, SOURCE, apply_auto_mask, with_origins

    if fit and model is not None:
        raise UsageError("fit=True fits a new model, so model= must be left out")
    name = ws.dataset_name(dataset)
    manifest = ws.load(name)
    frame = with_origins(manifest.frame)
    features = workspace_features(ws, frame, progress)
    if features.empty:
        raise TagError(f"no face crops in {name}: align its faces first (ferdata align)")
    known = frame.loc[features.index, "masked"].notna() & frame.loc[features.index, MASKED_ORIGIN_COLUMN].isin(
        (SOURCE, MANUAL, REVIEW)
    )
    truth = frame.loc[features.index[known], "masked"].astype(bool).to_numpy()
    written: list[Path] = []
    if fit:
        chosen = fit_mask_model(
            features[known].to_numpy(),
            truth,
            trained_on=f"workspace {name}: {int(known.sum())} faces with known masked",
        )
        path = ws.tables_dir(name) / "mask_model.json"
        chosen.save(path)
        written.append(path)
        label = ws.relative(path)
    elif isinstance(model, MaskModel):
        chosen, label = model, model.trained_on or "given model"
    elif model is not None:
        chosen, label = MaskModel.load(Path(model)), str(model)
    else:
        chosen, label = DEFAULT_MODEL, "built-in"
    threshold = chosen.threshold if threshold is None else threshold
    scores = pd.Series(chosen.score(features.to_numpy()), index=features.index)
    change = apply_auto_mask(frame, scores, threshold)
    result = AutoMaskResult(
        name,
        len(scores),
        int((scores >= threshold).sum()),
        change.changed,
        threshold,
        label,
        fitted=chosen if fit else None,
        written=written,
    )
    if known.any():
        result.checked = int(known.sum())
        result.precision, result.recall = precision_recall(scores[known].to_numpy(), truth, threshold)
    manifest.provenance["tag_auto_mask"] = {
        "model": label,
        "threshold": threshold,
        "scored": result.scored,
        "tagged": result.tagged,
        "checked_on_known": result.checked,
        "precision_on_known": result.precision,
        "recall_on_known": result.recall,
    }
    ws.save(Manifest(dataset=name, frame=change.frame, provenance=manifest.provenance))
    return result

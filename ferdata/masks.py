"""Masks on aligned faces: drawing synthetic ones (``ferdata mask-synth``) and scoring real ones
(``ferdata tag auto --mask``).

Both work on the aligned crops, where the face sits on the standard 5-point template
(:mod:`ferdata.vision.align`), so the nose-mouth-chin region is at known coordinates.

**Synthesis.** A mask outline (``surgical``, ``cup`` like an N95, ``cloth``) is laid out in a
frame built from the face's own five points in the crop: the eye line, the eye-to-mouth
direction, the eye distance, and the nose's offset (which follows a turned head). A texture,
either one of the built-in procedural fabrics or a mask image such as insightface's
``data/images/mask_*.jpg``, is warped into that outline, shaded by the face's own lighting and
blended with a soft edge. Every choice (shape, texture, size, brightness) is drawn from a random
generator seeded by ``(seed, image_id)``, so a row's result does not depend on which other rows
are processed, and the same seed gives the same bytes.

**Scoring.** :func:`mask_features` measures, on fixed regions of the crop, how much the nose and
mouth regions still look like the skin of the forehead and nose bridge (colour distance,
lightness, share of skin-coloured pixels) and how much texture they hold relative to the upper
face; a logistic regression (:class:`MaskModel`) turns those numbers into ``mask_score``, the
probability of a mask. :data:`DEFAULT_MODEL` was fitted by ``benchmarks/mask_tagging.py``;
``docs/tag.md`` gives its precision and recall and says what it was measured on.
:func:`fit_mask_model` fits a model to any labelled crops, e.g. MSD-E's own folders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import ImageUnreadable, TagError, UsageError
from .progress import ProgressFn, null_progress
from .schema import SYNTHETIC_SOURCE_PREFIX
from .vision.align import TEMPLATE_SIZE, apply, similarity_transform, template

if TYPE_CHECKING:
    from .workspace import Workspace

SHAPES = ("surgical", "cup", "cloth")
SYNTH_ID_SUFFIX = "#synthetic_mask"  # ``image_id`` of a synthetic row: the original's id + suffix

# Outlines in face units: u across (eye distances, from the eye centre line), v down (eye-to-mouth
# distances, from the eye line). The template's chin is about v = 1.6.
_OUTLINES = {
    "surgical": [(-1.15, 0.36), (-0.5, 0.26), (0.0, 0.21), (0.5, 0.26), (1.15, 0.36), (1.2, 0.84),
                 (1.0, 1.28), (0.6, 1.56), (0.0, 1.70), (-0.6, 1.56), (-1.0, 1.28), (-1.2, 0.84)],
    "cup": [(-1.0, 0.40), (-0.45, 0.24), (0.0, 0.17), (0.45, 0.24), (1.0, 0.40), (1.1, 0.92),
            (0.88, 1.36), (0.45, 1.63), (0.0, 1.72), (-0.45, 1.63), (-0.88, 1.36), (-1.1, 0.92)],
    "cloth": [(-1.1, 0.42), (-0.5, 0.30), (0.0, 0.24), (0.5, 0.30), (1.1, 0.42), (1.16, 0.9),
              (0.95, 1.32), (0.5, 1.57), (0.0, 1.64), (-0.5, 1.57), (-0.95, 1.32), (-1.16, 0.9)],
}

# Built-in fabrics: name, RGB, pleats (surgical folds), pattern.
_FABRICS = (
    ("surgical-blue", (132, 186, 226), True, None),
    ("white", (236, 236, 232), True, None),
    ("black", (38, 38, 42), True, None),
    ("green", (96, 176, 156), True, None),
    ("pink", (232, 176, 196), False, None),
    ("navy-cloth", (44, 54, 92), False, "weave"),
    ("grey-cloth", (150, 150, 150), False, "weave"),
    ("red-check", (190, 50, 50), False, "check"),
)


# ----------------------------------------------------------------------------- textures


@dataclass(frozen=True)
class Texture:
    """A mask fabric: RGB pixels that are stretched over the mask outline."""

    name: str
    rgb: np.ndarray  # (h, w, 3) uint8


def builtin_textures() -> list[Texture]:
    """The procedural fabrics (no file needed): plain, pleated, woven and checked, several colours."""
    height, width = 120, 200
    rng = np.random.default_rng(0)
    out = []
    y = np.arange(height)[:, None].astype(np.float32)
    x = np.arange(width)[None, :].astype(np.float32)
    for name, colour, pleats, pattern in _FABRICS:
        shade = np.ones((height, width), np.float32)
        if pleats:  # three soft horizontal folds
            for centre in (0.3, 0.5, 0.7):
                shade -= 0.10 * np.exp(-(((y - centre * height) / 2.5) ** 2))
                shade += 0.05 * np.exp(-(((y - centre * height - 5) / 4.0) ** 2))
        if pattern == "weave":
            shade *= 1.0 + 0.06 * np.sign(np.sin(x * 1.7) * np.sin(y * 1.7))
        base = np.broadcast_to(np.array(colour, np.float32), (height, width, 3)).copy()
        if pattern == "check":
            stripes = ((x // 16 + y // 16) % 2 == 0)[..., None]
            base = np.where(stripes, base, np.array((236, 230, 220), np.float32))
        noise = rng.normal(0.0, 4.0, (height, width, 1)).astype(np.float32)
        rgb = np.clip(base * shade[..., None] + noise, 0, 255).astype(np.uint8)
        out.append(Texture(name, rgb))
    return out


def load_textures(paths: Sequence[Path]) -> list[Texture]:
    """Mask images (e.g. insightface's ``data/images/mask_*.jpg``): the picture of a flat mask."""
    from .vision.decode import decode

    textures = []
    for path in paths:
        try:
            textures.append(Texture(Path(path).stem, decode(Path(path)).rgb))
        except ImageUnreadable as exc:
            raise TagError(f"cannot use mask image {path}: {exc}") from None
    return textures


# ----------------------------------------------------------------------------- drawing


def _chaikin(points: np.ndarray, rounds: int = 2) -> np.ndarray:
    """A closed polygon with its corners cut ``rounds`` times: a smooth outline."""
    for _ in range(rounds):
        nxt = np.roll(points, -1, axis=0)
        points = np.stack([0.75 * points + 0.25 * nxt, 0.25 * points + 0.75 * nxt], axis=1).reshape(-1, 2)
    return points


@dataclass(frozen=True)
class MaskStyle:
    """Everything that decides how one synthetic mask looks."""

    shape: str
    texture: int  # index into the texture list
    width: float  # multiplies the outline's u
    top: float  # added to the top edge's v
    brightness: float
    flip: bool  # mirror the texture (its folds and shading)


def choose_style(seed: int, image_id: str, n_textures: int) -> MaskStyle:
    """The style of ``image_id``'s mask: a function of (seed, image_id) only."""
    digest = hashlib.sha256(f"{seed}|{image_id}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return MaskStyle(
        shape=SHAPES[int(rng.integers(len(SHAPES)))],
        texture=int(rng.integers(n_textures)),
        width=float(rng.uniform(0.94, 1.06)),
        top=float(rng.uniform(-0.05, 0.06)),
        brightness=float(rng.uniform(0.85, 1.08)),
        flip=bool(rng.integers(2)),
    )


def _face_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, float]:
    """Origin (eye centre), right and down unit vectors, eye distance, eye-to-mouth distance, nose offset."""
    eyes = (points[0] + points[1]) / 2
    mouth = (points[3] + points[4]) / 2
    down = mouth - eyes
    height = float(np.linalg.norm(down)) or 1.0
    down = down / height
    right = np.array([down[1], -down[0]])
    eye_distance = float(np.linalg.norm(points[1] - points[0])) or 1.0
    nose_offset = float((points[2] - eyes) @ right)
    return eyes, right, down, eye_distance, height, nose_offset


def draw_mask(crop: np.ndarray, points: np.ndarray, texture: Texture, style: MaskStyle) -> np.ndarray:
    """``crop`` (aligned RGB) with a mask drawn over the nose, mouth and chin marked by ``points``.

    ``points`` are the five landmarks in the crop's pixels. The result is a new uint8 array.
    """
    import cv2

    size = crop.shape[0]
    eyes, right, down, eye_distance, height, nose_offset = _face_frame(np.asarray(points, np.float64).reshape(5, 2))
    uv = np.array(_OUTLINES[style.shape], np.float64)
    uv[:, 0] *= style.width
    uv[uv[:, 1] < 0.6, 1] += style.top
    uv = _chaikin(uv)

    def to_crop(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        # Below the eyes the mask's centre line follows the nose: a turned head shifts it sideways.
        follow = np.clip(v / 0.5, 0.0, 1.3) * nose_offset
        return eyes + (u * eye_distance + follow)[:, None] * right + (v * height)[:, None] * down

    outline = to_crop(uv[:, 0], uv[:, 1])
    u0, u1, v0, v1 = uv[:, 0].min(), uv[:, 0].max(), uv[:, 1].min(), uv[:, 1].max()
    rgb = texture.rgb[:, ::-1] if style.flip else texture.rgb
    th, tw = rgb.shape[:2]
    source = np.float32([[0, 0], [tw, 0], [0, th]])
    target = np.float32(to_crop(np.array([u0, u1, u0]), np.array([v0, v0, v1])))
    fabric = cv2.warpAffine(np.ascontiguousarray(rgb), cv2.getAffineTransform(source, target), (size, size),
                            flags=cv2.INTER_AREA if tw > 2 * size else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    # Coverage with an anti-aliased, slightly soft edge (drawn at 4x, then shrunk).
    big = np.zeros((size * 4, size * 4), np.uint8)
    cv2.fillPoly(big, [np.round(outline * 4 * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    alpha = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.6, size / 160))[..., None]

    # The face's lighting, not its colour: a blurred luminance relative to its mean under the mask.
    face = crop.astype(np.float32)
    gray = face.mean(axis=2)
    light = cv2.GaussianBlur(gray, (0, 0), size / 10)
    covered = alpha[..., 0] > 0.5
    mean = float(light[covered].mean()) if covered.any() else float(light.mean())
    shade = np.clip(light / max(mean, 1.0), 0.75, 1.2)[..., None] * style.brightness
    fabric = fabric.astype(np.float32) * shade
    if np.abs(face - face.mean(axis=2, keepdims=True)).max() < 3:  # a grayscale photo gets a gray mask
        fabric = np.repeat(fabric.mean(axis=2, keepdims=True), 3, axis=2)
    out = face * (1 - alpha) + np.clip(fabric, 0, 255) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def crop_points(landmarks: Sequence[float] | None, size: int) -> np.ndarray:
    """The five landmarks in an aligned crop's pixels: the manifest's points through the same
    similarity the alignment used (so a wide-open mouth stays wide), else the template."""
    if landmarks is None or len(landmarks) != 10 or not np.all(np.isfinite(landmarks)):
        return template(size)
    points = np.asarray(landmarks, np.float64).reshape(5, 2)
    return apply(similarity_transform(points, template(size)), points)


# ----------------------------------------------------------------------------- features and model

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
    parts = [lab[round(y1 * k):round(y2 * k), round(x1 * k):round(x2 * k)].reshape(-1, lab.shape[2]) for x1, y1, x2, y2 in boxes]
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
    band = vertical[round(50 * k):round(82 * k), round(26 * k):round(86 * k)].mean(axis=1)
    lips = vertical[round(86 * k):round(98 * k), round(40 * k):round(72 * k)].mean()
    cheeks = vertical[round(64 * k):round(80 * k), round(28 * k):round(84 * k)].mean()
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
        return {"kind": "ferdata-mask-logistic", "features": list(self.features), "mean": list(self.mean),
                "scale": list(self.scale), "weights": list(self.weights), "bias": self.bias,
                "threshold": self.threshold, "trained_on": self.trained_on}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaskModel:
        try:
            return cls(tuple(data["mean"]), tuple(data["scale"]), tuple(data["weights"]), float(data["bias"]),
                       float(data.get("threshold", 0.5)), str(data.get("trained_on", "")), tuple(data["features"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise TagError(f"not a ferdata mask model ({exc}): write one with ferdata tag auto --mask --fit") from None

    def save(self, path: Path) -> None:
        from .fsutil import atomic_write_bytes

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
    mean=(0.495264, 0.446381, -0.34554, -0.107077, 0.566918, 0.648761, -0.00326298, -0.043882, 0.519212, 1.0806, -0.114923, 0.234512),
    scale=(1.17378, 1.08127, 0.843264, 0.822434, 0.374058, 0.394734, 0.771157, 0.561053, 0.951782, 0.489442, 0.859354, 0.597119),
    weights=(0.68093, 1.00695, 1.8982, -1.00864, 0.347118, -0.884096, -0.0706981, 0.135109, -1.33419, 2.62923, -1.6452, -2.67219),
    bias=1.32604,
    trained_on="benchmarks/mask_tagging.py: 133 faces x (unmasked, built-in fabric, mask photo)",
)


# ----------------------------------------------------------------------------- workspace entry points


def _read_crop(ws: Workspace, relative: str) -> np.ndarray | None:
    import cv2

    bgr = cv2.imread(str(ws.absolute(relative)), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def workspace_features(ws: Workspace, frame: pd.DataFrame, progress: ProgressFn | None = None) -> pd.DataFrame:
    """:data:`FEATURES` of every aligned row (rows without a readable crop are left out)."""
    progress = progress or null_progress
    aligned = frame.index[(frame["face_status"] == "aligned") & frame["aligned_path"].notna()]
    rows, values = [], []
    progress("mask features", 0, len(aligned))
    for done, index in enumerate(aligned, start=1):
        crop = _read_crop(ws, frame.at[index, "aligned_path"])
        if crop is not None:
            rows.append(index)
            values.append(mask_features(crop))
        if done % 64 == 0 or done == len(aligned):
            progress("mask features", done, len(aligned))
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


def auto_tag_masks(
    ws: Workspace,
    *,
    dataset: str | None = None,
    threshold: float | None = None,
    model: MaskModel | Path | None = None,
    fit: bool = False,
    progress: ProgressFn | None = None,
) -> AutoMaskResult:
    """``ferdata tag auto --mask``: score every aligned face and tag those at or above ``threshold``.

    ``model`` is a :class:`MaskModel` or its JSON file; default :data:`DEFAULT_MODEL`. With
    ``fit``, a model is first fitted on this workspace's rows whose ``masked`` is known from the
    source or a user (MSD-E's folders, ``ferdata mask-synth`` rows) and saved as
    ``tables/<dataset>/mask_model.json``. Source and user tags are never changed
    (:func:`ferdata.tags.apply_auto_mask`). Writes the ``mask_score`` column. The caller holds the lock.
    """
    from .schema import Manifest
    from .tags import MASKED_ORIGIN_COLUMN, SOURCE, USER, apply_auto_mask, with_origins

    name = ws.dataset_name(dataset)
    manifest = ws.load(name)
    frame = with_origins(manifest.frame)
    features = workspace_features(ws, frame, progress)
    if features.empty:
        raise TagError(f"no aligned faces in {name}: run ferdata align first")
    known = frame.loc[features.index, "masked"].notna() & frame.loc[features.index, MASKED_ORIGIN_COLUMN].isin((SOURCE, USER))
    truth = frame.loc[features.index[known], "masked"].astype(bool).to_numpy()
    written: list[Path] = []
    if fit:
        if model is not None:
            raise UsageError("--fit fits a new model: leave out --model")
        chosen = fit_mask_model(features[known].to_numpy(), truth, trained_on=f"workspace {name}: {int(known.sum())} faces with known masked")
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
    result = AutoMaskResult(name, len(scores), int((scores >= threshold).sum()), change.changed, threshold, label,
                            fitted=chosen if fit else None, written=written)
    if known.any():
        result.checked = int(known.sum())
        result.precision, result.recall = precision_recall(scores[known].to_numpy(), truth, threshold)
    manifest.provenance["tag_auto_mask"] = {
        "model": label, "threshold": threshold, "scored": result.scored, "tagged": result.tagged,
        "checked_on_known": result.checked, "precision_on_known": result.precision, "recall_on_known": result.recall,
    }
    ws.save(Manifest(dataset=name, frame=change.frame, provenance=manifest.provenance))
    return result


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
    from .tags import MASK_TAGS

    key_counts = frame["pair_key"].value_counts()
    reasons = []
    for row in frame.itertuples(index=False):
        tags = list(row.occlusion) if row.occlusion is not None else []
        if str(row.source).startswith(SYNTHETIC_SOURCE_PREFIX):
            reasons.append("is synthetic")
        elif row.face_status != "aligned" or row.aligned_path is None:
            reasons.append("not aligned")
        elif (not pd.isna(row.masked) and bool(row.masked)) or any(t in tags for t in MASK_TAGS):
            reasons.append("already masked")
        elif row.pair_id is not None:
            reasons.append("already paired")
        elif row.pair_key is not None and key_counts.get(row.pair_key, 0) > 1:
            reasons.append("shares pair_key with other images")
        else:
            reasons.append(None)
    return pd.Series(reasons, index=frame.index, dtype=object)


def synthesize_masks(
    ws: Workspace,
    *,
    dataset: str | None = None,
    seed: int = 0,
    where: str | None = None,
    mask_images: Sequence[Path] = (),
    builtin: bool = True,
    limit: int | None = None,
    progress: ProgressFn | None = None,
) -> MaskSynthResult:
    """``ferdata mask-synth``: a masked twin for each eligible non-masked aligned face.

    Eligible: aligned, not masked (``masked`` false or unknown, no mask tag), not yet paired,
    optionally narrowed by ``where`` (as in ``ferdata tag``). Each new row copies its original's
    label, subject, split and fold; gets ``masked=true``, the tag ``synthetic_mask`` (origin
    source) and ``source`` ``mask-synth:<original id>``; its crop is both ``original_path`` and
    ``aligned_path`` (``aligned/<dataset>/<size>px/synthetic/``). Original and twin share a
    ``pair_key`` (the original's, or ``synthetic|<id>``), so ``pair_id`` holds and a later
    ``ferdata pairs`` finds the same pairs. An original whose ``masked`` was unknown becomes
    ``false`` (origin user): choosing it as the unmasked side says so. The caller holds the lock.
    """
    import cv2

    from .fsutil import atomic_write_bytes
    from .pairs import refresh_in_pe
    from .schema import Manifest, new_frame
    from .tags import MASKED_ORIGIN_COLUMN, SOURCE, USER, select, with_origins

    textures = (builtin_textures() if builtin else []) + load_textures(mask_images)
    if not textures:
        raise UsageError("no mask textures: keep the built-in ones or pass --mask-image FILE")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit} must be 1 or more")
    progress = progress or null_progress
    name = ws.dataset_name(dataset)
    manifest = ws.load(name)
    frame = with_origins(manifest.frame)
    reasons = _eligibility(frame)
    if where is not None:
        chosen = select(frame, where)
        reasons = reasons.where(chosen | reasons.notna(), "not selected by --where")
    todo = list(frame.index[reasons.isna()])
    skipped = {str(k): int(v) for k, v in reasons.dropna().value_counts().items()}
    if limit is not None and len(todo) > limit:
        skipped["over --limit"] = len(todo) - limit
        todo = todo[:limit]

    new_rows: list[dict[str, Any]] = []
    by_shape: dict[str, int] = {}
    by_texture: dict[str, int] = {}
    pair_keys: dict[Any, str] = {}
    progress("mask-synth", 0, len(todo))
    for done, index in enumerate(todo, start=1):
        row = frame.loc[index]
        crop = _read_crop(ws, row["aligned_path"])
        if crop is None:
            skipped["crop unreadable"] = skipped.get("crop unreadable", 0) + 1
            continue
        size = crop.shape[0]
        points = crop_points(row["landmarks"], size)
        style = choose_style(seed, row["image_id"], len(textures))
        masked_crop = draw_mask(crop, points, textures[style.texture], style)
        ok, png = cv2.imencode(".png", cv2.cvtColor(masked_crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:  # pragma: no cover - OpenCV fails to encode only on invalid arrays
            raise RuntimeError("PNG encoding failed")
        data = png.tobytes()
        digest = hashlib.sha256(data).hexdigest()
        path = ws.aligned_dir(name) / f"{size}px" / "synthetic" / digest[:2] / f"{digest}.png"
        if not path.exists():
            atomic_write_bytes(path, data, durable=False)
        key = row["pair_key"] if row["pair_key"] is not None else f"synthetic|{row['image_id']}"
        pair_keys[index] = key
        relative = ws.relative(path)
        new_rows.append({
            "image_id": row["image_id"] + SYNTH_ID_SUFFIX,
            "dataset": row["dataset"],
            "source": SYNTHETIC_SOURCE_PREFIX + row["image_id"],
            "sha256": digest,
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
            "face_status": "aligned",
            "det_score": None,
            "n_faces": 1,
            "bbox": [0.0, 0.0, float(size), float(size)],
            "landmarks": [float(v) for v in points.reshape(-1)],
            "aligned_path": relative,
            MASKED_ORIGIN_COLUMN: SOURCE,
        })
        by_shape[style.shape] = by_shape.get(style.shape, 0) + 1
        by_texture[textures[style.texture].name] = by_texture.get(textures[style.texture].name, 0) + 1
        if done % 32 == 0 or done == len(todo):
            progress("mask-synth", done, len(todo))

    if new_rows:
        from .fsutil import sync

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
        out.loc[unknown, MASKED_ORIGIN_COLUMN] = USER
    if new_rows:
        added = new_frame(new_rows)
        added["tag_origin"] = [[*(o for t, o in zip(r["occlusion"], orig) if t != "synthetic_mask"), SOURCE]
                               for r, orig in zip(new_rows, (frame.at[i, "tag_origin"] for i in originals))]
        for column in out.columns:
            if column not in added.columns:  # extra columns (mask_score, ...): empty on new rows
                dtype = out[column].dtype
                added[column] = pd.Series([None] * len(added), dtype=dtype if dtype != object else object)
        out = pd.concat([out, added[out.columns]], ignore_index=True)
        out = refresh_in_pe(out)
    manifest.provenance["mask_synth"] = {
        "seed": seed, "created": len(new_rows), "skipped": skipped, "shapes": by_shape, "textures": by_texture,
        "mask_images": [str(p) for p in mask_images], "builtin_textures": builtin, "where": where,
    }
    ws.save(Manifest(dataset=name, frame=out, provenance=manifest.provenance))
    return MaskSynthResult(name, len(new_rows), skipped, by_shape, by_texture, seed)

"""Drawing masks on aligned faces: the pixels of ``ferdata mask-synth``'s synthetic twins.

This is image work only (no workspace, no manifest), so it sits in :mod:`ferdata.vision` beside the
template it draws in (:mod:`ferdata.vision.align`): in an aligned crop the face sits on the
standard 5-point template, so the nose-mouth-chin region is at known coordinates. The workspace
step that adds the drawn twins as manifest rows is :mod:`ferdata.masks.synth`; the demo and the
benchmarks draw with the same functions.

A mask outline (``surgical``, ``cup`` like an N95, ``cloth``) is laid out in a frame built from
the face's own five points in the crop: the eye line, the eye-to-mouth direction, the eye
distance, and the nose's offset (which follows a turned head). A texture, either one of the
built-in procedural fabrics or a mask image such as insightface's ``data/images/mask_*.jpg``, is
warped into that outline, shaded by the face's own lighting and blended with a soft edge. Every
choice (shape, texture, size, brightness) is drawn from a random generator seeded by
``(seed, image_id)`` (:func:`choose_style`), so a row's result does not depend on which other rows
are processed, and the same seed gives the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageUnreadable, TagError
from .align import apply, similarity_transform, template

SHAPES = ("surgical", "cup", "cloth")

# Outlines in face units: u across (eye distances, from the eye centre line), v down (eye-to-mouth
# distances, from the eye line). The template's chin is about v = 1.6.
_OUTLINES = {
    "surgical": [
        (-1.15, 0.36),
        (-0.5, 0.26),
        (0.0, 0.21),
        (0.5, 0.26),
        (1.15, 0.36),
        (1.2, 0.84),
        (1.0, 1.28),
        (0.6, 1.56),
        (0.0, 1.70),
        (-0.6, 1.56),
        (-1.0, 1.28),
        (-1.2, 0.84),
    ],
    "cup": [
        (-1.0, 0.40),
        (-0.45, 0.24),
        (0.0, 0.17),
        (0.45, 0.24),
        (1.0, 0.40),
        (1.1, 0.92),
        (0.88, 1.36),
        (0.45, 1.63),
        (0.0, 1.72),
        (-0.45, 1.63),
        (-0.88, 1.36),
        (-1.1, 0.92),
    ],
    "cloth": [
        (-1.1, 0.42),
        (-0.5, 0.30),
        (0.0, 0.24),
        (0.5, 0.30),
        (1.1, 0.42),
        (1.16, 0.9),
        (0.95, 1.32),
        (0.5, 1.57),
        (0.0, 1.64),
        (-0.5, 1.57),
        (-0.95, 1.32),
        (-1.16, 0.9),
    ],
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
    from .decode import decode

    textures = []
    for path in paths:
        try:
            textures.append(Texture(Path(path).stem, decode(Path(path)).rgb))
        except ImageUnreadable as exc:
            raise TagError(f"cannot use the mask image {exc}") from None
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
    source = np.array([[0, 0], [tw, 0], [0, th]], dtype=np.float32)
    target = np.asarray(to_crop(np.array([u0, u1, u0]), np.array([v0, v0, v1])), dtype=np.float32)
    fabric = cv2.warpAffine(
        np.ascontiguousarray(rgb),
        cv2.getAffineTransform(source, target),
        (size, size),
        flags=cv2.INTER_AREA if tw > 2 * size else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )

    # Coverage with an anti-aliased, slightly soft edge (drawn at 4x, then shrunk).
    big = np.zeros((size * 4, size * 4), np.uint8)
    cv2.fillPoly(big, [np.round(outline * 4 * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    alpha: np.ndarray = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
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

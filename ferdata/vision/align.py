"""Alignment: the similarity transform of 5 landmarks onto the standard template, and the warp.

The template is the one face-recognition work uses for 112x112 crops (ArcFace's): eyes, nose tip
and mouth corners at fixed places; other sizes scale it. A similarity transform (rotation, uniform
scale, translation) keeps the face's proportions, so expressions are not distorted; it is the
least-squares fit of the 5 points (Umeyama 1991), which spreads the error of guessed points (a
masked mouth) over all five instead of trusting any two.
"""

from __future__ import annotations

import numpy as np

TEMPLATE_SIZE = 112
TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],  # left eye (image left)
        [73.5318, 51.5014],  # right eye
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # left mouth corner
        [70.7299, 92.2041],  # right mouth corner
    ],
    dtype=np.float64,
)


def template(size: int = TEMPLATE_SIZE) -> np.ndarray:
    """The 5 template points for a ``size`` x ``size`` crop."""
    return TEMPLATE_112 * (size / TEMPLATE_SIZE)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of the similarity that maps ``src`` points onto ``dst`` in least squares."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    reflection = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        reflection[1, 1] = -1.0
    rotation = u @ reflection @ vt
    src_variance = (src_c**2).sum() / len(src)
    scale = (singular * np.diag(reflection)).sum() / src_variance if src_variance > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp(rgb: np.ndarray, landmarks: np.ndarray, size: int = TEMPLATE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The ``size`` x ``size`` aligned face from ``rgb`` and the matrix used (image -> crop).

    ``landmarks`` are in ``rgb``'s pixels. When the face is much larger than the crop, the region
    around it is first shrunk with area averaging, so that the crop is not aliased (a bilinear warp
    alone samples only a few of the pixels it skips).
    """
    import cv2

    matrix = similarity_transform(landmarks, template(size))
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    image = rgb
    if scale < 0.5:
        # The source region the crop sees, with a margin, shrunk to about twice the crop's scale.
        inverse = cv2.invertAffineTransform(matrix)
        corners = apply(inverse, np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64))
        margin = 2.0 / scale
        height, width = rgb.shape[:2]
        x1 = int(max(0, np.floor(corners[:, 0].min() - margin)))
        y1 = int(max(0, np.floor(corners[:, 1].min() - margin)))
        x2 = int(min(width, np.ceil(corners[:, 0].max() + margin)))
        y2 = int(min(height, np.ceil(corners[:, 1].max() + margin)))
        if x2 - x1 >= 2 and y2 - y1 >= 2:
            shrink = 2.0 * scale
            region = rgb[y1:y2, x1:x2]
            new_w, new_h = max(1, round(region.shape[1] * shrink)), max(1, round(region.shape[0] * shrink))
            image = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
            fx, fy = new_w / region.shape[1], new_h / region.shape[0]
            to_small = np.array([[fx, 0.0, -x1 * fx], [0.0, fy, -y1 * fy]])
            local = similarity_transform(apply(to_small, landmarks), template(size))
            crop = cv2.warpAffine(
                image,
                local,
                (size, size),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=(0, 0, 0),
            )
            return crop, matrix
    crop = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0)
    )
    return crop, matrix


def shape_problem(points: np.ndarray) -> str | None:
    """Why 5 points cannot be a face's left eye, right eye, nose tip and mouth corners, or None.

    Measured in the face's own frame (x along the eyes, y down from them, in eye distances), so
    that a tilted or turned head passes; what fails is an order no face has: eyes upside down or
    stacked, a mouth above the eyes or far below them, mouth corners swapped, a nose outside the
    face. The bounds hold every face of dlib's annotated photos and of the masked and FER2013-like
    sets of ``benchmarks/masked_faces.py`` with a wide margin (docs/align.md).
    """
    points = np.asarray(points, dtype=np.float64).reshape(5, 2)
    left_eye, right_eye, nose, left_mouth, right_mouth = points
    across = right_eye - left_eye
    eye_distance = float(np.hypot(*across))
    if not np.isfinite(points).all() or eye_distance < 1e-6:
        return "landmarks collapse to one point"
    across /= eye_distance
    down = np.array([-across[1], across[0]])
    roll = float(np.degrees(np.arctan2(across[1], across[0])))
    if abs(roll) > 60:
        return f"eyes tilted {roll:.0f} degrees"
    eyes = (left_eye + right_eye) / 2
    mouth = (left_mouth + right_mouth) / 2
    mouth_depth = float((mouth - eyes) @ down) / eye_distance
    if not 0.5 <= mouth_depth <= 2.2:
        return f"mouth {mouth_depth:.2f} eye distances below the eyes"
    mouth_width = float((right_mouth - left_mouth) @ across) / eye_distance
    if mouth_width < 0.2:
        return "mouth corners in the wrong order"
    nose_depth = float((nose - eyes) @ down) / eye_distance
    nose_side = float((nose - eyes) @ across) / eye_distance
    if not -0.1 <= nose_depth <= mouth_depth + 0.2 or abs(nose_side) > 1.0:
        return "nose outside the face"
    return None

"""Masked faces are found, and faces are not invented where there are none.

- Real masked photos: the 30 photos of ``tests/data/face-mask/with_mask`` (web photos, MIT
  licence; the half of the set that was held out while the detection tries were chosen), as they
  are and cut FER2013-style (the face filling a 48x48 grayscale or a 112 px colour square).
- Synthetic masks (``ferdata.vision.masks.draw_mask``, built-in fabrics and insightface's mask photos)
  on the real faces of ``tests/face_crops.py``, at 48 to 256 px, from crops the face fills edge
  to edge to crops twice the face's size.
- Non-faces: noise, smooth noise, scikit-image's pictures (whole and cropped), the 100 non-face
  patches of ``lfw_subset``, dlib's photo of dogs.

A face counts as found when the face kept (the largest) is the right one: its eye centre within
half the eye distance of the reference, its eye distance within a factor of 2 of it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import insightface
import numpy as np
import pytest
import skimage.data
from face_crops import real_faces, registered_crop

from ferdata.align import Attempt, _seen_from_both_sides, detect_attempt, find_faces
from ferdata.vision.decode import decode
from ferdata.vision.detectors import Face, load_detector
from ferdata.vision.masks import builtin_textures, choose_style, draw_mask, load_textures

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def detector():
    return load_detector("retinaface", device="cpu")


def matches(face, points: np.ndarray) -> bool:
    iod = float(np.linalg.norm(points[1] - points[0]))
    gap = float(np.linalg.norm(face.landmarks[:2].mean(0) - points[:2].mean(0)))
    ratio = float(np.linalg.norm(face.landmarks[1] - face.landmarks[0])) / iod
    return gap < 0.5 * iod and 0.5 < ratio < 2.0


def found(detector, rgb: np.ndarray, points: np.ndarray) -> bool:
    faces = find_faces(detector, rgb)
    return bool(faces) and matches(max(faces, key=lambda f: f.area), points)


def reference(detector, rgb: np.ndarray) -> np.ndarray:
    """The face's points at the detector's most careful setting (score 0.9, seen at twice the
    size, averaged with the mirror image's)."""
    canvas = int(min(640, max(256, 2 * max(rgb.shape[:2]))))
    face = max(detect_attempt(detector, [rgb], Attempt(0.25, canvas, 0.9))[0], key=lambda f: f.area)
    twins = detect_attempt(detector, [rgb], Attempt(0.25, canvas, 0.5, flip=True))[0]
    twin = min(twins, key=lambda f: np.linalg.norm(f.landmarks - face.landmarks))
    return (face.landmarks + twin.landmarks) / 2


def colour(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2) if gray.ndim == 2 else gray


def crop_points(photo_points: np.ndarray, photo: np.ndarray, crop_side: int, framing: float) -> np.ndarray:
    """Where ``registered_crop`` puts the face's points (the same transform, on points)."""
    eyes, mouth = photo_points[:2].mean(0), photo_points[3:].mean(0)
    unit = max(float(np.linalg.norm(photo_points[1] - photo_points[0])), float(np.linalg.norm(mouth - eyes)) / 1.07)
    extent = framing * unit / 0.35
    centre = (eyes + mouth) / 2 - np.array([0.0, 0.03 * extent])
    return (photo_points - centre) * (crop_side / extent) + crop_side / 2


VIEWS = ((48, 1.0, True), (112, 1.0, False), (128, 1.5, False), (256, 2.0, False))


def test_real_masked_photos_are_found(detector):
    results = {}
    for path in sorted((DATA / "face-mask" / "with_mask").glob("*.jpg")):
        photo = decode(path).rgb
        points = reference(detector, photo)
        results[path.name] = found(detector, photo, points)
        for side, framing, gray in VIEWS[:2]:
            crop = colour(registered_crop(photo, points, side=side, framing=framing, gray=gray))
            results[f"{path.name}/{side}"] = found(detector, crop, crop_points(points, photo, side, framing))
    assert len(results) == 90
    missed = [name for name, ok in results.items() if not ok]
    # Measured: 87 of 90 (the first tries for masked faces found 88, on with_mask083 at 48 px the
    # 320 pixel try at 0.3 now places the eyes 0.51 eye distances off; the previous tries: 81).
    assert len(missed) <= 4, missed  # at least 95 %


def test_synthetic_masks_on_real_faces_at_every_size_are_found(detector):
    textures = builtin_textures() + load_textures(sorted((Path(insightface.__file__).parent / "data" / "images").glob("mask_*.jpg")))
    results = {}
    for name, photo, points in real_faces():
        for side, framing, gray in VIEWS:
            # The mask is drawn on a large crop, as on a photo, then the crop is brought to its size.
            big = registered_crop(photo, points, side=512, framing=framing, gray=False)
            big_points = crop_points(points, photo, 512, framing)
            style = choose_style(0, name, len(textures))
            masked = draw_mask(big, big_points, textures[style.texture], style)
            image = cv2.resize(masked, (side, side), interpolation=cv2.INTER_AREA)
            if gray:
                image = colour(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
            results[f"{name}/{side}"] = found(detector, image, big_points * side / 512)
    share = sum(results.values()) / len(results)
    missed = [name for name, ok in results.items() if not ok]
    # Measured: 211 of 220, 95.9 % (the first tries for masked faces: 210; the previous tries: 80 %).
    assert share >= 0.95, (share, missed)


def non_faces() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    images = {}
    for side in (48, 112, 256, 640):
        noise = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        images[f"noise{side}"] = noise
        images[f"smooth{side}"] = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), side / 24), None, 0, 255, cv2.NORM_MINMAX)
    for name in ("brick", "grass", "gravel", "coffee", "chelsea", "coins", "moon", "page", "text", "rocket", "horse",
                 "hubble_deep_field", "retina", "cell", "logo", "colorwheel", "checkerboard"):
        picture = np.asarray(getattr(skimage.data, name)())
        if picture.dtype != np.uint8:
            picture = cv2.normalize(picture.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        picture = np.ascontiguousarray(colour(picture)[:, :, :3])
        images[name] = picture
        height, width = picture.shape[:2]
        for k, side in enumerate((48, 112, 256)):
            extent = int(min(height, width) * rng.uniform(0.2, 0.6))
            y, x = int(rng.integers(0, height - extent + 1)), int(rng.integers(0, width - extent + 1))
            images[f"{name}/crop{k}"] = cv2.resize(picture[y : y + extent, x : x + extent], (side, side), interpolation=cv2.INTER_AREA)
    for k, patch in enumerate(skimage.data.lfw_subset()[100:]):
        images[f"lfw-non-face{k}"] = colour(cv2.resize((patch * 255).astype(np.uint8), (48, 48), interpolation=cv2.INTER_CUBIC))
    images["dogs"] = decode(DATA / "dlib-faces" / "dogs.jpg").rgb
    return images


def test_no_face_is_invented_on_images_without_one(detector):
    images = non_faces()
    assert len(images) == 8 + 17 * 4 + 100 + 1
    invented = [name for name, rgb in images.items() if find_faces(detector, rgb)]
    # One of scikit-image's "non-face" patches is cut from an LFW photo next to a face and shows
    # a real eye and eyebrow: the first try (unchanged, and the previous tries too) scores it
    # 0.80. Nothing else: the tries that enlarge a small image, where textures and text start to
    # look like faces, keep only faces of a plausible shape and size (and, at 640 pixels, seen
    # on the mirror image too).
    assert invented == ["lfw-non-face25"]


def test_mirror_agreement_keeps_a_twin_within_the_tolerance_and_averages_it():
    points = np.array([[30.0, 40.0], [70.0, 40.0], [50.0, 60.0], [35.0, 80.0], [65.0, 80.0]])
    face = Face(box=np.array([10.0, 10.0, 90.0, 100.0]), score=0.9, landmarks=points)
    # The mirror image's face: the hidden mouth placed 0.4 eye distances (16 px) lower.
    shifted = points + np.array([[0, 0], [0, 0], [0, 0], [0, 16], [0, 16]])
    twin = Face(box=np.array([12.0, 10.0, 92.0, 104.0]), score=0.85, landmarks=shifted)
    far = Face(box=face.box + 40, score=0.95, landmarks=points + 40)  # another place: never a twin
    assert _seen_from_both_sides([face], [far, twin], tolerance=0.35) == []
    [kept] = _seen_from_both_sides([face], [far, twin], tolerance=0.5)
    assert kept.score == 0.85
    np.testing.assert_allclose(kept.landmarks, (points + shifted) / 2)
    np.testing.assert_allclose(kept.box, [11.0, 10.0, 91.0, 102.0])

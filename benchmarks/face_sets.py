"""Evaluation sets for face detection, built from real photos only (nothing downloaded).

Shared by ``benchmarks/masked_faces.py`` (recall and false detections of the detection pipeline)
and ``benchmarks/registered_crops.py`` (FER2013-like registered crops). Every image comes with
the truth needed to score it:

- *source faces*: real faces with 5 reference points: the 25 annotated faces of dlib's photos
  (``tests/data/dlib-faces``, iBUG points mapped to the 5), the faces of insightface's ``t1.jpg``,
  Tom Hanks and scikit-image's astronaut, and the real photos of ``face-mask/without_mask``
  (points from the bundled detector on the untouched photo, at its most careful setting);
- *views* of a face: the photo itself, or a square crop of it around the face at a given
  framing (1.0 = the face box fills the frame edge to edge, FER2013's style; 1.5 and 2.0 leave
  more of the head and background) resampled to a given side, grayscale or colour, optionally
  blurred; the truth points are carried through the same transform;
- *masked* views: a synthetic mask (``ferdata.vision.masks.draw_mask``, built-in fabrics and
  insightface's mask photos, shape and fabric drawn per face) on the photo before the view is
  cut, and the real masked photos of ``face-mask/with_mask`` (truth: the face the detector finds
  there at its most careful setting, checked by eye on a contact sheet);
- *non-faces*: noise, smooth noise, scikit-image's non-face pictures and textures (whole and
  random crops), the 100 non-face patches of ``lfw_subset``, dlib's photo of dogs.

Sets are split in two halves by a stable hash of each source's name (``tune`` and ``held``), so
that a change can be tuned on one half and checked on the other.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DLIB = ROOT / "tests" / "data" / "dlib-faces"
FACE_MASK_DIRS = (Path("/work/shared/data/face-mask"), ROOT / "tests" / "data" / "face-mask")


@dataclass(frozen=True)
class Sample:
    """One image to detect on, with what a correct detection must match."""

    name: str
    rgb: np.ndarray
    points: np.ndarray | None  # (5, 2) truth in ``rgb``'s pixels; None: any face counts (or none may)
    half: str  # "tune" or "held"
    kind: str  # e.g. "synthetic-mask/crop1.0/48" or "real-mask/photo"


def half_of(name: str) -> str:
    return "tune" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "held"


def face_mask_dir() -> Path | None:
    for folder in FACE_MASK_DIRS:
        if (folder / "with_mask").is_dir():
            return folder
    return None


def read_rgb(path: Path) -> np.ndarray:
    from ferdata.vision.decode import decode

    return decode(path).rgb


def _five(box: ET.Element) -> np.ndarray:
    parts = {int(p.get("name")): (float(p.get("x")), float(p.get("y"))) for p in box.iter("part")}
    mean = lambda ids: np.mean([parts[i] for i in ids], axis=0)  # noqa: E731
    return np.array([mean(range(36, 42)), mean(range(42, 48)), parts[30], parts[48], parts[54]])


def reference_faces(detector, rgb: np.ndarray):
    """The faces the bundled detector finds at its most careful setting: threshold 0.9, the
    image padded by a quarter and seen at about twice its size (up to 640 pixels), landmarks
    averaged with those found on the mirror image (which halves the detector's own noise)."""
    from ferdata.align import Attempt, detect_attempt

    canvas = int(min(640, max(256, 2 * max(rgb.shape[:2]))))
    for fraction in (0.25, 0.0, 0.5):
        faces = detect_attempt(detector, [rgb], Attempt(fraction, canvas, 0.9))[0]
        if not faces:
            continue
        mirrored = detect_attempt(detector, [rgb], Attempt(fraction, canvas, 0.5, flip=True))[0]
        out = []
        for face in faces:
            gaps = [np.linalg.norm(m.landmarks - face.landmarks, axis=1).max() for m in mirrored]
            iod = np.linalg.norm(face.landmarks[1] - face.landmarks[0])
            if gaps and min(gaps) < 0.3 * iod:
                twin = mirrored[int(np.argmin(gaps))]
                face = type(face)(box=(face.box + twin.box) / 2, score=face.score, landmarks=(face.landmarks + twin.landmarks) / 2)
            out.append(face)
        return out
    return []


def source_faces(detector) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, photo, 5 truth points) for every real unmasked face the sets are built from."""
    import insightface
    import skimage.data

    out = []
    for xml in sorted(DLIB.glob("*_with_face_landmarks.xml")):
        for image in ET.parse(xml).getroot().iter("image"):
            photo = read_rgb(DLIB / image.get("file"))
            for k, box in enumerate(image.iter("box")):
                out.append((f"dlib/{image.get('file')}#{k}", photo, _five(box)))
    images = Path(insightface.__file__).parent / "data" / "images"
    t1 = read_rgb(images / "t1.jpg")
    for k, face in enumerate(sorted(reference_faces(detector, t1), key=lambda f: f.box[0])):
        out.append((f"insightface/t1.jpg#{k}", t1, face.landmarks))
    for name, photo in (("insightface/Tom_Hanks_54745.png", read_rgb(images / "Tom_Hanks_54745.png")), ("skimage/astronaut", skimage.data.astronaut())):
        faces = reference_faces(detector, photo)
        out.append((name, photo, max(faces, key=lambda f: f.area).landmarks))
    folder = face_mask_dir()
    if folder is not None:
        for path in sorted((folder / "without_mask").iterdir()):
            photo = read_rgb(path)
            faces = reference_faces(detector, photo)
            if faces:
                out.append((f"without_mask/{path.name}", photo, max(faces, key=lambda f: f.area).landmarks))
    return out


def face_box(points: np.ndarray) -> tuple[float, float, float]:
    """Centre x, centre y and side of the registered crop around a face (framing 1.0).

    The geometry of real registered crops: on scikit-image's ``lfw_subset`` faces the bundled
    detector puts the eyes 0.35 of the side apart at 0.35 of the height and the mouth at 0.72;
    the crop here puts a face's own points the same way (so its cheeks touch the edges).
    """
    eyes, mouth = points[:2].mean(0), points[3:].mean(0)
    unit = max(float(np.linalg.norm(points[1] - points[0])), float(np.linalg.norm(mouth - eyes)) / 1.07)
    side = unit / 0.35
    centre = (eyes + mouth) / 2 - np.array([0.0, 0.03 * side])
    return float(centre[0]), float(centre[1]), float(side)


def view(photo: np.ndarray, points: np.ndarray, framing: float, side: int, *, gray: bool = False,
         blur: float = 0.0, jitter: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A square crop around the face (``framing`` times the face's size) at ``side`` pixels.

    Pixels outside the photo repeat its edge. Returns the crop and the points in its pixels.
    """
    cx, cy, face = face_box(points)
    if jitter is not None:
        cx, cy = cx + jitter[0] * face, cy + jitter[1] * face
    extent = framing * face
    scale = side / extent
    matrix = np.array([[scale, 0, side / 2 - cx * scale], [0, scale, side / 2 - cy * scale]])
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    if scale < 0.5:  # area-average first, so the small crop is not aliased
        small = cv2.resize(photo, None, fx=scale * 2, fy=scale * 2, interpolation=cv2.INTER_AREA)
        matrix_small = matrix.copy()
        matrix_small[:, :2] /= scale * 2
        crop = cv2.warpAffine(small, matrix_small, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    else:
        crop = cv2.warpAffine(photo, matrix, (side, side), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
    if blur > 0:
        crop = cv2.GaussianBlur(crop, (0, 0), blur)
    if gray:
        crop = np.repeat(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    return crop, points @ matrix[:, :2].T + matrix[:, 2]


def masked(photo: np.ndarray, points: np.ndarray, name: str, textures, seed: int = 0) -> np.ndarray:
    """``photo`` with a synthetic mask over the face at ``points`` (drawn near the face only)."""
    from ferdata.vision.masks import choose_style, draw_mask

    style = choose_style(seed, name, len(textures))
    cx, cy, face = face_box(points)
    # draw_mask works on a square image: give it the neighbourhood of the face, then paste back.
    half = int(face * 1.2) + 2
    x1, y1 = int(cx) - half, int(cy) - half
    padded = cv2.copyMakeBorder(photo, 2 * half, 2 * half, 2 * half, 2 * half, cv2.BORDER_REPLICATE)
    region = padded[y1 + 2 * half : y1 + 4 * half, x1 + 2 * half : x1 + 4 * half].copy()
    drawn = draw_mask(region, points - np.array([x1, y1]), textures[style.texture], style)
    padded[y1 + 2 * half : y1 + 4 * half, x1 + 2 * half : x1 + 4 * half] = drawn
    return np.ascontiguousarray(padded[2 * half : 2 * half + photo.shape[0], 2 * half : 2 * half + photo.shape[1]])


def mask_textures():
    import insightface

    from ferdata.vision.masks import builtin_textures, load_textures

    images = Path(insightface.__file__).parent / "data" / "images"
    return builtin_textures() + load_textures(sorted(images.glob("mask_*.jpg")))


VIEWS = (  # (framing, side, gray): the FER2013 style first, then looser and larger crops
    (1.0, 48, True), (1.0, 112, False), (1.0, 256, False),
    (1.5, 48, True), (1.5, 128, False), (1.5, 256, False),
    (2.0, 96, False), (2.0, 320, False),
)


def face_samples(detector, *, mask: bool, seed: int = 0) -> Iterator[Sample]:
    """Every source face, masked or not, in every view of :data:`VIEWS` and in its photo."""
    textures = mask_textures() if mask else None
    kind = "synthetic-mask" if mask else "unmasked"
    for name, photo, points in source_faces(detector):
        half = half_of(name)
        picture = masked(photo, points, name, textures, seed) if mask else photo
        if not name.startswith("dlib/") and not name.startswith("insightface/t1"):
            yield Sample(f"{name}/photo", picture, points, half, f"{kind}/photo")
        for framing, side, gray in VIEWS:
            crop, crop_points = view(picture, points, framing, side, gray=gray)
            yield Sample(f"{name}/{framing}/{side}", crop, crop_points, half, f"{kind}/crop{framing}/{side}")


def real_masked_samples(detector) -> Iterator[Sample]:
    """The real masked photos, as they are and cut FER2013-style (face fills 48 and 112 px)."""
    folder = face_mask_dir()
    if folder is None:
        return
    for path in sorted((folder / "with_mask").iterdir()):
        photo = read_rgb(path)
        faces = reference_faces(detector, photo)
        half = half_of(path.name)
        yield Sample(f"with_mask/{path.name}", photo, max(faces, key=lambda f: f.area).landmarks if faces else None, half, "real-mask/photo")
        if not faces:
            continue
        points = max(faces, key=lambda f: f.area).landmarks
        for framing, side, gray in ((1.0, 48, True), (1.0, 112, False), (1.5, 128, False)):
            crop, crop_points = view(photo, points, framing, side, gray=gray)
            yield Sample(f"with_mask/{path.name}/{framing}/{side}", crop, crop_points, half, f"real-mask/crop{framing}/{side}")


def non_face_samples(seed: int = 0) -> Iterator[Sample]:
    """Images that hold no human face."""
    import skimage.data

    rng = np.random.default_rng(seed)
    for side in (48, 112, 256, 640):
        for k in range(3):
            noise = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
            yield Sample(f"noise/{side}/{k}", noise, None, half_of(f"noise{side}{k}"), "non-face/noise")
            smooth = cv2.GaussianBlur(noise, (0, 0), side / 24)
            smooth = cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX)
            yield Sample(f"smooth-noise/{side}/{k}", smooth, None, half_of(f"smooth{side}{k}"), "non-face/noise")
    pictures = ("brick", "grass", "gravel", "coffee", "chelsea", "coins", "moon", "page", "text", "rocket", "horse",
                "hubble_deep_field", "immunohistochemistry", "retina", "cell", "logo", "clock", "colorwheel",
                "microaneurysms", "checkerboard")
    for name in pictures:
        try:
            picture = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - a picture this scikit-image would have to download
            continue
        picture = np.asarray(picture)
        if picture.dtype != np.uint8:
            picture = cv2.normalize(picture.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        if picture.ndim == 2:
            picture = np.repeat(picture[:, :, None], 3, axis=2)
        picture = np.ascontiguousarray(picture[:, :, :3])
        half = half_of(name)
        yield Sample(f"skimage/{name}", picture, None, half, "non-face/picture")
        height, width = picture.shape[:2]
        for k, side in enumerate((48, 112, 256)):
            extent = int(min(height, width) * rng.uniform(0.2, 0.6))
            y, x = int(rng.integers(0, height - extent + 1)), int(rng.integers(0, width - extent + 1))
            crop = cv2.resize(picture[y : y + extent, x : x + extent], (side, side), interpolation=cv2.INTER_AREA)
            yield Sample(f"skimage/{name}/crop{k}", crop, None, half, "non-face/picture-crop")
    patches = skimage.data.lfw_subset()[100:]
    for k, patch in enumerate(patches):
        gray = cv2.resize((patch * 255).astype(np.uint8), (48, 48), interpolation=cv2.INTER_CUBIC)
        yield Sample(f"lfw_subset/non-face/{k}", np.repeat(gray[:, :, None], 3, axis=2), None, half_of(f"lfw{k}"), "non-face/lfw-patch")
    yield Sample("dlib/dogs.jpg", read_rgb(DLIB / "dogs.jpg"), None, "tune", "non-face/picture")


def matches(face, points: np.ndarray) -> bool:
    """A detection is of the face whose truth is ``points``: eye centre within half the eye
    distance, and a face of about that size."""
    iod = float(np.linalg.norm(points[1] - points[0]))
    gap = float(np.linalg.norm(face.landmarks[:2].mean(0) - points[:2].mean(0)))
    found_iod = float(np.linalg.norm(face.landmarks[1] - face.landmarks[0]))
    return gap < 0.5 * iod and 0.5 < found_iod / max(iod, 1e-6) < 2.0

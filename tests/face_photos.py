"""A folder of real face photos and real-face crops for comparing the alignment engines.

Everything comes from files the test environment already has: insightface's wheel images
(``t1.jpg``, a group photo; Tom Hanks; four masked faces), scikit-image's astronaut, dlib's
annotated photos in ``tests/data/dlib-faces`` (and its ``dogs.jpg``, which has no human face),
FER2013-like 48x48 crops of those faces (``tests/face_crops.py``), plus a truncated JPEG and a
flat grey image: between them every ``face_status`` an alignment run can give.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from face_crops import DATA, real_faces, registered_crop


def photos() -> list[tuple[str, np.ndarray]]:
    """(name, RGB) of the real photos: group, single, masked and animal pictures."""
    import insightface
    import skimage.data

    from ferdata.vision.decode import decode

    images = Path(insightface.__file__).parent / "data" / "images"
    out = [(p.stem, decode(p).rgb) for p in sorted(images.iterdir()) if p.suffix in (".jpg", ".png")]
    out.append(("astronaut", skimage.data.astronaut()))
    out += [(p.stem, decode(p).rgb) for p in sorted((DATA / "dlib-faces").glob("*.jpg"))]
    return out


def _save(path: Path, rgb: np.ndarray) -> None:
    path = path.parent / "neutral" / path.name  # an imagefolder: one folder per label
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(path), pixels, [cv2.IMWRITE_JPEG_QUALITY, 92] if path.suffix == ".jpg" else [])


def photo_folder(root: Path, crops: int = 8, broken: bool = True) -> Path:
    """``root/neutral/<name>.jpg`` for every photo, ``crops`` 48x48 face crops (every fourth blurred),
    and with ``broken`` a truncated JPEG and a flat grey picture."""
    for name, rgb in photos():
        _save(root / f"{name}.jpg", rgb)
    crop_folder(root, crops)
    if broken:
        whole = (root / "neutral" / "astronaut.jpg").read_bytes()
        (root / "neutral" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
        _save(root / "grey.jpg", np.full((200, 300, 3), 128, np.uint8))
    return root


def crop_folder(root: Path, count: int, seed: int = 3) -> Path:
    """``count`` distinct FER2013-like crops ``root/neutral/crop<k>.png`` of the real faces."""
    faces = real_faces()
    rng = np.random.default_rng(seed)
    for k in range(count):
        _, photo, points = faces[k % len(faces)]
        shifted = points + rng.normal(0.0, 0.6, size=2)
        crop = registered_crop(photo, shifted, framing=float(rng.uniform(0.85, 1.1)), blur=2.5 if k % 4 == 3 else 0.0)
        _save(root / f"crop{k:04d}.png", crop)
    return root


def benchmark_folder(root: Path, count: int = 1120) -> Path:
    """``count`` distinct images: each real photo at a few sizes (camera-like and web-sized),
    the rest FER2013-like crops; what ``benchmarks/ray_bench.py`` aligns."""
    made = 0
    for name, rgb in photos():
        for long_side in (1280, 800, 480):
            factor = long_side / max(rgb.shape[:2])
            resized = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
            _save(root / f"{name}-{long_side}.jpg", resized)
            made += 1
    crop_folder(root, count - made)
    return root

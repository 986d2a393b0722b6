"""Camera-size JPEGs with one real face each, for timing decoding and alignment at a phone's or a
camera's resolution (nothing downloaded: every face and background is a real photo that the
installed packages or ``tests/data`` hold).

A photo is a real background picture (scikit-image's coffee, rocket, brick, grass, gravel) scaled to
12 to 48 megapixels, one real face pasted into it (a head-and-shoulders region cut around one face
of ``face_sets.source_faces``: dlib's annotated photos, insightface's ``t1.jpg``, scikit-image's
astronaut, the unmasked photos of ``face-mask``) at 12 to 35 % of the frame's height, blended at
its edges, then sensor-like noise (luminance and colour, as a camera's sensor adds at moderate ISO)
and a JPEG at quality 92 with 4:2:0 chroma, as cameras write them. The noise matters: smooth upscaled
pictures compress to a fraction of a real photo's bytes, and a JPEG's decoding time is mostly
entropy decoding, i.e. its bytes. Every third photo is stored sideways with EXIF orientation 6, as
a camera held upright writes it.

Each photo is checked: the bundled detector must find exactly one face in it at 640 pixels
(score 0.8); a source that fails is skipped.

    python benchmarks/camera_photos.py OUT_DIR [--count 24]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MEGAPIXELS = (12, 16, 20, 24, 32, 48)
LABELS = ("happy", "neutral", "sad", "surprise")


def _backgrounds() -> list[np.ndarray]:
    import skimage.data

    out = []
    for name in ("coffee", "rocket", "brick", "grass", "gravel"):
        image = getattr(skimage.data, name)()
        if image.ndim == 2:  # textures: grayscale, tinted so that chroma is not flat
            image = np.dstack([image * 0.95, image * 0.9, image * 0.8]).astype(np.uint8)
        out.append(image)
    return out


def _head(photo: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A region around one face: about twice the face's height above and around it, more below."""
    eyes, mouth = points[:2].mean(0), points[3:].mean(0)
    unit = max(float(np.linalg.norm(points[1] - points[0])), float(np.linalg.norm(mouth - eyes)))
    cx, cy = (eyes + mouth) / 2
    x1, x2 = int(max(0, cx - 2.2 * unit)), int(min(photo.shape[1], cx + 2.2 * unit))
    y1, y2 = int(max(0, cy - 2.6 * unit)), int(min(photo.shape[0], cy + 3.0 * unit))
    return photo[y1:y2, x1:x2]


def _noise(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """``image`` with luminance and colour noise, a band of rows at a time (48 MP stays cheap)."""
    out = np.empty_like(image)
    for y in range(0, image.shape[0], 512):
        band = image[y : y + 512].astype(np.int16)
        luma = rng.normal(0.0, sigma, band.shape[:2]).astype(np.int16)[:, :, None]
        chroma = rng.normal(0.0, sigma / 2, band.shape).astype(np.int16)
        out[y : y + 512] = np.clip(band + luma + chroma, 0, 255).astype(np.uint8)
    return out


def _exif_orientation_6() -> bytes:
    """An APP1 EXIF segment holding only Orientation = 6 (rotate 90 degrees clockwise to view)."""
    tiff = b"II*\x00\x08\x00\x00\x00" + b"\x01\x00" + b"\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00\x00\x00" + b"\x00\x00\x00\x00"
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body


def make_photo(background: np.ndarray, head: np.ndarray, megapixels: float, rng: np.random.Generator,
               sideways: bool) -> bytes:
    height = int(round((megapixels * 1e6 / 1.5) ** 0.5))
    width = int(round(height * 1.5))
    frame = cv2.resize(background, (width, height), interpolation=cv2.INTER_CUBIC)
    face_height = int(height * rng.uniform(0.12, 0.35) * 2.2)  # the region is about 2.2 faces tall
    scale = face_height / head.shape[0]
    region = cv2.resize(head, (max(1, int(head.shape[1] * scale)), face_height), interpolation=cv2.INTER_CUBIC)
    rh, rw = region.shape[:2]
    y = int(rng.uniform(0.05, 0.95) * (height - rh))
    x = int(rng.uniform(0.05, 0.95) * (width - rw))
    alpha = np.zeros((rh, rw), np.float32)
    cv2.ellipse(alpha, (rw // 2, rh // 2), (int(rw * 0.46), int(rh * 0.48)), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, rw * 0.04))[:, :, None]
    target = frame[y : y + rh, x : x + rw].astype(np.float32)
    frame[y : y + rh, x : x + rw] = (alpha * region + (1 - alpha) * target).astype(np.uint8)
    frame = _noise(frame, rng, sigma=float(rng.uniform(3.0, 5.0)))
    if sideways:  # stored as the sensor saw it; EXIF says how to turn it
        frame = np.ascontiguousarray(np.rot90(frame, 1))
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    data = data.tobytes()
    if sideways:
        data = data[:2] + _exif_orientation_6() + data[2:]
    return data


def make_photos(out: Path, count: int = 24, seed: int = 0) -> list[Path]:
    """``count`` photos in ``out/<label>/IMG_<n>.jpg`` (an image-folder layout); their paths."""
    import face_sets

    from ferdata.vision.decode import decode
    from ferdata.vision.detectors import load_detector

    detector = load_detector("retinaface", device="cpu")
    rng = np.random.default_rng(seed)
    sources = face_sets.source_faces(detector)
    order = rng.permutation(len(sources))
    backgrounds = _backgrounds()
    paths, k = [], 0
    for i in order:
        if len(paths) == count:
            break
        name, photo, points = sources[i]
        head = _head(photo, points)
        if min(head.shape[:2]) < 60:
            continue
        data = make_photo(backgrounds[k % len(backgrounds)], head, MEGAPIXELS[k % len(MEGAPIXELS)], rng, sideways=k % 3 == 2)
        shown = decode(data, min_long_side=640)
        small = cv2.resize(shown.rgb, None, fx=640 / max(shown.rgb.shape[:2]), fy=640 / max(shown.rgb.shape[:2]),
                           interpolation=cv2.INTER_AREA)
        if len(detector.detect([small], 640, 0.8)[0]) != 1:
            continue
        path = out / LABELS[k % len(LABELS)] / f"IMG_{k:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
        k += 1
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=24)
    args = parser.parse_args()
    paths = make_photos(args.out, args.count)
    total = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} photos, {total / 2**20:.0f} MiB in {args.out}")


if __name__ == "__main__":
    main()

"""Decoding image files into RGB arrays, no larger than the work needs.

The datasets hold everything from FER2013's 48x48 grayscale squares to 50 MP phone photos, so a
decode here:

- applies the EXIF orientation, so that coordinates refer to the picture as people see it;
- turns grayscale, palette, alpha and 16-bit images into 8-bit RGB;
- decodes JPEGs at a reduced resolution when asked (libjpeg's DCT scaling by 1/2, 1/4 or 1/8
  through Pillow's ``draft``): a 24 MP photo decodes at 1/8 in a small fraction of the full
  decode's time and memory, and detection never needs more than about 640 pixels;
- pads small images, so that a face that fills a 48x48 frame sits inside a margin the detector
  was trained to expect.

Coordinates: ``Decoded.scale`` is decoded pixels per original pixel, where "original" means the
full-resolution image after EXIF orientation, the frame the manifest's ``bbox``, ``landmarks``,
``width`` and ``height`` use.
"""

from __future__ import annotations

import io
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageUnreadable


@dataclass(frozen=True)
class Decoded:
    """An image decoded to 8-bit RGB, possibly at a reduced scale."""

    rgb: np.ndarray  # (h, w, 3) uint8
    scale: float  # decoded pixels per original pixel (1, 1/2, 1/4 or 1/8)
    width: int  # original width, after EXIF orientation
    height: int  # original height, after EXIF orientation


def _to_rgb8(image) -> np.ndarray:
    """8-bit RGB pixels of a loaded Pillow image of any mode."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit (or 32-bit integer) grayscale: keep the top 8 bits of the range actually used
        # by 16-bit files; an "I" image whose values fit in 8 bits is already 8-bit.
        values = np.asarray(image)
        if values.max(initial=0) > 255:
            values = values.astype(np.uint32) >> 8
        gray = np.clip(values, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if values.max(initial=0.0) <= 1.0:
            values = values * 255.0
        gray = np.clip(values + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("L", "1"):
        gray = np.asarray(image.convert("L"))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Transparent pixels over white rather than over whatever colour they happen to hold.
        from PIL import Image

        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def _orient(image):
    from PIL import ImageOps

    return ImageOps.exif_transpose(image)


def _open(source: Path | bytes):
    from PIL import Image

    if isinstance(source, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(source))
    return Image.open(source)


# Where Pillow finds an orientation (``Image.getexif``: EXIF, raw EXIF text, XMP). A JPEG whose
# header holds none of them is shown as stored, and reading its (absent) EXIF would cost more than
# opening it: ingest asks this of every image.
_ORIENTATION_KEYS = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


def _oriented_size(image) -> tuple[int, int]:
    width, height = image.size
    if image.format == "JPEG" and not any(key in image.info for key in _ORIENTATION_KEYS):
        return width, height
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block must not make the whole image unreadable
        orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def decode(source: Path | bytes, min_scale: float = 1.0, min_long_side: int | None = None) -> Decoded:
    """Decode ``source`` to RGB at a scale of at least ``min_scale`` (1 = full resolution).

    ``min_long_side`` asks instead for the smallest decode whose longer side still has that many
    pixels (the detector's input size). Only JPEGs can be decoded at a reduced scale; every other format comes back at full size
    (``scale == 1``). Raises :class:`ImageUnreadable` with the reason when the file cannot be
    decoded.
    """
    from PIL import Image, UnidentifiedImageError

    name = "image" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = _open(source)
            width, height = _oriented_size(image)
            stored_w, stored_h = image.size
            if min_long_side is not None:
                min_scale = min(1.0, min_long_side / max(stored_w, stored_h, 1))
            scale = 1.0
            if image.format == "JPEG" and min_scale < 1.0:
                wanted = (max(1, math.ceil(stored_w * min_scale)), max(1, math.ceil(stored_h * min_scale)))
                image.draft("RGB", wanted)
                # libjpeg scales by 1/k with k a power of two and rounds sizes up.
                k = max(1, round(stored_w / image.size[0]))
                scale = 1.0 / k
            image.load()
            image = _orient(image)
            rgb = _to_rgb8(image)
    except FileNotFoundError:
        raise ImageUnreadable(f"{name}: file not found") from None
    except UnidentifiedImageError:
        return _decode_with_opencv(source, name)
    except Image.DecompressionBombError as exc:
        raise ImageUnreadable(f"{name}: too many pixels ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageUnreadable(f"{name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise many kinds on corrupt files
        raise ImageUnreadable(f"{name}: corrupt image ({type(exc).__name__}: {exc})") from None
    return Decoded(rgb=np.ascontiguousarray(rgb), scale=scale, width=width, height=height)


def _decode_with_opencv(source: Path | bytes, name: str) -> Decoded:
    """Formats Pillow does not know (some TIFF and 16-bit variants) through OpenCV, no EXIF."""
    import cv2

    try:
        data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()
    except OSError as exc:
        raise ImageUnreadable(f"{name}: {exc.strerror or exc}") from None
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if pixels is None:
        raise ImageUnreadable(f"{name}: not an image in a format ferdata can decode")
    if pixels.dtype == np.uint16:
        pixels = (np.asarray(pixels, np.uint16) >> 8).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    if pixels.ndim == 2:
        rgb = np.repeat(pixels[:, :, None], 3, axis=2)
    elif pixels.shape[2] == 4:
        rgb = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(pixels[:, :, :3], cv2.COLOR_BGR2RGB)
    height, width = rgb.shape[:2]
    return Decoded(rgb=np.ascontiguousarray(rgb), scale=1.0, width=width, height=height)


# JPEG markers whose segments :func:`_plain_jpeg_size` reads or skips: frame headers (SOF0-3, 5-7,
# 9-11, 13-15), Huffman and quantisation tables, restart interval, comment, APP0 (JFIF).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PLAIN_SEGMENTS = _SOF | {0xC4, 0xDB, 0xDD, 0xFE, 0xE0}


def _plain_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG whose header holds only what an encoder writes for a plain image
    (JFIF, tables, one frame header; no EXIF, XMP, ICC or Adobe segment, hence no orientation),
    read from its frame header; None for anything else, which Pillow then reads.

    Pillow's header reader is written in Python and costs more than hashing and storing a small
    JPEG (2,000 of 160x120: 0.26 s against 0.03 s). This reader accepts only headers that Pillow
    reads without complaint and to the same size, so the two never disagree.
    """
    if data[:3] != b"\xff\xd8\xff":
        return None
    size, at, end = None, 2, len(data)
    while at + 4 <= end:
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker not in _PLAIN_SEGMENTS and marker != 0xDA:
            return None
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if length < 2 or at + 2 + length > end:
            return None  # Pillow reads every segment whole, the scan header's too
        if marker == 0xDA:  # start of scan: the header is over
            break
        segment = data[at + 4 : at + 2 + length]
        if marker in _SOF:
            if size is not None or len(segment) < 6 or segment[0] != 8 or segment[5] not in (1, 3, 4):
                return None  # Pillow refuses other depths and layer counts
            size = int.from_bytes(segment[3:5], "big"), int.from_bytes(segment[1:3], "big")
        elif (
            marker == 0xDB
            and not _plain_tables(segment)
            or marker == 0xE0
            and segment.startswith(b"JFIF")
            and len(segment) < 12
        ):
            return None
        at += 2 + length
    else:
        return None  # no start of scan
    if size is None or 0 in size:
        return None
    if "PIL.Image" not in sys.modules and size[0] * size[1] <= _UNDER_PILLOWS_LIMIT:
        return size  # Pillow not loaded yet, so its limit is still its default, far above: no import needed
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and size[0] * size[1] > Image.MAX_IMAGE_PIXELS:
        return None  # Pillow's decompression-bomb check has its say
    return size


# Below Pillow's default MAX_IMAGE_PIXELS (about 89 million) in every version.
_UNDER_PILLOWS_LIMIT = 2**24


def _plain_tables(segment: bytes) -> bool:
    """Whether a DQT segment holds whole quantisation tables (as Pillow requires)."""
    at = 0
    while at < len(segment):
        at += 1 + (64 if segment[at] < 16 else 128)
    return at == len(segment)


def image_size(source: Path | bytes) -> tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header only."""
    if isinstance(source, (bytes, bytearray)) and (size := _plain_jpeg_size(source)) is not None:
        return size  # Pillow is not even imported for plain JPEGs
    from PIL import Image, UnidentifiedImageError

    label = "image" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    try:
        with _open(source) as image:
            return _oriented_size(image)
    except FileNotFoundError:
        raise ImageUnreadable(f"{label}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageUnreadable(f"{label}: {type(exc).__name__}: {exc}") from None


def pad(rgb: np.ndarray, fraction: float) -> tuple[np.ndarray, int, int]:
    """``rgb`` with a border of ``fraction`` of its size on every side, and the (left, top) offset.

    The border repeats the edge pixels blurred into a flat tone, which the detector treats as
    background, where a black frame would be read as the edge of the face.
    """
    import cv2

    if fraction <= 0:
        return rgb, 0, 0
    height, width = rgb.shape[:2]
    dx, dy = round(width * fraction), round(height * fraction)
    padded = cv2.copyMakeBorder(rgb, dy, dy, dx, dx, cv2.BORDER_REPLICATE)
    # Smear the replicated border so that it carries no structure of its own.
    blurred = cv2.blur(padded, (max(3, dx | 1), max(3, dy | 1)))
    blurred[dy : dy + height, dx : dx + width] = rgb
    return blurred, dx, dy


def read_crop(
    source: Path | str | bytes,
    size: int | tuple[int, int] | None = None,
    *,
    gray: bool = False,
    name: str | None = None,
) -> np.ndarray:
    """A face crop (a file or its bytes) as uint8 pixels: ``(h, w, 3)`` RGB, or ``(h, w)`` with ``gray``.

    The one decoder of face crops: the aligned PNGs ferdata writes (8-bit RGB, no EXIF, no
    alpha) and the small originals compared or trained on as faces. It is Pillow's ``convert``
    of the stored pixels, deliberately unlike :func:`decode`: no EXIF orientation, no DCT
    scaling, alpha dropped rather than composited, so that the trainer's tensors and the leakage
    signatures cached in a workspace stay what they were.

    ``size`` (``n`` or ``(width, height)``) resizes with Pillow's bilinear filter
    (``reducing_gap=2.0``); a crop already at that size is returned as it is. ``name`` is what an
    error calls ``source`` (default: its path, or "image bytes"). Raises :class:`ImageUnreadable`
    with one line naming the file and the reason.
    """
    from PIL import Image, UnidentifiedImageError

    is_bytes = isinstance(source, (bytes, bytearray, memoryview))
    label = name or ("image bytes" if is_bytes else str(source))
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source) as stored:
            image = stored.convert("L" if gray else "RGB")
            if size is not None:
                wanted = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
                if image.size != wanted:
                    image = image.resize(wanted, Image.Resampling.BILINEAR, reducing_gap=2.0)
            return np.array(image, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageUnreadable(f"{label}: file not found") from None
    except UnidentifiedImageError:
        raise ImageUnreadable(f"{label}: not an image, or not in a format ferdata can decode") from None
    except Image.DecompressionBombError:
        raise ImageUnreadable(f"{label}: too many pixels for a face crop") from None
    except OSError as exc:
        raise ImageUnreadable(f"{label}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise many kinds on corrupt files
        raise ImageUnreadable(f"{label}: corrupt image ({type(exc).__name__}: {exc})") from None

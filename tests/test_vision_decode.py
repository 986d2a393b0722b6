"""Decoding: EXIF orientation, grayscale, 16-bit, alpha, reduced JPEG decodes, padding, failures."""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from ferdata.errors import ImageUnreadable
from ferdata.vision.decode import decode, image_size, pad


def _jpeg(pixels: np.ndarray, quality: int = 95, exif=None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if exif is not None:
        image.save(buffer, "JPEG", quality=quality, exif=exif)
    else:
        image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


@pytest.mark.parametrize(("orientation", "stored_k"), [(6, 1), (8, -1), (3, 2)])
def test_exif_orientation_is_applied(astronaut, orientation, stored_k, tmp_path):
    # Stored rotated, with the EXIF tag that tells viewers how to turn it upright.
    upright = astronaut[:, 64:448]  # not square, so that a wrong rotation changes the shape
    stored = np.ascontiguousarray(np.rot90(upright, k=stored_k))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_jpeg(stored, exif=exif))

    decoded = decode(path)
    assert decoded.rgb.shape == upright.shape
    assert (decoded.width, decoded.height) == (upright.shape[1], upright.shape[0])
    assert image_size(path) == (upright.shape[1], upright.shape[0])
    assert np.abs(decoded.rgb.astype(int) - upright).mean() < 4


def test_grayscale_jpeg_becomes_three_equal_channels(astronaut):
    gray = (astronaut @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    decoded = decode(_jpeg(gray))
    assert decoded.rgb.shape == (512, 512, 3)
    assert decoded.rgb.dtype == np.uint8
    assert np.array_equal(decoded.rgb[..., 0], decoded.rgb[..., 2])


def test_16_bit_grayscale_keeps_its_top_8_bits():
    gray8 = np.arange(256, dtype=np.uint16).reshape(16, 16)
    image = Image.fromarray(gray8 * 257)  # full 16-bit range
    assert image.mode.startswith("I;16")
    decoded = decode(_png(image))
    assert np.array_equal(decoded.rgb[..., 1], gray8.astype(np.uint8))


def test_transparent_pixels_come_out_white():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[:2, :, :] = (255, 0, 0, 255)  # opaque red on top, fully transparent black below
    decoded = decode(_png(Image.fromarray(rgba, "RGBA")))
    assert decoded.rgb[0, 0].tolist() == [255, 0, 0]
    assert decoded.rgb[3, 3].tolist() == [255, 255, 255]


def test_big_jpeg_is_decoded_at_the_smallest_dct_scale_that_is_large_enough(astronaut, tmp_path):
    import cv2

    big = cv2.resize(astronaut, (4000, 3000), interpolation=cv2.INTER_LINEAR)
    path = tmp_path / "big.jpg"
    path.write_bytes(_jpeg(big, quality=85))

    for_detection = decode(path, min_long_side=640)  # 1/8 would give 500 < 640: 1/4
    assert for_detection.scale == 0.25
    assert for_detection.rgb.shape == (750, 1000, 3)
    assert (for_detection.width, for_detection.height) == (4000, 3000)

    assert decode(path, min_scale=0.1).scale == 0.125
    assert decode(path, min_scale=0.3).scale == 0.5
    assert decode(path).rgb.shape == (3000, 4000, 3)


def test_png_is_never_reduced(astronaut):
    decoded = decode(_png(Image.fromarray(astronaut)), min_long_side=64)
    assert decoded.scale == 1.0
    assert decoded.rgb.shape == (512, 512, 3)


def test_unreadable_inputs_raise_with_the_reason(astronaut, tmp_path):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageUnreadable, match="garbage.jpg"):
        decode(garbage)

    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(_jpeg(astronaut)[:5000])
    with pytest.raises(ImageUnreadable, match="truncated"):
        decode(truncated)

    with pytest.raises(ImageUnreadable, match="not found"):
        decode(tmp_path / "missing.png")
    with pytest.raises(ImageUnreadable):
        decode(b"")


def test_pad_surrounds_the_image_and_returns_its_offset():
    rgb = np.full((48, 40, 3), 200, dtype=np.uint8)
    rgb[10:20, 10:20] = 0
    padded, dx, dy = pad(rgb, 0.25)
    assert (dx, dy) == (10, 12)
    assert padded.shape == (48 + 24, 40 + 20, 3)
    assert np.array_equal(padded[dy : dy + 48, dx : dx + 40], rgb)
    unchanged, dx0, dy0 = pad(rgb, 0.0)
    assert unchanged is rgb and (dx0, dy0) == (0, 0)

"""image_size reads plain JPEG headers itself (Pillow's reader costs more than storing a small
JPEG); whatever it reads that way must be what Pillow reads."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ferdata.errors import ImageUnreadable
from ferdata.vision.decode import _oriented_size, _plain_jpeg_size, image_size


def _jpeg(mode: str = "RGB", size=(40, 30), **save) -> bytes:
    rng = np.random.default_rng(0)
    bands = {"L": 1, "RGB": 3, "CMYK": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], bands), dtype=np.uint8).squeeze()
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, "JPEG", **save)
    return buffer.getvalue()


def _by_pillow(data: bytes):
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _oriented_size(image)
    except Exception:  # noqa: BLE001 - any refusal counts as "unreadable"
        return None


def _by_image_size(data: bytes):
    try:
        return image_size(data)
    except ImageUnreadable:
        return None


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


SAMPLES = {
    "rgb": _jpeg(),
    "gray": _jpeg("L", (17, 33)),
    "cmyk": _jpeg("CMYK"),
    "progressive": _jpeg(progressive=True),
    "subsampling 4:4:4, quality 100": _jpeg(subsampling=0, quality=100),
    "EXIF orientation 6": _jpeg(exif=_exif(6)),
    "ICC profile": _jpeg(icc_profile=b"\0" * 200),
    "comment": _jpeg(comment=b"hello"),
}


@pytest.mark.parametrize("name", SAMPLES)
def test_the_size_is_pillows_and_plain_headers_are_read_without_it(name):
    data = SAMPLES[name]
    assert image_size(data) == _by_pillow(data)
    plain = _plain_jpeg_size(data)
    if name in ("EXIF orientation 6", "ICC profile", "cmyk"):
        assert plain is None  # EXIF, ICC and Adobe segments are Pillow's to interpret
    else:
        assert plain == _by_pillow(data)
    assert image_size(SAMPLES["EXIF orientation 6"]) == (30, 40)  # turned, as viewers show it


@settings(max_examples=400, deadline=None)
@given(
    name=st.sampled_from(["rgb", "gray", "cmyk", "progressive", "comment"]),
    edits=st.lists(st.tuples(st.integers(0, 700), st.integers(0, 255)), min_size=1, max_size=3),
    cut=st.one_of(st.none(), st.integers(0, 700)),
)
def test_a_damaged_header_is_read_as_pillow_reads_it_or_left_to_pillow(name, edits, cut):
    data = bytearray(SAMPLES[name])
    for at, value in edits:
        if at < len(data):
            data[at] = value
    data = bytes(data[:cut] if cut is not None else data)
    plain = _plain_jpeg_size(data)
    if plain is not None:
        assert plain == _by_pillow(data)
    assert _by_image_size(data) == _by_pillow(data)

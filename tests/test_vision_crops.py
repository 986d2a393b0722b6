"""Face crops on disk: one writer (content-addressed PNGs) and one reader (``read_crop``).

``read_crop`` replaced the decoders that the trainer, the leakage check (pHash thumbnails and
identity embeddings), mask scoring, mask synthesis and the contact sheet each had. Workspaces hold
results of the old ones (the leakage signature cache, the trainer's decoded-face cache), so each
old decoder is kept here, verbatim, as the reference the new reader must equal pixel for pixel, on
crops made by ferdata's own warp and writer from real faces and on originals of every image mode.
"""

from __future__ import annotations

import hashlib
import io
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pandas as pd
import pytest
import skimage.data
from face_crops import DATA, _five
from PIL import Image

from ferdata.errors import ImageUnreadable
from ferdata.leakage import _thumbnail
from ferdata.train.data import _decode_blocks
from ferdata.vision.align import warp
from ferdata.vision.decode import decode, read_crop
from ferdata.vision.encode import write_crop

# ----------------------------------------------------------------------------- the old decoders


def old_trainer_decode(source, size):  # ferdata/train/data.py decode_face
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(image, dtype=np.uint8)


def old_opencv_read(path):  # ferdata/masks.py _read_crop and ferdata/vision/contact.py _face_tile
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def old_thumbnail(path):  # ferdata/leakage.py _thumbnail
    try:
        with Image.open(path) as img:
            width, height = img.size
            small = img.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
            return np.asarray(small, dtype=np.float64), width, height
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def old_identity_input(path, width, height):  # ferdata/leakage.py identity_embeddings
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


# ----------------------------------------------------------------------------- real crops


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Crops of dlib's annotated faces at 112 and 224 px, warped and written as ``ferdata align`` does."""
    folder = tmp_path_factory.mktemp("aligned")
    written = []
    for image in list(ET.parse(DATA / "dlib-faces" / "testing_with_face_landmarks.xml").getroot().iter("image"))[:3]:
        photo = decode(DATA / "dlib-faces" / image.get("file")).rgb
        for box in list(image.iter("box"))[:2]:
            for size in (112, 224):
                crop, _ = warp(photo, _five(box), size)
                written.append((write_crop(folder / f"{size}px", crop), crop))
    assert len(written) >= 8
    return written


def test_write_crop_names_the_file_by_its_bytes_and_reads_back_losslessly(crops):
    for path, pixels in crops:
        data = path.read_bytes()
        assert path.stem == hashlib.sha256(data).hexdigest() and path.parent.name == path.stem[:2]
        assert path.parent.parent.name in ("112px", "224px")
        assert np.array_equal(read_crop(path), pixels)
    path, pixels = crops[0]
    before = path.stat().st_mtime_ns
    assert write_crop(path.parent.parent, pixels, durable=False) == path  # the same pixels: the same file, untouched
    assert path.stat().st_mtime_ns == before
    assert len({p for p, _ in crops}) == len(crops)


def test_read_crop_equals_the_opencv_reader_of_mask_scoring_and_the_contact_sheet(crops):
    for path, _ in crops:
        new = read_crop(path)
        assert new.dtype == np.uint8 and new.flags.writeable
        assert np.array_equal(new, old_opencv_read(path))


@pytest.mark.parametrize("size", [112, 96, 64, 48, 224, 27])  # 27: a reduce() step before the bilinear filter
def test_read_crop_equals_the_trainers_decoder(crops, size):
    for path, _ in crops:
        assert np.array_equal(read_crop(path, size), old_trainer_decode(path, size))
        data = path.read_bytes()
        assert np.array_equal(read_crop(data, size), old_trainer_decode(data, size))


def test_the_trainers_blocks_hold_the_same_tensors(crops):
    paths = [p for p, _ in crops]
    rows = pd.DataFrame({"image_id": [p.stem for p in paths], "image": paths})
    blocks = {}
    _decode_blocks(rows, {"kind": "workspace"}, 64, lambda *a: None, lambda first, block: blocks.update({first: block.copy()}))
    decoded = np.concatenate([blocks[k] for k in sorted(blocks)])
    assert np.array_equal(decoded, np.stack([old_trainer_decode(p, 64).transpose(2, 0, 1) for p in paths]))


def test_the_trainer_names_an_unreadable_crop_and_the_fix(crops, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(crops[0][0].read_bytes()[:100])
    rows = pd.DataFrame({"image_id": ["a", "b"], "image": [crops[0][0], broken]})
    with pytest.raises(ImageUnreadable) as caught:
        _decode_blocks(rows, {"kind": "workspace"}, 64, lambda *a: None, lambda first, block: None)
    message = str(caught.value)
    assert message.startswith(f"cannot decode the face crop {broken}: ") and message.endswith("; align the dataset again")
    assert "\n" not in message and " at 0x" not in message


def _originals(folder):
    """One original per image mode a delivery may hold, some tricky for a decoder."""
    photo = skimage.data.astronaut()[100:260, 150:290]
    found = {}

    def save(name, image, **options):
        found[name] = folder / name
        image.save(found[name], **options)

    rgb = Image.fromarray(photo)
    exif = rgb.getexif()
    exif[0x0112] = 6  # stored on its side: the EXIF tag says turn it
    save("exif6.jpg", rgb, quality=90, exif=exif)
    save("gray.png", rgb.convert("L"))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, photo.shape[1]).astype(np.uint8), (photo.shape[0], 1))))
    save("alpha.png", rgba)
    save("palette.png", rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    save("deep.png", Image.fromarray((np.asarray(rgb.convert("L")).astype(np.uint16) * 257)))
    save("cmyk.jpg", rgb.convert("CMYK"), quality=90)
    save("bilevel.png", rgb.convert("1"))
    save("fer2013.png", rgb.convert("L").resize((48, 48)))
    return found


def test_the_leakage_thumbnail_is_unchanged_on_crops_and_originals(crops, tmp_path):
    """The signature cache holds thumbnails of the old code: every mode must give the same ones."""
    files = [p for p, _ in crops] + list(_originals(tmp_path).values())
    for path in files:
        new, old = _thumbnail(str(path)), old_thumbnail(path)
        assert new is not None and old is not None
        assert np.array_equal(new[0], old[0]) and new[1:] == old[1:], path.name
    (tmp_path / "not-an-image.png").write_bytes(b"plain text")
    assert _thumbnail(str(tmp_path / "not-an-image.png")) is None is old_thumbnail(tmp_path / "not-an-image.png")


def test_read_crop_gives_the_stored_pixels_not_the_exif_turned_ones(tmp_path):
    path = _originals(tmp_path)["exif6.jpg"]
    stored = read_crop(path)
    assert stored.shape == (160, 140, 3)  # as stored; decode() turns it upright for detection
    assert decode(path).rgb.shape == (140, 160, 3)


def test_identity_inputs_are_unchanged_below_a_fourfold_reduction(crops):
    for path, _ in crops:
        for width, height in ((112, 112), (96, 112), (224, 224)):
            new = read_crop(path, (width, height)).astype(np.float32)
            assert np.array_equal(new, old_identity_input(path, width, height))


def test_errors_are_one_line_naming_the_file(tmp_path, crops):
    with pytest.raises(ImageUnreadable, match=r"^.*missing\.png: file not found$"):
        read_crop(tmp_path / "missing.png")
    with pytest.raises(ImageUnreadable) as caught:
        read_crop(b"not an image at all")
    assert str(caught.value) == "image bytes: not an image, or not in a format ferdata can decode"
    with pytest.raises(ImageUnreadable, match=r"^shard-0\.parquet row 7: "):
        read_crop(crops[0][0].read_bytes()[:200], 64, name="shard-0.parquet row 7")
    with pytest.raises(ImageUnreadable) as caught:
        read_crop(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path}: ") and "Errno" not in str(caught.value)
    for exc in (caught.value,):
        assert "\n" not in str(exc) and " at 0x" not in str(exc)

"""Bad image files inside a dataset: each row gets ``face_status=unreadable`` with the reason in
``face_error``, and the run goes on. Images in unusual but valid encodings (CMYK JPEG, 16-bit PNG,
palette PNG with transparency) are not bad: they decode to RGB and their face is aligned.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.workspace import Workspace

from .helpers import IMAGES


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (beyond Pillow's bomb limit)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    struct.pack_into(">II", data, ihdr, width, height)
    struct.pack_into(">I", data, ihdr + 13, zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])))
    return bytes(data)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """One ingest (with alignment, on CPU) over a folder holding every kind of bad file."""
    root = tmp_path_factory.mktemp("bad-images")
    face = Image.open(IMAGES / "Tom_Hanks_54745.png").convert("RGB")
    good_jpeg = _encode(face, "JPEG", quality=90)
    gray16 = Image.fromarray(np.asarray(face.convert("L"), dtype=np.uint16) * 257)  # 16 bits per pixel
    palette = face.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.info["transparency"] = 0  # palette index 0 becomes transparent
    files = {
        "good.jpg": good_jpeg,
        "truncated.jpg": good_jpeg[: len(good_jpeg) // 2],
        "zero.jpg": b"",
        "cmyk.jpg": _encode(face.convert("CMYK"), "JPEG", quality=90),
        "sixteen.png": _encode(gray16, "PNG"),
        "palette.png": _encode(palette, "PNG", transparency=0),
        "huge.png": _png_claiming(40_000, 40_000),
        "text.jpg": b"this is a README, not a JPEG\n" * 10,
    }
    for name, data in files.items():
        (root / "src" / "happy").mkdir(parents=True, exist_ok=True)
        (root / "src" / "happy" / name).write_bytes(data)
    ws = root / "ws"
    run = CliRunner().invoke(app, _ingest_args(root / "src", ws))
    frame = Workspace(ws).load("imagefolder").frame.set_index("source")
    return run, frame, ws


def _ingest_args(src, ws) -> list[str]:
    return ["ingest", str(src), "--dataset", "imagefolder", "--device", "cpu", "-w", str(ws)]


def test_the_run_goes_on_and_keeps_every_row(result) -> None:
    run, frame, _ = result
    assert run.exit_code == 0, run.output
    assert len(frame) == 8


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("happy/truncated.jpg", "truncated"),
        ("happy/zero.jpg", "cannot identify"),
        ("happy/huge.png", "exceeds limit"),  # Pillow's DecompressionBombError, kept on
        ("happy/text.jpg", "cannot identify"),
    ],
)
def test_bad_file_is_unreadable_with_its_reason(result, name: str, reason: str) -> None:
    _, frame, _ = result
    row = frame.loc[name]
    assert row["face_status"] == "unreadable"
    assert reason in row["face_error"]
    assert row["aligned_path"] is None


@pytest.mark.parametrize("name", ["happy/good.jpg", "happy/cmyk.jpg", "happy/sixteen.png", "happy/palette.png"])
def test_unusual_encodings_decode_and_align(result, name: str) -> None:
    _, frame, ws = result
    row = frame.loc[name]
    assert row["face_status"] == "aligned", row["face_error"]
    assert (row["width"], row["height"]) == Image.open(IMAGES / "Tom_Hanks_54745.png").size
    with Image.open(ws / row["aligned_path"]) as crop:
        assert crop.size == (112, 112) and crop.mode == "RGB"


def test_original_of_an_unreadable_row_is_kept_byte_for_byte(result) -> None:
    _, frame, ws = result
    assert (ws / frame.loc["happy/truncated.jpg", "original_path"]).stat().st_size > 0
    assert (ws / frame.loc["happy/zero.jpg", "original_path"]).read_bytes() == b""


def test_the_unusual_files_really_are_unusual(result) -> None:
    """Guards the test itself: Pillow wrote the encodings these tests claim."""
    _, frame, ws = result
    modes = {}
    for name in ("cmyk.jpg", "sixteen.png", "palette.png"):
        with Image.open(ws / frame.loc[f"happy/{name}", "original_path"]) as image:
            modes[name] = (image.mode, "transparency" in image.info)
    assert modes == {"cmyk.jpg": ("CMYK", False), "sixteen.png": ("I;16", False), "palette.png": ("P", True)}


def test_the_same_bad_images_give_the_same_manifest_bytes(result, tmp_path) -> None:
    """Determinism: a second ingest of the same files (alignment included) writes the same
    manifest, byte for byte, and the same crops. No reason in ``face_error`` holds an object's
    memory address (Pillow names the stream it could not identify by its repr)."""
    from .helpers import user_files

    _, frame, ws = result
    again = tmp_path / "again"
    run = CliRunner().invoke(app, _ingest_args(ws.parent / "src", again))
    assert run.exit_code == 0, run.output
    manifest = "manifests/imagefolder.parquet"
    assert (again / manifest).read_bytes() == (ws / manifest).read_bytes()
    assert user_files(again) == user_files(ws)
    assert not frame["face_error"].dropna().str.contains(" at 0x").any()

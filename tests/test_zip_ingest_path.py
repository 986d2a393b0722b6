"""The fast path of a zip ingest (issue 19) keeps the guarantees: members read whole by
``iter_read`` (what ingest calls) are still held to the bomb limits while they stream, the
standard library's reader serves unencrypted zips without importing pyzipper or py7zr, a staging
folder without its marker is started over, and ``sync`` narrowed to one file system falls back
to ``os.sync`` where it cannot be narrowed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import archive_factory as af
import pytest
from PIL import Image

from ferdata import fsutil
from ferdata.archives import Limits, open_tree
from ferdata.errors import ArchiveError, UnsafeArchiveError
from ferdata.ingest import ingest
from ferdata.workspace import Workspace


def _jpeg(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (shade, 100, 200 - shade)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _photos_zip(path: Path, n: int = 6) -> Path:
    labels = ("happy", "sad", "angry")
    return af.zip_archive(path, {f"photos/{labels[i % 3]}/{i:03d}.jpg": _jpeg(20 * i) for i in range(n)})


def test_iter_read_stops_a_deflate_bomb_while_streaming(tmp_path: Path) -> None:
    bomb = af.deflate_bomb(tmp_path / "bomb.zip", "happy/bomb.jpg", 256 * af.MiB)
    with open_tree(bomb) as tree:
        tracemalloc.start()
        try:
            with pytest.raises(UnsafeArchiveError, match="'happy/bomb.jpg' expands more than 100 times"):
                list(tree.iter_read(["happy/bomb.jpg"]))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 48 * af.MiB  # stopped just past min_ratio_bytes (16 MiB), not at 256 MiB


def test_iter_read_counts_every_member_against_the_total(tmp_path: Path) -> None:
    files = {f"{i}.bin": os.urandom(40_000) for i in range(3)}
    archive = af.zip_archive(tmp_path / "t.zip", files)
    with open_tree(archive, limits=Limits(max_total_bytes=100_000)) as tree:
        read = []
        with pytest.raises(UnsafeArchiveError, match=r"limits=Limits\(max_total_bytes=\.\.\.\)"):
            for name, data in tree.iter_read(list(files)):
                read.append((name, data))
    assert read == [("0.bin", files["0.bin"]), ("1.bin", files["1.bin"])]


def test_iter_read_names_a_damaged_member(tmp_path: Path) -> None:
    archive = af.zip_archive(tmp_path / "d.zip", {"a.bin": os.urandom(50_000)}, compression="stored")
    raw = bytearray(archive.read_bytes())
    raw[40_000] ^= 0xFF  # inside the member's bytes: its CRC fails when it is read whole
    archive.write_bytes(bytes(raw))
    with open_tree(archive) as tree, pytest.raises(ArchiveError, match="'a.bin' cannot be read"):
        list(tree.iter_read(["a.bin"]))


def test_a_plain_zip_is_ingested_without_pyzipper_py7zr_or_pillow(tmp_path: Path) -> None:
    archive = _photos_zip(tmp_path / "photos.zip")
    code = (
        "import sys; from ferdata.ingest import ingest; "
        f"r = ingest({str(tmp_path / 'ws')!r}, {str(archive)!r}, dataset='imagefolder', align=False); "
        "print(r.rows, [m for m in ('pyzipper', 'py7zr', 'PIL') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[-2] == "6 []"


def test_an_encrypted_zip_is_still_read_by_pyzipper(tmp_path: Path) -> None:
    files = {"photos/happy/a.jpg": _jpeg(10), "photos/sad/b.jpg": _jpeg(90)}
    archive = af.aes_zip_archive(tmp_path / "aes.zip", files, "s3cret")
    with open_tree(archive, password="s3cret") as tree:
        assert dict(tree.iter_read(list(files))) == files


def test_ingest_of_a_zip_gives_the_files_and_sizes_it_holds(tmp_path: Path) -> None:
    archive = _photos_zip(tmp_path / "photos.zip")
    result = ingest(tmp_path / "ws", archive, dataset="imagefolder", align=False)
    frame = result.manifest.frame
    assert result.rows == 6 and set(frame["width"]) == {40} and set(frame["height"]) == {30}
    with zipfile.ZipFile(archive) as zf:
        for path in frame["original_path"]:
            member = "photos/" + path.split("/", 2)[2]
            assert (tmp_path / "ws" / path).read_bytes() == zf.read(member)
    assert not (tmp_path / "ws" / ".ferdata" / "staging" / "imagefolder").exists()


def test_a_staging_folder_without_its_marker_is_started_over(tmp_path: Path) -> None:
    archive = _photos_zip(tmp_path / "photos.zip")
    ws = Workspace.resolve(str(tmp_path / "ws"))
    staging = ws.staging_dir("imagefolder")
    planted = staging / "files" / "happy" / "000.jpg"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"not the archive's bytes")
    entry = {"target": "happy/000.jpg", "sha256": "0" * 64, "width": 1, "height": 1, "error": None}
    (staging / "journal.jsonl").write_text(json.dumps(entry) + "\n")  # a journal, but no source.json
    result = ingest(ws, archive, dataset="imagefolder", align=False)
    assert result.written == 6
    row = result.manifest.frame.set_index("original_path").loc["originals/imagefolder/happy/000.jpg"]
    assert row["width"] == 40 and row["sha256"] != "0" * 64
    assert (ws.root / "originals" / "imagefolder" / "happy" / "000.jpg").read_bytes() == _jpeg(0)


def test_sync_of_one_file_system_falls_back_to_a_global_sync(tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(fsutil.os, "sync", lambda: calls.append("sync"))
    fsutil.sync(tmp_path)  # syncfs where Linux has it: no global sync
    assert calls == ([] if sys.platform.startswith("linux") else ["sync"])
    fsutil.sync(tmp_path / "missing")  # cannot be opened: every file system instead
    fsutil.sync()
    assert calls[-2:] == ["sync", "sync"]

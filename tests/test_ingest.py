"""Ingest as a whole: archives, passwords, re-runs, resuming, the CLI."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builders import fer2013_csv, fer_rows, msd_e_tree
from ferdata import ingest as ingest_module
from ferdata.cli import app
from ferdata.ingest import ingest
from ferdata.workspace import Workspace

PASSWORD = "s3cret-äpfel"


def tree_hash(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file() and ".ferdata" not in p.parts
    }


@pytest.fixture
def msd_zip(tmp_path) -> Path:
    """An MSD-E delivery as an AES-256 zip, the way the authors send it."""
    import pyzipper

    src = msd_e_tree(tmp_path / "tree", subjects=2)
    out = tmp_path / "msd-e.zip"
    with pyzipper.AESZipFile(out, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(PASSWORD.encode())
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(src).as_posix())
    return out


def test_reingest_gives_the_same_manifest_and_keeps_curated_columns(tmp_path, ws):
    src = msd_e_tree(tmp_path / "src", subjects=2)
    first = ingest(src, ws, dataset="msd-e", align=False)
    assert first.written == 28
    manifest = ws.load("msd-e")
    frame = manifest.frame
    frame.loc[frame["image_id"] == "MSD-E/001_0_dslr", ["label", "label_status"]] = ["fear", "relabelled"]
    frame["fold"] = 1
    ws.save(manifest)

    second = ingest(src, ws, dataset="msd-e", align=False)
    assert second.written == 0 and second.kept == 28 and second.rows == 28
    again = ws.load("msd-e").frame
    assert again["image_id"].is_unique
    assert again.set_index("image_id").loc["MSD-E/001_0_dslr", "label"] == "fear"
    assert set(again["fold"]) == {1}

    # A changed image loses its curated columns (they described other pixels) and is rewritten.
    target = src / "delivery/MSD-E/001_0_dslr.jpg"
    target.write_bytes(target.read_bytes() + b"\0")
    third = ingest(src, ws, dataset="msd-e", align=False)
    assert third.written == 1 and third.kept == 27
    row = ws.load("msd-e").frame.set_index("image_id").loc["MSD-E/001_0_dslr"]
    assert row["label"] == "surprise" and row["label_status"] == "original" and row["fold"] is pd_na()


def pd_na():
    import pandas as pd

    return pd.NA


def test_an_interrupted_ingest_resumes_and_ends_like_an_uninterrupted_one(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src).mkdir()
    (src / "fer2013.csv").write_bytes(fer2013_csv(fer_rows(40)))
    clean = Workspace.resolve(tmp_path / "clean")
    ingest(src, clean, align=False)

    crashed = Workspace.resolve(tmp_path / "crashed")
    calls = {"n": 0}
    real = ingest_module._Staging.write

    def dying_write(self, target, data):
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt  # stands in for a kill in the middle of extraction
        return real(self, target, data)

    monkeypatch.setattr(ingest_module._Staging, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        ingest(src, crashed, align=False)
    monkeypatch.setattr(ingest_module._Staging, "write", real)
    assert crashed.datasets() == [] and not crashed.originals_dir("fer2013").exists()
    assert not (crashed.internal / "lock").exists()

    journal = (crashed.staging_dir("fer2013") / "journal.jsonl").read_text().splitlines()
    assert 0 < len(journal) < 40

    resumed = ingest(src, crashed, align=False)
    assert resumed.written == 40 - len(journal)  # what was staged before the crash is not written again
    assert tree_hash(crashed.root).keys() == tree_hash(clean.root).keys()
    assert {k: v for k, v in tree_hash(crashed.root).items() if not k.endswith(".parquet")} == \
           {k: v for k, v in tree_hash(clean.root).items() if not k.endswith(".parquet")}
    a, b = clean.load("fer2013").frame, crashed.load("fer2013").frame
    assert a.equals(b)


def run_cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def test_cli_ingests_an_aes_zip_with_the_password_from_the_environment(tmp_path, msd_zip):
    ws = tmp_path / "ws"
    result = run_cli("ingest", str(msd_zip), "--dataset", "msd-e", "--password-env", "MSDE_PW", "-w", str(ws), "--no-align",
                     env={"MSDE_PW": PASSWORD})
    assert result.exit_code == 0, result.output
    manifest = Workspace.resolve(ws).load("msd-e")
    assert len(manifest.frame) == 28
    assert PASSWORD not in result.output
    blob = b"".join(p.read_bytes() for p in ws.rglob("*") if p.is_file())
    assert PASSWORD.encode() not in blob  # not in the manifest, its provenance, or any table


def test_cli_password_from_a_file(tmp_path, msd_zip):
    secret = tmp_path / "pw.txt"
    secret.write_text(PASSWORD + "\n")
    result = run_cli("ingest", str(msd_zip), "--password-file", str(secret), "-w", str(tmp_path / "ws"), "--no-align")
    assert result.exit_code == 0, result.output
    assert Workspace.resolve(tmp_path / "ws").datasets() == ["msd-e"]  # detected from the layout


def test_wrong_password_is_one_line_exit_1_and_the_workspace_is_unchanged(tmp_path, msd_zip):
    ws = tmp_path / "ws"
    fer = tmp_path / "fer"
    fer.mkdir()
    (fer / "fer2013.csv").write_bytes(fer2013_csv(fer_rows(4)))
    assert run_cli("ingest", str(fer), "-w", str(ws), "--no-align").exit_code == 0
    before = tree_hash(ws)
    result = run_cli("ingest", str(msd_zip), "--password-env", "PW", "-w", str(ws), "--no-align", env={"PW": "Zq9-not-it"})
    assert result.exit_code == 1
    assert "wrong password" in result.output and "Traceback" not in result.output
    assert "Zq9-not-it" not in result.output  # the value itself is never echoed
    assert tree_hash(ws) == before


def test_encrypted_archive_without_password_or_terminal_fails_at_once(tmp_path, msd_zip):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSDE")}
    proc = subprocess.run(
        [sys.executable, "-m", "ferdata", "ingest", str(msd_zip), "-w", str(tmp_path / "ws"), "--no-align"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=env,
    )
    assert proc.returncode == 1
    assert "--password-env" in proc.stderr and "--password-file" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "ws" / "manifests").exists()


def test_missing_path_is_a_user_error(tmp_path):
    result = run_cli("ingest", str(tmp_path / "nope.zip"), "-w", str(tmp_path / "ws"), "--no-align")
    assert result.exit_code == 1 and "does not exist" in result.output


def test_stats_json_counts_labels_by_masked(tmp_path):
    import json

    src = msd_e_tree(tmp_path / "src", subjects=3)
    ws = tmp_path / "ws"
    assert run_cli("ingest", str(src), "-w", str(ws), "--no-align").exit_code == 0
    result = run_cli("stats", "-w", str(ws), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    table = data["tables"]["label × masked"]
    assert table["happy"] == {"masked": 3, "non-masked": 3, "total": 6}
    assert table["total"]["total"] == 42 and data["subjects"] == 3


def test_help_is_fast_and_loads_no_heavy_module():
    code = "import sys, ferdata.cli; heavy = [m for m in ('pandas', 'pyarrow', 'onnxruntime', 'torch', 'cv2', 'datasets') if m in sys.modules]; print(heavy)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_ingest_aligns_real_faces_and_a_rerun_does_not_redo_them(tmp_path, ws):
    import insightface
    from skimage import data as skdata
    from PIL import Image

    images = Path(insightface.__file__).parent / "data" / "images"
    src = tmp_path / "src"
    (src / "MSD-E").mkdir(parents=True)
    (src / "MSD-ME").mkdir()
    shutil.copy(images / "Tom_Hanks_54745.png", src / "MSD-E" / "001_3_a.png")
    Image.fromarray(skdata.astronaut()).save(src / "MSD-E" / "002_6_a.jpg")
    (src / "MSD-ME" / "001_3_a.jpg").write_bytes(b"not an image at all")
    first = ingest(src, ws, dataset="msd-e", align_options={"device": "cpu"})
    frame = first.manifest.frame.set_index("image_id")
    assert frame.loc["MSD-E/001_3_a", "face_status"] == "aligned"
    assert frame.loc["MSD-E/002_6_a", "face_status"] == "aligned"
    assert frame.loc["MSD-ME/001_3_a", "face_status"] == "unreadable" and frame.loc["MSD-ME/001_3_a", "face_error"]
    crop = ws.root / frame.loc["MSD-E/001_3_a", "aligned_path"]
    assert Image.open(crop).size == (112, 112)
    assert first.manifest.provenance["align"]["provider"] == "CPUExecutionProvider"

    second = ingest(src, ws, dataset="msd-e", align_options={"device": "cpu"})
    assert second.written == 0 and second.align_report.processed == 0
    assert second.manifest.frame.equals(first.manifest.frame)


def test_reingest_keeps_synthetic_masks_and_align_leaves_them_alone(tmp_path, ws):
    import insightface

    from ferdata.align import align_manifest
    from ferdata.masks import synthesize_masks

    images = Path(insightface.__file__).parent / "data" / "images"
    src = tmp_path / "src"
    (src / "train" / "happy").mkdir(parents=True)
    shutil.copy(images / "Tom_Hanks_54745.png", src / "train" / "happy" / "tom.png")
    ingest(src, ws, dataset="imagefolder", align_options={"device": "cpu"})
    with ws.lock("mask-synth"):
        synthesize_masks(ws, seed=3)
    before = ws.load("imagefolder").frame
    synthetic = before[before["source"].str.startswith("mask-synth:")]
    assert len(synthetic) == 1 and synthetic["masked"].iloc[0] == True  # noqa: E712

    again = ingest(src, ws, dataset="imagefolder", align_options={"device": "cpu"})
    assert again.rows == 2 and again.kept == 2
    assert again.manifest.frame.equals(before)

    realigned, report = align_manifest(ws, again.manifest, device="cpu")
    assert report.processed == 1  # the original only
    synthetic_after = realigned.frame.set_index("image_id").loc[synthetic["image_id"].iloc[0]]
    assert list(synthetic_after["landmarks"]) == list(synthetic["landmarks"].iloc[0])

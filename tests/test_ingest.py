"""Ingest as a whole: archives, passwords, re-runs, resuming, the CLI."""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builders import fer2013_csv, fer_rows, msd_e_tree
from ferdata.cli import app
from ferdata.ingest import ingest
from ferdata.workspace import Workspace

ingest_module = importlib.import_module("ferdata.ingest")  # `ferdata.ingest` is the function

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


# -- re-ingest never drops work silently ------------------------------------------------------


def _drop_subjects(src: Path, subjects: tuple[str, ...]) -> Path:
    for folder in ("MSD-E", "MSD-ME"):
        for path in (src / "delivery" / folder).glob("*.jpg"):
            if path.name.split("_")[0] in subjects:
                path.unlink()
    return src


WORK = {
    "relabelled": {"label": "fear", "label_status": "relabelled"},
    "in folds": {"fold": 2},
    "paired": {"pair_id": "p-001"},
    "tagged": {"occlusion": ["glasses"], "tag_origin": ["user"]},
    "with alignment results": {"face_status": "no_face", "n_faces": 0},
}


@pytest.mark.parametrize("kind", list(WORK))
def test_reingest_that_would_drop_rows_holding_work_is_refused_and_changes_nothing(tmp_path, ws, kind):
    import pandas as pd

    src = msd_e_tree(tmp_path / "src", subjects=4)
    ingest(src, ws, dataset="msd-e", align=False)
    manifest = ws.load("msd-e")
    frame = manifest.frame
    chosen = frame["subject_id"].isin(["003", "004"]) & (frame["masked"] == False)  # noqa: E712 - 14 rows
    for column, value in WORK[kind].items():
        frame[column] = frame[column].astype(object)
        frame.loc[chosen, column] = pd.Series([value] * int(chosen.sum()), index=frame.index[chosen], dtype=object)
    ws.save(manifest)
    before = tree_hash(ws.root)
    incomplete = _drop_subjects(src, ("003", "004"))  # an incomplete delivery: 28 of 56 rows gone

    with pytest.raises(ingest_module.WorkWouldBeLost) as caught:
        ingest(incomplete, ws, dataset="msd-e", align=False)

    message = str(caught.value)
    assert f"would drop 28 of the 56 msd-e rows" in message and f"14 of those hold work (14 {kind})" in message
    assert "prune=True" in message and "\n" not in message
    assert tree_hash(ws.root) == before  # manifest, originals and tables byte for byte
    assert not (ws.internal / "lock").exists()


def test_with_prune_the_dropped_rows_are_kept_in_a_table(tmp_path, ws):
    from ferdata.schema import read_manifest

    src = msd_e_tree(tmp_path / "src", subjects=4)
    ingest(src, ws, dataset="msd-e", align=False)
    manifest = ws.load("msd-e")
    manifest.frame["fold"] = [k % 3 for k in range(len(manifest.frame))]
    ws.save(manifest)
    previous = manifest.frame

    result = ingest(_drop_subjects(src, ("004",)), ws, dataset="msd-e", align=False, prune=True)

    assert result.rows == 42 and result.dropped == 14
    assert result.pruned_table.startswith("tables/msd-e/pruned-") and result.pruned_table.endswith(".parquet")
    pruned = read_manifest(ws.root / result.pruned_table)
    assert sorted(pruned.frame["image_id"]) == sorted(previous.loc[previous["subject_id"] == "004", "image_id"])
    expected = previous.set_index("image_id").loc[pruned.frame["image_id"], "fold"].tolist()
    assert pruned.frame["fold"].tolist() == expected  # the work is in the table, not lost
    assert pruned.provenance["pruned_by"]["rows"] == 14
    kept = ws.load("msd-e").frame
    assert len(kept) == 42 and kept["fold"].notna().all()  # the rows kept keep their folds


def test_rows_without_work_are_dropped_without_asking_but_still_listed(tmp_path, ws):
    src = msd_e_tree(tmp_path / "src", subjects=3)
    ingest(src, ws, dataset="msd-e", align=False)
    result = ingest(_drop_subjects(src, ("003",)), ws, dataset="msd-e", align=False)
    assert result.rows == 28 and result.dropped == 14 and result.pruned_table is not None
    assert (ws.root / result.pruned_table).is_file()


def test_an_additive_reingest_keeps_every_row_and_its_work(tmp_path, ws):
    src = msd_e_tree(tmp_path / "src", subjects=3)
    small = msd_e_tree(tmp_path / "small", subjects=2)
    ingest(small, ws, dataset="msd-e", align=False)
    manifest = ws.load("msd-e")
    manifest.frame["fold"] = 1
    ws.save(manifest)
    result = ingest(src, ws, dataset="msd-e", align=False)  # the same 28 images and 14 more
    frame = ws.load("msd-e").frame
    assert result.rows == 42 and result.kept == 28 and result.dropped == 0 and result.pruned_table is None
    assert int(frame["fold"].notna().sum()) == 28


def test_cli_names_the_prune_option_and_accepts_it(tmp_path):
    src = msd_e_tree(tmp_path / "src", subjects=3)
    ws = tmp_path / "ws"
    assert run_cli("ingest", str(src), "-w", str(ws), "--no-align").exit_code == 0
    assert run_cli("pairs", "-w", str(ws)).exit_code == 0
    _drop_subjects(src, ("003",))

    refused = run_cli("ingest", str(src), "-w", str(ws), "--no-align")
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit)
    [line] = refused.stderr.strip().splitlines()
    assert "14 of those hold work (14 paired)" in line and "pass --prune to drop them" in line and "prune=True" not in line

    accepted = run_cli("ingest", str(src), "-w", str(ws), "--no-align", "--prune")
    assert accepted.exit_code == 0, accepted.output
    assert "14 rows the source no longer has were dropped; they are kept in tables/msd-e/pruned-" in accepted.stderr


def test_cli_split_option_and_the_flag_named_in_the_refusal(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.csv").write_bytes(fer2013_csv(fer_rows(4), usage=False))
    ws = tmp_path / "ws"
    refused = run_cli("ingest", str(src), "--dataset", "fer2013", "-w", str(ws), "--no-align")
    assert refused.exit_code == 1 and "name their split with --split NAME (train, val or test)" in refused.stderr
    accepted = run_cli("ingest", str(src), "--dataset", "fer2013", "--split", "test", "-w", str(ws), "--no-align")
    assert accepted.exit_code == 0, accepted.output
    assert set(Workspace.resolve(ws).load("fer2013").frame["split"]) == {"test"}


# -- nothing is written through a link planted in the workspace --------------------------------


@pytest.mark.parametrize("planted", ["originals/msd-e/MSD-E", "originals/msd-e", "tables/msd-e", "manifests"])
def test_a_symlink_planted_in_the_workspace_is_never_written_through(tmp_path, ws, planted):
    src = msd_e_tree(tmp_path / "src", subjects=1)
    outside = tmp_path / "outside"
    outside.mkdir()
    link = ws.root / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)

    with pytest.raises(ingest_module.WorkspaceError, match="outside the workspace .*remove the link"):
        ingest(src, ws, dataset="msd-e", align=False)
    assert list(outside.iterdir()) == []
    if not planted.startswith("originals"):
        assert not (ws.root / "originals").exists()  # refused before anything was moved into place


def test_a_symlink_planted_before_a_reingest_is_refused_too(tmp_path, ws):
    src = msd_e_tree(tmp_path / "src", subjects=1)
    ingest(src, ws, dataset="msd-e", align=False)
    before = ws.manifest_path("msd-e").read_bytes()
    outside = tmp_path / "outside"
    shutil.move(ws.originals_dir("msd-e") / "MSD-ME", outside)
    (ws.originals_dir("msd-e") / "MSD-ME").symlink_to(outside, target_is_directory=True)
    changed = src / "delivery/MSD-ME/001_0_dslr.jpg"
    changed.write_bytes(changed.read_bytes() + b"\0")  # its new bytes would be moved through the link

    with pytest.raises(ingest_module.WorkspaceError, match="outside the workspace"):
        ingest(src, ws, dataset="msd-e", align=False)
    assert ws.manifest_path("msd-e").read_bytes() == before
    assert not (outside / "001_0_dslr.jpg").read_bytes().endswith(b"\0")


def test_an_empty_zip_is_one_line(tmp_path, ws):
    import archive_factory as af

    with pytest.raises(ingest_module.LayoutError, match="empty.zip holds no files"):
        ingest(af.zip_archive(tmp_path / "empty.zip", {}), ws, align=False)


def test_cli_split_that_cannot_apply_names_the_option(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "fer2013.csv").write_bytes(fer2013_csv(fer_rows(4)))
    result = run_cli("ingest", str(src), "--split", "train", "-w", str(tmp_path / "ws"), "--no-align")
    assert result.exit_code == 1
    assert "--split train is for CSVs without a Usage column" in result.stderr and "leave --split out" in result.stderr
    assert run_cli("ingest", str(src), "--split", "training", "-w", str(tmp_path / "ws"), "--no-align").exit_code == 2

"""The demo end to end, in a temporary folder, each artefact checked through the library."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.folds import balance_table
from ferdata.workspace import Workspace


def test_demo_runs_every_step_and_leaves_usable_artefacts(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--device", "cpu", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    for step in ("sample", "ingest", "relabel", "pairs", "folds", "stats", "publish", "train-baseline", "label-issues"):
        assert step in result.output
    assert "made up" in result.output and "ferdata ingest msd-e.zip" in result.output
    # printed to a pipe (CliRunner's stdout is not a terminal), no line is hard-wrapped: the commands
    # shown for copy and paste stay whole, and so do the long lines inside the steps' panels
    lines = [line.strip(" │") for line in result.stdout.splitlines()]
    assert "ferdata train-baseline --data msd-e-dataset --subset mix --folds 10 --out runs/mix" in lines
    assert f"load it with datasets.load_dataset('{out / 'dataset'}', 'mix')" in lines

    manifest = Workspace.resolve(out / "workspace").load("msd-e")
    frame = manifest.frame
    assert len(frame) == 112 and frame["subject_id"].nunique() == 8
    assert set(frame["face_status"]) <= {"aligned", "no_face"} and (frame["face_status"] == "aligned").sum() > 56
    assert set(frame["label_status"]) == {"original", "relabelled", "removed"}
    assert frame["pair_id"].notna().all() and frame["in_pe"].sum() > 0
    kept = frame[frame["label"].notna()]
    assert kept["fold"].notna().all() and frame.loc[frame["label"].isna(), "fold"].isna().all()
    assert kept.groupby("subject_id")["fold"].nunique().max() == 1  # identity-independent
    assert len(balance_table(frame)) == 2
    assert {"ingest", "align", "relabel", "pairs", "folds"} <= set(manifest.provenance)
    assert any("label_issue" in tags for tags in frame["occlusion"])

    import datasets

    mix = datasets.load_dataset(str(out / "dataset"), "mix", cache_dir=str(tmp_path / "cache"))["train"]
    published = kept[kept["face_status"] == "aligned"]
    assert sorted(mix["image_id"]) == sorted(published["image_id"])
    assert mix.features["label"].names[:7] == ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]

    results = json.loads((out / "run" / "results.json").read_text())
    assert results["folds_finished"] == [0, 1]
    assert 0.0 <= results["mean"]["accuracy"] <= 1.0
    assert (out / "contact-sheet.png").stat().st_size > 0

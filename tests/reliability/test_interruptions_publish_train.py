"""kill -9 of ``ferdata publish`` and ``ferdata train-baseline``: re-running the same command
finishes the job, and the result equals an uninterrupted run's; no half-written Parquet, PNG or
checkpoint is ever read back, and no temporary file survives the re-run.

Each kill is aimed: at the moment a shard or a checkpoint is being written (its ``.tmp-*`` file
has appeared), after some shards but before the card, or a random time (seeded generator) into
the rest of the work. The commands run as real processes (``python -m ferdata ...``).

* publish: the folder is byte-identical to an uninterrupted publish of the same workspace.
* train-baseline (CPU, 2 folds, 1 epoch, 32-pixel faces): the trainer is deterministic on the CPU
  (fixed seeds per fold, no data-dependent thread scheduling), so a finished fold is reused and
  the final ``oof.parquet``, ``results.json``, ``results.md``, ``confusion.png`` and each fold's
  ``predictions.parquet`` and ``features.npy`` are byte-identical to an uninterrupted run. The
  checkpoints hold equal tensors; their bytes differ only in the name of the zip folder inside,
  which ``torch.save`` takes from the temporary file's name. ``history.json`` and ``fold.json``
  are equal once their timings (images/s, seconds) are left out.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import archive_factory as af
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from builders import image_bytes
from PIL import Image

from ferdata.errors import UsageError
from ferdata.fsutil import TEMP_PREFIX
from ferdata.ingest import ingest
from ferdata.publish import publish
from ferdata.schema import BASIC_LABELS, Manifest, new_frame
from ferdata.workspace import Workspace

from .helpers import clean_env, snapshot, start_ferdata, wait_for


def run_to_the_end(args: list[str]) -> str:
    process = start_ferdata(*args, env=clean_env())
    output, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return output


def kill_when(args: list[str], ready: Callable[[], bool], delay: float = 0.0) -> bool:
    """Start the command, SIGKILL it ``delay`` s after ``ready()`` turns true; True if it was killed
    (False: it had exited before)."""
    process = start_ferdata(*args, env=clean_env())
    wait_for(lambda: ready() or process.poll() is not None, timeout=300, every=0.002)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    return process.returncode == -signal.SIGKILL


def temporaries(folder: Path) -> list[Path]:
    return list(folder.rglob(TEMP_PREFIX + "*")) if folder.exists() else []


def assert_whole(folder: Path) -> None:
    """Nothing temporary left, and every Parquet, PNG and checkpoint opens whole."""
    assert temporaries(folder) == []
    for path in folder.rglob("*.parquet"):
        pq.read_table(path)
    for path in folder.rglob("*.png"):
        with Image.open(path) as image:
            image.load()
    for path in folder.rglob("*.pt"):
        torch.load(path, weights_only=True)


# -- publish ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def publishable(tmp_path_factory) -> Path:
    """A workspace of 400 small images (originals, no alignment needed): 4 shards of 100 rows."""
    root = tmp_path_factory.mktemp("publish")
    files = {f"{('happy', 'sad', 'angry', 'fear')[k % 4]}/img{k:04d}.png": image_bytes(k, (96, 96), "PNG") for k in range(400)}
    ws = Workspace(root / "ws")
    ingest(ws, af.folder(root / "src", files), dataset="imagefolder", align=False)
    return ws.root


def test_killed_publish_reruns_to_a_byte_identical_folder(tmp_path: Path, publishable: Path) -> None:
    args = lambda out: ["publish", "-w", str(publishable), "--images", "original", "--out", str(out), "--shards", "4",
                        "--workers", "1"]
    reference = tmp_path / "reference"
    started = time.monotonic()
    run_to_the_end(args(reference))
    window = time.monotonic() - started
    want = snapshot(reference)
    assert sorted(want) == ["README.md", *(f"data/mix/train-0000{i}-of-00004.parquet" for i in range(4))]

    out = tmp_path / "out"
    shards = out / "data" / "mix"
    # 1: inside the first shard's write; 2: with whole shards on disk and no card yet
    assert kill_when(args(out), lambda: bool(temporaries(shards)))
    assert kill_when(args(out), lambda: (shards / "train-00001-of-00004.parquet").exists())
    assert (shards / "train-00000-of-00004.parquet").exists() and not (out / "README.md").exists()
    # 3, 4: at random moments of the rest (the delays also cover the start of the process)
    rng = random.Random(40)
    for _ in range(2):
        kill_when(args(out), lambda: out.exists(), delay=rng.uniform(0.0, window))
    run_to_the_end(args(out))

    assert_whole(out)
    assert snapshot(out) == want

    # killed while it rewrites a finished folder: the old card and whole shards stay readable
    assert kill_when(args(out), lambda: bool(temporaries(shards)))
    assert (out / "README.md").read_bytes() == (reference / "README.md").read_bytes()
    for path in shards.glob("train-*.parquet"):
        pq.read_table(path)
    run_to_the_end(args(out))
    assert_whole(out)
    assert snapshot(out) == want


@pytest.mark.parametrize("foreign", ["data/mix/notes.txt", "data/images/a.png", "data/mix/train.parquet", "notes.txt",
                                     "README.md"])
def test_a_folder_publish_did_not_write_is_still_refused(tmp_path: Path, publishable: Path, foreign: str) -> None:
    """Only publish's own names (shards, temporary files) make a folder without a card look like
    a killed publish; anything else there keeps it refused and untouched."""
    out = tmp_path / "out"
    (out / "data" / "mix").mkdir(parents=True)
    (out / "data" / "mix" / "train-00000-of-00004.parquet").write_bytes(b"half")
    (out / f"{TEMP_PREFIX}card.md").write_bytes(b"half")
    (out / foreign).parent.mkdir(parents=True, exist_ok=True)
    (out / foreign).write_bytes(b"keep me")
    before = snapshot(out)
    with pytest.raises(UsageError, match="not empty and was not written by ferdata publish"):
        publish(Workspace(publishable), out, images="original")
    assert snapshot(out) == before


# -- train-baseline ----------------------------------------------------------------------------

SIZE = 32


def tiny_face_workspace(root: Path, subjects: int = 4) -> Workspace:
    """Aligned 32-pixel faces of ``subjects`` x 7 expressions (a bright patch per expression on
    noise), non-masked, folds 0 and 1 by subject."""
    ws = Workspace.resolve(root)
    rows = []
    for s in range(subjects):
        for i, label in enumerate(BASIC_LABELS):
            pixels = np.random.default_rng(s * 10 + i).integers(0, 60, (SIZE, SIZE, 3), dtype=np.uint8)
            r, c = divmod(i, 3)
            pixels[r * 8 : r * 8 + 10, c * 8 : c * 8 + 10, i % 3] = 230
            image_id = f"{s:03d}_{i}"
            relative = f"aligned/msd-e/112px/{image_id}.png"
            ws.absolute(relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(ws.absolute(relative))
            rows.append({
                "image_id": image_id, "dataset": "msd-e", "source": image_id, "sha256": image_id, "subject_id": f"{s:03d}",
                "label_original": label, "label": label, "masked": False, "fold": s % 2, "original_path": relative,
                "width": SIZE, "height": SIZE, "face_status": "aligned", "aligned_path": relative,
            })
    ws.save(Manifest("msd-e", new_frame(rows)))
    return ws


TIMINGS = {"history.json": ("images_per_s",), "fold.json": ("seconds",)}


def without_timings(path: Path) -> object:
    payload = json.loads(path.read_text())
    drop = TIMINGS[path.name]
    if isinstance(payload, list):
        return [{k: v for k, v in item.items() if k not in drop} for item in payload]
    return {k: v for k, v in payload.items() if k not in drop}


def assert_same_run(run: Path, reference: Path) -> None:
    got, want = snapshot(run), snapshot(reference)
    assert sorted(got) == sorted(want)
    for name, digest in want.items():
        kind = Path(name).name
        if kind.endswith(".pt"):
            mine, theirs = torch.load(run / name, weights_only=True), torch.load(reference / name, weights_only=True)
            assert mine.keys() == theirs.keys() and mine["model"].keys() == theirs["model"].keys()
            assert all(torch.equal(mine["model"][k], theirs["model"][k]) for k in theirs["model"]), name
            assert {k: v for k, v in mine.items() if k != "model"} == {k: v for k, v in theirs.items() if k != "model"}
        elif kind in TIMINGS:
            assert without_timings(run / name) == without_timings(reference / name), name
        else:
            assert got[name] == digest, name  # oof, results, figures, predictions, features, run.json


@pytest.mark.slow
def test_killed_training_reuses_finished_folds_and_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    ws = tiny_face_workspace(tmp_path / "ws")
    args = lambda out: ["train-baseline", "-w", str(ws.root), "--subset", "nm", "--folds", "2", "--epochs", "1",
                        "--batch-size", "16", "--image-size", str(SIZE), "--device", "cpu", "--no-tsne", "--out", str(out)]
    reference = tmp_path / "reference"
    run_to_the_end(args(reference))

    run = tmp_path / "run"
    fold0, fold1 = run / "folds" / "fold-0", run / "folds" / "fold-1"
    # 1: while fold 0's checkpoint is being written; nothing is finished yet
    assert kill_when(args(run), lambda: bool(temporaries(fold0)))
    assert not (fold0 / "predictions.parquet").exists()
    # 2: fold 0 finished, fold 1 training (a random moment of it; earlier if the kill came too late)
    delay, rng = 2.0, random.Random(50)
    for _ in range(4):
        kill_when(args(run), lambda: (fold0 / "predictions.parquet").exists() and not temporaries(fold0),
                  delay=rng.uniform(0.0, delay))
        if not (fold1 / "predictions.parquet").exists():
            break
        shutil.rmtree(fold1)  # fold 1 finished before the kill: undo it and aim earlier
        delay /= 2
    assert (fold0 / "predictions.parquet").exists() and not (fold1 / "predictions.parquet").exists()
    model0 = (fold0 / "model.pt").stat().st_mtime_ns

    output = run_to_the_end(args(run))

    assert "folds finished earlier and kept: 0" in output
    assert (fold0 / "model.pt").stat().st_mtime_ns == model0  # fold 0 was not trained again
    assert_whole(run)
    assert_same_run(run, reference)

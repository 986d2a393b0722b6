"""kill -9 at random points: re-running the same command finishes the job, and the result equals an
uninterrupted run (manifest rows and values, provenance, files). Nothing half-written is read back:
every Parquet and PNG in the workspace opens whole, and no temporary file survives the re-run.

Each case runs the real command (``python -m ferdata ...``) in a child process, kills it with
SIGKILL a random time after it took the workspace lock (the delays are drawn from a seeded
generator, spread over the uninterrupted run's duration), a few times in a row on the same
workspace, then runs it to the end.

``publish`` and ``train-baseline`` take no workspace lock; their kills are in
``test_interruptions_publish_train.py``.
"""

from __future__ import annotations

import random
import shutil
import signal
import time
from pathlib import Path

import archive_factory as af
import pandas as pd
import pyarrow.parquet as pq
import pytest
from builders import image_bytes, msd_e_tree
from PIL import Image

from ferdata.fsutil import TEMP_PREFIX
from ferdata.ingest import ingest
from ferdata.workspace import Workspace

from .helpers import clean_env, face_msd_e, start_ferdata, user_files, wait_for

KILLS = 3


def timed_run(args: list[str], ws: Path) -> float:
    """Run to the end; the seconds from taking the lock to exiting (the window kills aim at)."""
    process = start_ferdata(*args, env=clean_env())
    assert wait_for(lambda: (ws / ".ferdata" / "lock").exists() or process.poll() is not None)
    start = time.monotonic()
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return time.monotonic() - start


def kill_at_random_points(args: list[str], ws: Path, window: float, seed: int) -> int:
    """Start the command until it was SIGKILLed KILLS times, each a random moment into its work; a
    start whose kill came after it had finished halves the range of later delays. Returns the
    number of real interruptions."""
    rng = random.Random(seed)
    interrupted, attempts = 0, 0
    while interrupted < KILLS and attempts < 3 * KILLS:
        attempts += 1
        process = start_ferdata(*args, env=clean_env())
        wait_for(lambda p=process: (ws / ".ferdata" / "lock").exists() or p.poll() is not None)
        time.sleep(rng.uniform(0.0, 0.9 * window))
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        if process.returncode == -signal.SIGKILL:
            interrupted += 1
        else:
            window /= 2
    return interrupted


def finish(args: list[str]) -> None:
    process = start_ferdata(*args, env=clean_env())
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err


def assert_nothing_half_written(ws: Path) -> None:
    leftovers = [p for p in ws.rglob(TEMP_PREFIX + "*") if ".ferdata" not in p.parts]
    assert leftovers == [], leftovers  # the re-run, once it holds the lock, clears what a killed writer left
    for path in ws.rglob("*.parquet"):
        if not path.name.startswith(TEMP_PREFIX):
            pq.read_table(path)  # a torn file would fail here
    for path in (ws / "aligned").rglob("*.png") if (ws / "aligned").exists() else ():
        if not path.name.startswith(TEMP_PREFIX):
            with Image.open(path) as image:
                image.load()


def assert_same_result(ws: Path, reference: Path, dataset: str, ignore: tuple[str, ...] = ()) -> None:
    got, want = Workspace(ws).load(dataset), Workspace(reference).load(dataset)
    pd.testing.assert_frame_equal(got.frame, want.frame)
    assert got.provenance == want.provenance
    assert Workspace(ws).datasets() == [dataset]
    files = {k: v for k, v in user_files(ws).items() if not k.startswith(ignore)}
    assert files == {k: v for k, v in user_files(reference).items() if not k.startswith(ignore)}


# -- ingest ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> Path:
    """A zip of 400 small images in an imagefolder layout: enough work for kills to land inside."""
    folder = tmp_path_factory.mktemp("delivery")
    files = {f"{('happy', 'sad', 'angry', 'fear')[k % 4]}/img{k:04d}.png": image_bytes(k, (96, 96), "PNG") for k in range(400)}
    return af.zip_archive(folder / "delivery.zip", files, compression="stored")


@pytest.mark.slow
def test_killed_ingest_resumes_to_the_same_manifest_and_files(tmp_path: Path, delivery: Path) -> None:
    args = lambda ws: ["ingest", str(delivery), "--dataset", "imagefolder", "--no-align", "-w", str(ws)]
    reference = tmp_path / "reference"
    window = timed_run(args(reference), reference)

    ws = tmp_path / "ws"
    interrupted = kill_at_random_points(args(ws), ws, window, seed=10)
    assert interrupted >= 1  # at least one kill landed inside the work
    finish(args(ws))

    assert_nothing_half_written(ws)
    assert_same_result(ws, reference, "imagefolder")
    assert not (ws / ".ferdata" / "staging").exists() or not any((ws / ".ferdata" / "staging").iterdir())


# -- align -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_align_reruns_to_the_same_faces(tmp_path: Path) -> None:
    base = tmp_path / "base"
    ingest(Workspace(base), face_msd_e(tmp_path / "src", subjects=2), dataset="msd-e", align=False)
    reference, ws = shutil.copytree(base, tmp_path / "reference"), shutil.copytree(base, tmp_path / "ws")
    args = lambda ws: ["align", "-w", str(ws), "--device", "cpu"]
    window = timed_run(args(reference), reference)

    interrupted = kill_at_random_points(args(ws), ws, window, seed=20)
    assert interrupted >= 1
    finish(args(ws))

    assert_nothing_half_written(ws)
    # crops are content-addressed: a crop an interrupted run wrote is the same file, never a torn one
    assert_same_result(ws, reference, "msd-e")
    frame = Workspace(ws).load("msd-e").frame
    assert (frame["face_status"] == "aligned").all()


# -- relabel ---------------------------------------------------------------------------------


def test_killed_relabel_reruns_to_the_same_labels_and_audit(tmp_path: Path) -> None:
    import csv

    base = tmp_path / "base"
    ingest(Workspace(base), msd_e_tree(tmp_path / "src", subjects=20), dataset="msd-e", align=False)
    frame = Workspace(base).load("msd-e").frame
    votes = tmp_path / "votes.csv"
    rng = random.Random(3)
    with votes.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "annotator", "vote"])
        for image_id in frame["image_id"]:
            for k in range(7):
                writer.writerow([image_id, f"a{k}", rng.choice(["ok", "ok", "ok", "happy", "sad", "flag"])])
    reference, ws = shutil.copytree(base, tmp_path / "reference"), shutil.copytree(base, tmp_path / "ws")
    args = lambda ws: ["relabel", "-w", str(ws), "--votes", str(votes)]
    window = timed_run(args(reference), reference)

    assert kill_at_random_points(args(ws), ws, window, seed=30) >= 1
    finish(args(ws))

    assert_nothing_half_written(ws)
    assert_same_result(ws, reference, "msd-e")
    relabelled = Workspace(ws).load("msd-e").frame
    assert (relabelled["label_status"] != "original").any()  # the votes changed something

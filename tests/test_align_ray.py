"""The Ray engine (``ferdata align --engine ray``) gives the local engine's results, survives a
killed worker, and resumes a failed run; without Ray it says which extra to install.

The Ray tests share one local Ray cluster (``ray.init(num_cpus=2)``) started once for the module,
and are marked ``ray``. They run wherever Ray is installed (CI installs the ``ray`` extra); where
it is not, they are skipped with that reason, never silently. The images are real photos and crops
of real faces (``tests/face_photos.py``): group, single, masked and animal pictures, a flat grey
picture and a truncated JPEG, so that every ``face_status`` comes up.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from face_photos import crop_folder, photo_folder
from typer.testing import CliRunner

from ferdata import align_ray
from ferdata.align import align_manifest, journal_path
from ferdata.cli import app
from ferdata.errors import FerdataError
from ferdata.ingest import ingest
from ferdata.workspace import Workspace

RESULT_COLUMNS = ["image_id", "face_status", "det_score", "n_faces", "bbox", "landmarks", "aligned_path", "face_error", "width", "height"]
HAVE_RAY = importlib.util.find_spec("ray") is not None


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster of two CPUs for every Ray test of the module."""
    import ray  # installed (see needs_ray): an import error here is a failure, not a skip

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 1024**2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, tuple[Path, bool]]:
    """Ingested, not yet aligned workspaces: real photos (not registered), and 48x48 crops of real
    faces as a registered source (some blurred past detection, so some rows become registered)."""
    root = tmp_path_factory.mktemp("sources")
    made = {}
    for name, folder, registered in (
        ("photos", photo_folder(root / "photos-src"), False),
        ("crops", crop_folder(root / "crops-src", 24), True),
    ):
        ws = Workspace(root / name)
        ingest(ws=ws, path=folder, dataset="imagefolder", align=False)
        made[name] = (ws.root, registered)
    return made


@pytest.fixture(scope="module")
def local_results(sources, tmp_path_factory) -> dict[str, tuple[pd.DataFrame, dict[str, bytes]]]:
    """What the local engine makes of each source: the result columns and every crop file."""
    out = {}
    for name, (root, registered) in sources.items():
        ws = Workspace(shutil.copytree(root, tmp_path_factory.mktemp("local") / name))
        manifest, _ = align_manifest(ws, ws.load("imagefolder"), device="cpu", registered=registered)
        out[name] = (manifest.frame[RESULT_COLUMNS], crops(ws))
    return out


def crops(ws: Workspace) -> dict[str, bytes]:
    return {p.relative_to(ws.root).as_posix(): p.read_bytes() for p in sorted((ws.root / "aligned").rglob("*.png"))}


def copy_of(sources, name: str, tmp_path: Path) -> tuple[Workspace, bool]:
    root, registered = sources[name]
    return Workspace(shutil.copytree(root, tmp_path / name)), registered


def assert_same_as_local(local_results, name: str, ws: Workspace, frame: pd.DataFrame) -> None:
    expected_frame, expected_crops = local_results[name]
    pd.testing.assert_frame_equal(frame[RESULT_COLUMNS], expected_frame)
    assert crops(ws) == expected_crops


def journal_ids(ws: Workspace) -> list[str]:
    lines = journal_path(ws, "imagefolder").read_bytes().split(b"\n")[1:-1]
    return [json.loads(line)["image_id"] for line in lines]


@pytest.mark.parametrize("name", ["photos", "crops"])
@pytest.mark.usefixtures("cluster")
@pytest.mark.ray
@pytest.mark.skipif(not HAVE_RAY, reason='Ray is not installed: pip install -e ".[ray]" runs these tests')
def test_the_ray_engine_gives_the_local_engines_statuses_landmarks_and_crop_bytes(sources, local_results, name, tmp_path):
    ws, registered = copy_of(sources, name, tmp_path)
    args = ["align", "-w", str(ws.root), "--engine", "ray", "--device", "cpu", "--registered" if registered else "--not-registered"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = ws.load("imagefolder")
    assert_same_as_local(local_results, name, ws, manifest.frame)
    statuses = set(manifest.frame["face_status"])
    assert statuses == ({"aligned", "registered"} if registered else {"aligned", "no_face", "unreadable"})
    assert manifest.provenance["align"]["engine"] == "ray"


@pytest.mark.usefixtures("cluster")
@pytest.mark.ray
@pytest.mark.skipif(not HAVE_RAY, reason='Ray is not installed: pip install -e ".[ray]" runs these tests')
def test_a_worker_killed_mid_run_loses_and_duplicates_no_rows(sources, local_results, tmp_path, monkeypatch):
    ws, _ = copy_of(sources, "photos", tmp_path)
    killed = tmp_path / "killed"  # made by the first actor call that kills its own process

    class KilledOnce(align_ray.AlignActor):
        def __call__(self, batch):
            try:
                os.close(os.open(killed, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return super().__call__(batch)
            super().__call__(batch)  # its crops are written, its rows never reported
            os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(align_ray, "AlignActor", KilledOnce)
    manifest, report = align_manifest(ws, ws.load("imagefolder"), device="cpu", engine="ray", batch_size=4)
    assert killed.exists()
    assert_same_as_local(local_results, "photos", ws, manifest.frame)
    ids = journal_ids(ws)
    assert sorted(ids) == sorted(manifest.frame["image_id"])  # every row journalled exactly once
    assert report.processed == len(manifest.frame) and report.resumed == 0


@pytest.mark.usefixtures("cluster")
@pytest.mark.ray
@pytest.mark.skipif(not HAVE_RAY, reason='Ray is not installed: pip install -e ".[ray]" runs these tests')
def test_a_rerun_after_a_failed_ray_run_skips_the_rows_already_aligned(sources, local_results, tmp_path, monkeypatch):
    ws, _ = copy_of(sources, "photos", tmp_path)
    frame = ws.load("imagefolder").frame
    last, journal = str(ws.absolute(frame["original_path"].iat[-1])), journal_path(ws, "imagefolder")

    class FailsOnTheLastRow(align_ray.AlignActor):
        def __call__(self, batch):
            if last in [str(p) for p in batch["path"]]:
                deadline = time.monotonic() + 60
                while journal.read_bytes().count(b"\n") < 2 and time.monotonic() < deadline:
                    time.sleep(0.1)  # until a batch finished before this one has reached the driver
                raise RuntimeError("this worker's disk went away")
            return super().__call__(batch)

    monkeypatch.setattr(align_ray, "AlignActor", FailsOnTheLastRow)
    with pytest.raises(FerdataError, match="run the same command again to resume"):
        align_manifest(ws, ws.load("imagefolder"), device="cpu", engine="ray", batch_size=4)
    done = journal_ids(ws)
    assert 0 < len(done) < len(frame)

    monkeypatch.undo()
    manifest, report = align_manifest(ws, ws.load("imagefolder"), device="cpu", engine="ray", batch_size=4)
    assert report.resumed == len(done)
    assert_same_as_local(local_results, "photos", ws, manifest.frame)
    assert sorted(journal_ids(ws)) == sorted(frame["image_id"])  # the resumed rows were not journalled twice


@pytest.mark.ray
@pytest.mark.skipif(not HAVE_RAY, reason='Ray is not installed: pip install -e ".[ray]" runs these tests')
def test_an_address_where_no_cluster_answers_fails_at_once_in_one_line(sources, tmp_path):
    ws, _ = copy_of(sources, "crops", tmp_path)
    before = ws.manifest_path("imagefolder").read_bytes()
    for address, says in (("127.0.0.1:1", "nothing answers there"), ("head-node", "is not auto or HOST:PORT")):
        start = time.monotonic()
        result = CliRunner().invoke(app, ["align", "-w", str(ws.root), "--engine", "ray", "--ray-address", address])
        assert result.exit_code == 1 and time.monotonic() - start < 30, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and f"--ray-address {address}" in lines[0] and says in lines[0], lines
    assert ws.manifest_path("imagefolder").read_bytes() == before


def test_without_ray_the_ray_engine_names_the_extra_and_leaves_the_workspace_alone(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as where it is not installed
    folder, ws = crop_folder(tmp_path / "src", 2), tmp_path / "ws"

    def refused(*args: str) -> None:
        result = CliRunner().invoke(app, [*args, "-w", str(ws), "--engine", "ray"])
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and 'pip install "ferdata[ray]"' in lines[0] and "--engine ray" in lines[0], lines

    refused("ingest", str(folder), "--dataset", "imagefolder")
    assert not ws.exists() or not any(ws.rglob("*.parquet"))  # refused before extracting anything
    assert CliRunner().invoke(app, ["ingest", str(folder), "-w", str(ws), "--dataset", "imagefolder", "--no-align"]).exit_code == 0
    before = {p: p.read_bytes() for p in ws.rglob("*") if p.is_file() and ".ferdata" not in p.parts}
    refused("align")
    assert {p: p.read_bytes() for p in ws.rglob("*") if p.is_file() and ".ferdata" not in p.parts} == before

"""Registered sources: no readable FER2013-like crop is left without a face crop.

FER2013, FER+ and FERV39k's face crops are delivered registered (their authors found, centred and
scaled every face). The crops here are cut from real photos the same way (tests/face_crops.py):
sharp ones, heavily blurred ones, and ones the face fills edge to edge. One ``align_manifest``
run over a FER2013 manifest of all of them must leave every readable row ``aligned`` (detected)
or ``registered`` (warped with the dataset's mean landmark shape), none ``no_face``; the sharp
ones must be found by detection.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import skimage.data
from face_crops import real_faces, registered_crop

from ferdata.align import (
    DEFAULT_REGISTERED_SHAPE,
    MIN_SHAPE_ROWS,
    Face,
    align_manifest,
    find_faces,
    mean_landmark_shape,
    registration_problem,
)
from ferdata.schema import Manifest, new_frame
from ferdata.vision.align import shape_problem, template, warp
from ferdata.vision.contact import render_contact_sheet
from ferdata.vision.decode import decode
from ferdata.vision.detectors import load_detector
from ferdata.workspace import Workspace


@pytest.fixture(scope="module")
def detector():
    return load_detector("retinaface", device="cpu")


def lfw_faces() -> list[np.ndarray]:
    """scikit-image's 100 LFW faces: real registered crops (25x25), enlarged to FER2013's 48."""
    return [cv2.resize((f * 255).astype(np.uint8), (48, 48), interpolation=cv2.INTER_CUBIC) for f in skimage.data.lfw_subset()[:100]]


def write_manifest(ws: Workspace, dataset: str, images: dict[str, np.ndarray], extra: dict[str, bytes] | None = None) -> Manifest:
    folder = ws.originals_dir(dataset)
    folder.mkdir(parents=True, exist_ok=True)
    for name, pixels in images.items():
        cv2.imwrite(str(folder / name), pixels)
    for name, data in (extra or {}).items():
        (folder / name).write_bytes(data)
    names = [*images, *(extra or {})]
    rows = [
        dict(image_id=name, dataset=dataset, source=name, sha256=f"{k:064x}", label_original="happy", label="happy",
             original_path=f"originals/{dataset}/{name}", width=0, height=0)
        for k, name in enumerate(names)
    ]
    return Manifest(dataset, new_frame(rows), provenance={})


@pytest.fixture(scope="module")
def fer_run(tmp_path_factory, detector):
    """One FER2013 manifest: sharp, blurred and edge-to-edge crops of every real face, LFW's
    registered faces, and an unreadable file; aligned once."""
    images = {}
    for k, (_, photo, points) in enumerate(real_faces()):
        images[f"sharp_{k:03d}.png"] = registered_crop(photo, points)
        images[f"blurred_{k:03d}.png"] = registered_crop(photo, points, blur=3.0)
        images[f"filled_{k:03d}.png"] = registered_crop(photo, points, framing=0.8)
    for k, face in enumerate(lfw_faces()):
        images[f"lfw_{k:03d}.png"] = face
    ws = Workspace.resolve(tmp_path_factory.mktemp("fer"))
    manifest = write_manifest(ws, "fer2013", images, {"broken.png": b"\x89PNG\r\n\x1a\n not really"})
    result, report = align_manifest(ws, manifest, detector=detector, device="cpu")
    return ws, result, report


def statuses(frame, prefix: str) -> dict[str, int]:
    chosen = frame[frame["image_id"].str.startswith(prefix)]
    return chosen["face_status"].value_counts().to_dict()


def test_every_readable_fer_row_gets_a_crop_and_none_is_no_face(fer_run):
    ws, result, report = fer_run
    frame = result.frame
    assert report.registered and result.provenance["align"]["registered_from"] == "manifests/fer2013.toml"
    assert "no_face" not in set(frame["face_status"])
    readable = frame[frame["image_id"] != "broken.png"]
    assert set(readable["face_status"]) <= {"aligned", "registered"}
    for path in readable["aligned_path"]:
        assert decode(ws.absolute(path)).rgb.shape == (112, 112, 3)
    broken = frame.set_index("image_id").loc["broken.png"]
    assert broken["face_status"] == "unreadable" and broken["aligned_path"] is None


def test_sharp_registered_crops_are_found_by_detection(fer_run):
    _, result, _ = fer_run
    for prefix in ("sharp_", "lfw_"):
        counts = statuses(result.frame, prefix)
        share = counts.get("aligned", 0) / sum(counts.values())
        assert share >= 0.95, (prefix, counts)


def test_blurred_and_filled_crops_fall_back_to_the_mean_shape(fer_run):
    _, result, report = fer_run
    frame = result.frame.set_index("image_id")
    registered = frame[frame["face_status"] == "registered"]
    assert len(registered) >= 10  # heavy blur defeats the detector on many of them
    assert registered["det_score"].isna().all() and registered["bbox"].isna().all()
    assert registered["face_error"].str.match(r"^(no face found|detected face not used: .+)$").all()
    shape = np.array(result.provenance["align"]["mean_shape"]["points"])
    for image_id, row in registered.iterrows():
        assert np.allclose(np.asarray(row["landmarks"]).reshape(5, 2), shape * [48, 48])
    assert report.counts["registered"] == len(registered)


def test_provenance_records_the_mean_shape_and_counts(fer_run):
    _, result, _ = fer_run
    record = result.provenance["align"]
    aligned = result.frame[result.frame["face_status"] == "aligned"]
    assert record["mean_shape"]["rows"] == len(aligned) >= MIN_SHAPE_ROWS
    points = np.array(aligned["landmarks"].tolist()).reshape(-1, 5, 2) / 48.0
    assert np.allclose(record["mean_shape"]["points"], points.mean(axis=0), atol=1e-6)
    assert record["status_counts"] == result.frame["face_status"].value_counts().to_dict()
    # The dataset's own shape is close to the documented default, measured on other registered crops.
    assert np.abs(np.array(record["mean_shape"]["points"]) - DEFAULT_REGISTERED_SHAPE).max() < 0.06


def test_registered_crops_share_the_geometry_of_detected_ones(fer_run, detector):
    """Warped with the mean shape, a sharp crop's face lands where detection would put it."""
    _, result, _ = fer_run
    shape = np.array(result.provenance["align"]["mean_shape"]["points"])
    eyes = []
    for _, photo, points in real_faces()[:30]:
        crop = cv2.cvtColor(registered_crop(photo, points), cv2.COLOR_GRAY2RGB)
        registered, _ = warp(crop, shape * 48, 112)
        found = find_faces(detector, registered)
        assert found
        eyes.append(max(found, key=lambda f: f.area).landmarks[:2])
    eyes = np.array(eyes)
    # On average the eyes sit where a detected crop puts them (the template), give or take the
    # difference between these crops and the run's mean (which also holds the edge-to-edge crops,
    # whose faces are larger: these come out about 5% larger); each face strays from the mean by
    # its own difference from the mean face (a turned head, a long face).
    assert np.linalg.norm(eyes.mean(axis=0) - template(112)[:2], axis=1).max() < 4.0
    assert np.median(np.linalg.norm(eyes - template(112)[:2], axis=2).max(axis=1)) < 7.0


def test_implausible_detections_do_not_count_on_registered_sources():
    box = np.array([0.0, 0.0, 10.0, 10.0])
    good = np.array([[16.0, 18.0], [32.0, 18.0], [24.0, 27.0], [18.0, 35.0], [30.0, 35.0]])
    assert registration_problem(Face(box, 0.9, good), 48, 48) is None
    tiny = good / 4
    assert "far smaller than the frame" in registration_problem(Face(box, 0.9, tiny), 48, 48)
    corner = good * 0.5 + [22, 22]  # eyes 8 px apart, in the bottom-right corner
    assert "off-centre" in registration_problem(Face(box, 0.9, corner), 32, 32)
    swapped = good[[1, 0, 2, 3, 4]]
    assert shape_problem(swapped) is not None
    upside_down = good.copy()
    upside_down[:, 1] = 48 - upside_down[:, 1]
    assert shape_problem(upside_down) is not None
    mouth_above = good.copy()
    mouth_above[3:, 1] = 10.0
    assert "mouth" in shape_problem(mouth_above)


def test_too_few_aligned_rows_use_the_default_shape(tmp_path, detector):
    # Three blurred crops and two sharp ones: two aligned rows are too few for a mean shape.
    faces = real_faces()
    images = {f"b{k}.png": registered_crop(p, q, blur=4.0) for k, (_, p, q) in enumerate(faces[:3])}
    images.update({f"s{k}.png": registered_crop(p, q) for k, (_, p, q) in enumerate(faces[3:5])})
    ws = Workspace.resolve(tmp_path)
    result, _ = align_manifest(ws, write_manifest(ws, "imagefolder", images), detector=detector, registered=True)
    record = result.provenance["align"]
    assert record["registered_from"] == "argument" and record["mean_shape"]["from"].startswith("default")
    assert np.allclose(record["mean_shape"]["points"], DEFAULT_REGISTERED_SHAPE)
    assert set(result.frame["face_status"]) <= {"aligned", "registered"}


def test_a_source_not_registered_keeps_no_face(tmp_path, detector):
    faces = real_faces()
    images = {f"b{k}.png": registered_crop(p, q, blur=4.0) for k, (_, p, q) in enumerate(faces[:4])}
    ws = Workspace.resolve(tmp_path)
    result, report = align_manifest(ws, write_manifest(ws, "imagefolder", images), detector=detector)
    assert not report.registered and "mean_shape" not in result.provenance["align"]
    assert "registered" not in set(result.frame["face_status"])


def test_mean_shape_is_the_same_however_the_rows_were_aligned(tmp_path, detector):
    """Aligning in two goes (half, then only the missing rows) ends as aligning all at once: the
    registered crops of the first go are warped again with the final shape."""
    faces = real_faces()[:30]
    images = {f"s{k:02d}.png": registered_crop(p, q) for k, (_, p, q) in enumerate(faces)}
    images.update({f"b{k:02d}.png": registered_crop(p, q, blur=4.0) for k, (_, p, q) in enumerate(faces[:6])})
    once = Workspace.resolve(tmp_path / "once")
    all_at_once, _ = align_manifest(once, write_manifest(once, "fer2013", images), detector=detector)

    twice = Workspace.resolve(tmp_path / "twice")
    frame = write_manifest(twice, "fer2013", images).frame
    first, _ = align_manifest(twice, Manifest("fer2013", frame.iloc[::2].reset_index(drop=True), provenance={}), detector=detector)
    done = first.frame.set_index("image_id")
    both = pd.concat([done, frame.set_index("image_id").drop(index=done.index)]).loc[frame["image_id"]].reset_index()
    both["face_error"] = both["face_error"].astype(object).where(both["face_error"].notna(), None)
    second, report = align_manifest(twice, Manifest("fer2013", both, provenance={}), detector=detector, only_missing=True)
    assert report.processed == len(frame) - len(done)
    columns = ["image_id", "face_status", "landmarks", "aligned_path"]
    left, right = second.frame[columns], all_at_once.frame[columns]
    assert left["face_status"].tolist() == right["face_status"].tolist()
    assert left["aligned_path"].tolist() == right["aligned_path"].tolist()
    assert second.provenance["align"]["mean_shape"] == all_at_once.provenance["align"]["mean_shape"]


def test_mean_landmark_shape_ignores_rows_that_are_not_aligned():
    rows = []
    for k in range(MIN_SHAPE_ROWS + 5):
        status = "aligned" if k < MIN_SHAPE_ROWS else "registered"
        points = np.array([[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]], float) * (1 if status == "aligned" else 0.5)
        rows.append(dict(image_id=f"i{k}", dataset="fer2013", source=f"s{k}", sha256="0" * 64, label_original="sad", label="sad",
                         original_path=f"o{k}", width=40, height=50, face_status=status, landmarks=list(points.reshape(-1))))
    shape, count = mean_landmark_shape(new_frame(rows))
    assert count == MIN_SHAPE_ROWS
    assert np.allclose(shape, np.array([[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]]) / [40, 50])


def test_contact_sheet_marks_registered_crops_apart_from_detected_ones(fer_run):
    ws, result, _ = fer_run
    frame = result.frame[result.frame["face_status"] != "unreadable"].reset_index(drop=True)
    tile, caption = 96, 190
    sheet = render_contact_sheet(ws, frame, per_row=8, tile=tile)
    amber = np.all(sheet == (255, 176, 0), axis=2)
    tiles = [amber[4 : 4 + tile, caption + k * (tile + 4) : caption + k * (tile + 4) + tile] for k in range(8)]
    # One row (one label, masked unknown): two registered tiles (a quarter of the row) framed in
    # amber, then six aligned ones without.
    assert [bool(t[:, 0].all() and t[0, :].all()) for t in tiles] == [True, True] + [False] * 6
    assert not any(t.any() for t in tiles[2:])

"""align_manifest options (face choice, size, only-missing, model folder) and `ferdata align`."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import skimage.data
from typer.testing import CliRunner

import insightface
from ferdata.align import align_manifest, find_faces
from ferdata.cli import app
from ferdata.errors import UsageError
from ferdata.schema import Manifest, new_frame
from ferdata.vision.align import template
from ferdata.vision.decode import decode
from ferdata.vision.detectors import load_detector
from ferdata.workspace import Workspace

IMAGES = Path(insightface.__file__).parent / "data" / "images"
DATASET = "imagefolder"


def _workspace(root: Path, files: dict[str, bytes | np.ndarray], masked: list[bool | None] | None = None) -> Workspace:
    """A workspace whose manifest lists ``files`` (name -> bytes, or RGB pixels saved as PNG)."""
    ws = Workspace.resolve(root)
    folder = ws.originals_dir(DATASET)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (name, content) in enumerate(files.items()):
        if isinstance(content, np.ndarray):
            cv2.imwrite(str(folder / name), content[:, :, ::-1])
        else:
            (folder / name).write_bytes(content)
        rows.append(
            dict(
                image_id=name,
                dataset=DATASET,
                source=name,
                sha256="0" * 64,
                label_original="happy" if k % 2 else "sad",
                label="happy" if k % 2 else "sad",
                masked=None if masked is None else masked[k],
                original_path=f"originals/{DATASET}/{name}",
                width=0,
                height=0,
            )
        )
    ws.save(Manifest(DATASET, new_frame(rows)))
    return ws


@pytest.fixture(scope="module")
def detector():
    return load_detector("retinaface", device="cpu")


@pytest.fixture(scope="module")
def t1_bytes() -> bytes:
    return (IMAGES / "t1.jpg").read_bytes()


def test_face_choice_largest_or_centre(tmp_path, detector, t1_bytes):
    ws = _workspace(tmp_path, {"t1.jpg": t1_bytes})
    faces = detector.detect([decode(IMAGES / "t1.jpg").rgb], 640, 0.5)[0]
    largest = max(faces, key=lambda f: f.area)
    centre = min(faces, key=lambda f: np.linalg.norm(f.box.reshape(2, 2).mean(0) - [640, 443]))
    assert not np.allclose(largest.box, centre.box)  # the photo tells the two rules apart

    by_size, _ = align_manifest(ws, ws.load(), device="cpu", face_choice="largest")
    by_centre, _ = align_manifest(ws, ws.load(), device="cpu", face_choice="center")
    assert np.allclose(by_size.frame["bbox"].iat[0], largest.box, atol=1.0)
    assert np.allclose(by_centre.frame["bbox"].iat[0], centre.box, atol=1.0)
    assert by_centre.frame["n_faces"].iat[0] == 6
    assert by_centre.provenance["align"]["face_choice"] == "center"
    with pytest.raises(UsageError, match="--face"):
        align_manifest(ws, ws.load(), device="cpu", face_choice="middle")


def test_size_224_scales_the_template(tmp_path, detector):
    ws = _workspace(tmp_path, {"astronaut.png": skimage.data.astronaut()})
    result, _ = align_manifest(ws, ws.load(), device="cpu", size=224)
    path = result.frame["aligned_path"].iat[0]
    assert path.startswith(f"aligned/{DATASET}/224px/")
    crop = decode(ws.absolute(path)).rgb
    assert crop.shape == (224, 224, 3)
    found = max(find_faces(detector, crop), key=lambda f: f.area).landmarks
    target = template(224)
    assert np.linalg.norm(found[:2].mean(0) - target[:2].mean(0)) < 10.0  # 5 pixels at 112
    assert result.provenance["align"]["size"] == 224
    with pytest.raises(UsageError, match="--size"):
        align_manifest(ws, ws.load(), device="cpu", size=8)


def test_only_missing_redoes_only_rows_without_a_result(tmp_path, t1_bytes):
    astronaut = skimage.data.astronaut()
    ws = _workspace(tmp_path, {"a.png": astronaut, "b.jpg": t1_bytes, "c.png": astronaut[:, ::-1].copy()})
    first, report = align_manifest(ws, ws.load(), device="cpu")
    assert report.processed == 3
    frame = first.frame.copy()
    frame.loc[0, "face_status"] = "not_run"  # e.g. added by a later ingest
    ws.absolute(frame["aligned_path"].iat[2]).unlink()  # crop deleted by hand
    ws.save(Manifest(DATASET, frame, first.provenance))

    again, report = align_manifest(ws, ws.load(), device="cpu", only_missing=True)
    assert report.processed == 2
    assert again.frame["face_status"].tolist() == ["aligned"] * 3
    assert again.frame["aligned_path"].tolist() == first.frame["aligned_path"].tolist()  # same bytes, same name
    assert ws.absolute(again.frame["aligned_path"].iat[2]).is_file()
    assert again.provenance["align"]["rows_processed"] == 2


def test_identical_images_share_one_crop_file(tmp_path):
    astronaut = skimage.data.astronaut()
    ws = _workspace(tmp_path, {"one.png": astronaut, "two.png": astronaut})
    result, _ = align_manifest(ws, ws.load(), device="cpu")
    paths = result.frame["aligned_path"].tolist()
    assert paths[0] == paths[1]
    assert len(list(ws.aligned_dir(DATASET).rglob("*.png"))) == 1


def test_model_dir_gives_the_bundled_results_and_records_the_file(tmp_path):
    from retinaface.weights import WEIGHTS

    models = tmp_path / "models"
    models.mkdir()
    (models / "retinaface.onnx").write_bytes(WEIGHTS)
    ws = _workspace(tmp_path / "ws", {"astronaut.png": skimage.data.astronaut()})
    bundled, _ = align_manifest(ws, ws.load(), device="cpu")
    from_dir, _ = align_manifest(ws, ws.load(), device="cpu", model_dir=models)
    assert from_dir.frame["landmarks"].iat[0] == bundled.frame["landmarks"].iat[0]
    record = from_dir.provenance["align"]
    assert record["model_file"] == str(models / "retinaface.onnx")
    assert record["model_sha256"] == bundled.provenance["align"]["model_sha256"]


def test_many_small_images_in_batches_keep_their_rows(tmp_path):
    # More rows than a batch holds, tiny and normal mixed, to exercise the pipeline's ordering.
    astronaut = skimage.data.astronaut()
    hanks = cv2.imread(str(IMAGES / "Tom_Hanks_54745.png"))[:, :, ::-1]
    files = {}
    for k in range(11):
        if k % 3 == 0:
            files[f"{k:02d}.png"] = cv2.resize(hanks, (48, 48), interpolation=cv2.INTER_AREA)
        elif k % 3 == 1:
            files[f"{k:02d}.png"] = np.full((64, 64, 3), 120, np.uint8)  # blank: no face
        else:
            files[f"{k:02d}.png"] = astronaut
    ws = _workspace(tmp_path, files)
    result, report = align_manifest(ws, ws.load(), device="cpu", batch_size=3, workers=2)
    expected = ["aligned" if k % 3 != 1 else "no_face" for k in range(11)]
    assert result.frame["face_status"].tolist() == expected
    assert result.frame["width"].tolist() == [48 if k % 3 == 0 else 64 if k % 3 == 1 else 512 for k in range(11)]
    assert report.counts == {"aligned": 7, "no_face": 4}


# ----------------------------------------------------------------------------- the command


def test_cli_align_writes_the_manifest_and_a_contact_sheet(tmp_path, t1_bytes):
    astronaut = skimage.data.astronaut()
    ws = _workspace(
        tmp_path / "ws",
        {"a.png": astronaut, "b.jpg": t1_bytes, "c.png": np.full((80, 80, 3), 90, np.uint8), "d.jpg": b"broken"},
        masked=[False, True, False, None],
    )
    sheet = tmp_path / "sheet.png"
    result = CliRunner().invoke(app, ["align", "-w", str(ws.root), "--device", "cpu", "--contact-sheet", str(sheet)])
    assert result.exit_code == 0, result.output
    saved = ws.load()
    assert saved.frame["face_status"].tolist() == ["aligned", "aligned", "no_face", "unreadable"]
    assert saved.provenance["align"]["provider"] == "CPUExecutionProvider"
    image = cv2.imread(str(sheet))
    # Three groups, a row each: (happy, masked) b; (happy, unknown) d; (sad, unmasked) a and c,
    # whose caption lists two statuses and makes its row 4 pixels taller than a 96-pixel tile row.
    assert image is not None and image.shape[0] == (96 + 8) * 2 + (76 + 16 * 2)
    # The unreadable row is drawn as a red-framed grey tile in the (happy, unknown) row.
    tile = image[104 + 4 : 104 + 100, 190 : 190 + 96]
    assert tuple(tile[48, 48]) == (96, 96, 96) and tuple(tile[0, 48]) == (40, 40, 200)
    assert not (ws.root / ".ferdata" / "lock").exists()


def test_cli_align_errors_are_one_line_and_exit_1(tmp_path):
    ws = _workspace(tmp_path / "ws", {"a.png": skimage.data.astronaut()})
    runner = CliRunner()
    bad_face = runner.invoke(app, ["align", "-w", str(ws.root), "--face", "middle"])
    assert bad_face.exit_code == 1 and "--face middle" in bad_face.output
    no_models = runner.invoke(app, ["align", "-w", str(ws.root), "--detector", "scrfd", "--model-dir", str(tmp_path)])
    assert no_models.exit_code == 1 and "det_10g.onnx" in no_models.output
    assert f"--model-dir {tmp_path} holds" in no_models.output and "--detector scrfd expects" in no_models.output
    cuda = runner.invoke(app, ["align", "-w", str(ws.root), "--device", "cuda"])
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert cuda.exit_code == 0
    else:
        assert cuda.exit_code == 1 and "onnxruntime-gpu" in cuda.output
        assert ws.load().frame["face_status"].tolist() == ["not_run"]  # nothing written on failure
    assert "Traceback" not in bad_face.output + no_models.output + cuda.output


def test_cli_help_ends_with_an_example():
    result = CliRunner().invoke(app, ["align", "--help"])
    assert result.exit_code == 0
    assert "Example: ferdata align" in result.output
    for option in ("--detector", "--model-dir", "--size", "--device", "--face", "--only-missing"):
        assert option in result.output

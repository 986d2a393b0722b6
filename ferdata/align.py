"""Face detection and alignment for a whole manifest: the library side of ``ferdata align``.

Every row's original image is decoded at the smallest resolution detection needs, detected in
batches, and its chosen face warped onto the standard 5-point template; the crop is written as a
content-addressed PNG under ``aligned/<dataset>/<size>px/``. Rows are never dropped: a row whose
image has no face says ``no_face``, one whose file cannot be decoded says ``unreadable`` and
gives the reason in the extra column ``face_error``.

The work is a pipeline on a small thread pool: while onnxruntime runs one batch (it releases the
GIL), the pool decodes the next batches and warps and writes the previous one. Only a few batches
are in flight at any time, so memory stays flat however many images there are.

Coordinates in the manifest (``bbox``, ``landmarks``, ``width``, ``height``) are original pixels
after EXIF orientation, i.e. the picture as a viewer shows it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ImageUnreadable, UsageError
from .fsutil import atomic_write_bytes
from .progress import ProgressFn, null_progress
from .schema import SYNTHETIC_SOURCE_PREFIX, Manifest
from .vision.align import TEMPLATE_112, similarity_transform, template, warp
from .vision.decode import Decoded, decode, pad
from .vision.detectors import BUNDLED_MODEL, Detector, Face, load_detector

FACE_CHOICES = ("largest", "center")
ERROR_COLUMN = "face_error"  # extra manifest column: why a row is unreadable


@dataclass(frozen=True)
class Attempt:
    """One detection try: pad the image by ``pad`` of its size, fit it in ``canvas`` pixels."""

    pad: float
    canvas: int
    threshold: float


def attempts_for(long_side: int, det_size: int = 640) -> tuple[Attempt, ...]:
    """The tries for an image whose longer side (as decoded) is ``long_side`` pixels.

    Photos are first detected at ``det_size``. A face that fills the frame (a tight crop) is found
    once the frame is padded and shrunk so that the face is no larger than the biggest anchors.
    Small images (FER2013's 48x48) start padded at a small canvas: upsampling them to 640 pixels
    costs six times the inference and places the landmarks worse (measured in
    docs/benchmarks.md). The first try asks for a score of 0.8, which keeps every face of dlib's
    annotated photos (all score 0.97 or more) and drops most non-faces (animals score up to
    about 0.8); the later tries lower it, for faces that a mask or blur makes less certain.
    """
    if long_side <= 256:
        return (Attempt(0.25, 192, 0.8), Attempt(0.5, 256, 0.6), Attempt(0.0, 128, 0.4))
    return (Attempt(0.0, det_size, 0.8), Attempt(0.25, det_size // 2, 0.6), Attempt(0.5, 256, 0.4))


def find_faces(detector: Detector, rgb: np.ndarray, det_size: int = 640) -> list[Face]:
    """Faces in one RGB image, in its pixels, after the same tries as :func:`align_manifest`."""
    for attempt in attempts_for(max(rgb.shape[:2]), det_size):
        padded, dx, dy = pad(rgb, attempt.pad)
        faces = detector.detect([padded], attempt.canvas, attempt.threshold)[0]
        if faces:
            return [f.mapped(1.0, dx, dy) for f in faces]
    return []


@dataclass
class AlignReport:
    """What an alignment run did."""

    counts: dict[str, int]  # rows per face_status among the rows processed
    processed: int  # rows processed (all rows, or the missing ones with only_missing)
    seconds: float
    provider: str  # onnxruntime execution provider that ran the detector
    detector: str
    model_file: str

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Job:
    """One row on its way through the pipeline."""

    row: int
    path: Path
    width: int = 0
    height: int = 0
    detect_rgb: np.ndarray | None = None  # what the detector sees (before padding)
    detect_scale: float = 1.0  # detect_rgb pixels per original pixel
    crop_source: Decoded | None = None  # a decode kept for the warp, when small enough to keep
    error: str | None = None
    attempt: int = 0
    faces: list[Face] = field(default_factory=list)  # in original pixels


def _load(job: _Job, det_size: int) -> _Job:
    import cv2

    try:
        decoded = decode(job.path, min_long_side=det_size)
    except ImageUnreadable as exc:
        job.error = str(exc).replace(str(job.path), job.path.name)
        return job
    job.width, job.height = decoded.width, decoded.height
    rgb = decoded.rgb
    long_side = max(rgb.shape[:2])
    if long_side > 2 * det_size:
        # A format without reduced decoding (PNG, TIFF, very large JPEG): keep only a detection
        # copy, so that memory does not grow with the photo; the warp decodes again.
        factor = det_size / long_side
        job.detect_rgb = cv2.resize(rgb, (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor)), interpolation=cv2.INTER_AREA)
        job.detect_scale = decoded.scale * factor
    else:
        job.detect_rgb, job.detect_scale = rgb, decoded.scale
        job.crop_source = decoded
    return job


def _choose(faces: list[Face], width: int, height: int, choice: str) -> Face:
    if choice == "largest":
        return max(faces, key=lambda f: (f.area, f.score))
    centre = np.array([width / 2, height / 2])
    return min(faces, key=lambda f: (float(np.linalg.norm(f.box.reshape(2, 2).mean(axis=0) - centre)), -f.score))


def _detect(detector: Detector, jobs: list[_Job], det_size: int) -> None:
    """Run the tries in batches until every job has faces or has used all its tries."""
    pending = [j for j in jobs if j.error is None]
    while pending:
        groups: dict[Attempt, list[_Job]] = {}
        for job in pending:
            tries = attempts_for(max(job.detect_rgb.shape[:2]), det_size)
            groups.setdefault(tries[job.attempt], []).append(job)
        pending = []
        for attempt, group in groups.items():
            images, offsets = [], []
            for job in group:
                padded, dx, dy = pad(job.detect_rgb, attempt.pad)
                images.append(padded)
                offsets.append((dx, dy))
            for job, (dx, dy), faces in zip(group, offsets, detector.detect(images, attempt.canvas, attempt.threshold)):
                if faces:
                    job.faces = [f.mapped(job.detect_scale, dx, dy) for f in faces]
                    job.detect_rgb = None  # no longer needed: free it before the warp
                    continue
                job.attempt += 1
                if job.attempt < len(attempts_for(max(job.detect_rgb.shape[:2]), det_size)):
                    pending.append(job)


def _finish(job: _Job, ws_root: Path, out_dir: Path, size: int, choice: str) -> dict[str, Any]:
    """The row's new column values; writes the aligned PNG."""
    import cv2

    job.detect_rgb = None
    if job.error is not None:
        return {"face_status": "unreadable", "face_error": job.error, "n_faces": None, "width": 0, "height": 0}
    base = {"width": job.width, "height": job.height, "face_error": None}
    if not job.faces:
        return {**base, "face_status": "no_face", "n_faces": 0}
    face = _choose(job.faces, job.width, job.height, choice)
    # The warp reads from a decode whose scale is at least the crop's: enough pixels for the
    # output, and never the full 24 MP unless the face needs it.
    needed = float(np.sqrt(abs(np.linalg.det(similarity_transform(face.landmarks, template(size))[:, :2]))))
    source = job.crop_source
    if source is None or source.scale < min(1.0, needed):
        try:
            source = decode(job.path, min_scale=min(1.0, needed))
        except ImageUnreadable as exc:  # changed on disk since the first decode
            return {"face_status": "unreadable", "face_error": str(exc), "n_faces": None, "width": 0, "height": 0}
    crop, _ = warp(source.rgb, face.landmarks * source.scale, size)
    ok, png = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - OpenCV fails to encode only on invalid arrays
        raise RuntimeError("PNG encoding failed")
    data = png.tobytes()
    digest = hashlib.sha256(data).hexdigest()
    path = out_dir / digest[:2] / f"{digest}.png"
    if not path.exists():
        atomic_write_bytes(path, data)
    return {
        **base,
        "face_status": "aligned",
        "det_score": face.score,
        "n_faces": len(job.faces),
        "bbox": [float(v) for v in face.box],
        "landmarks": [float(v) for v in face.landmarks.reshape(-1)],
        "aligned_path": path.relative_to(ws_root).as_posix(),
    }


def _rows_to_do(ws, frame, only_missing: bool) -> list[int]:
    """Rows to (re-)align; synthetic rows are never realigned: their original is a crop already."""
    todo = []
    rows = zip(frame["face_status"], frame["aligned_path"], frame["source"])
    for i, (status, aligned, source) in enumerate(rows):
        if source.startswith(SYNTHETIC_SOURCE_PREFIX):
            continue
        if not only_missing or status == "not_run" or (
            status == "aligned" and (aligned is None or not ws.absolute(aligned).is_file())
        ):
            todo.append(i)
    return todo


def _model_digest(model_file: str) -> str:
    if model_file == BUNDLED_MODEL:
        from retinaface.weights import WEIGHTS

        return hashlib.sha256(WEIGHTS).hexdigest()
    return hashlib.sha256(Path(model_file).read_bytes()).hexdigest()


def align_manifest(
    ws,
    manifest: Manifest,
    *,
    detector: str | Detector = "retinaface",
    model_dir: Path | None = None,
    size: int = 112,
    device: str = "auto",
    face_choice: str = "largest",
    only_missing: bool = False,
    progress: ProgressFn | None = None,
    batch_size: int = 8,
    det_size: int = 640,
    workers: int | None = None,
) -> tuple[Manifest, AlignReport]:
    """Detect and align every row's ``original_path`` (relative to ``ws.root``).

    Returns a NEW Manifest with ``face_status``, ``det_score``, ``n_faces``, ``bbox``,
    ``landmarks``, ``aligned_path``, ``width`` and ``height`` filled (and ``face_error`` for
    unreadable rows); no row is dropped. Aligned PNGs are written atomically under
    ``ws.aligned_dir(dataset)/<size>px/``, named by the SHA-256 of their bytes.
    ``provenance['align']`` records the detector, model file and hash, the provider that ran it,
    the size and the thresholds. ``only_missing`` processes only rows not yet run and aligned rows
    whose crop file is gone. ``detector`` may also be a loaded detector (from
    :func:`ferdata.vision.detectors.load_detector`), to share one across several calls.
    """
    if face_choice not in FACE_CHOICES:
        raise UsageError(f"--face {face_choice} is not one of {', '.join(FACE_CHOICES)}")
    if not 32 <= size <= 1024:
        raise UsageError(f"--size {size} is out of range: use 112 (the standard), 224, or another size from 32 to 1024")
    if batch_size < 1 or det_size < 128:
        raise UsageError("batch_size must be 1 or more and det_size 128 or more")
    progress = progress or null_progress
    model = load_detector(detector, model_dir, device) if isinstance(detector, str) else detector
    frame = manifest.frame
    todo = _rows_to_do(ws, frame, only_missing)
    out_dir = ws.aligned_dir(manifest.dataset) / f"{size}px"
    workers = workers or max(2, os.cpu_count() or 2)
    started = time.perf_counter()
    results: dict[int, dict[str, Any]] = {}
    chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    progress("align", 0, len(todo))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ferdata-align") as pool:

        def submit_loads(chunk: list[int]) -> list[Future]:
            return [
                pool.submit(_load, _Job(row=i, path=ws.absolute(frame["original_path"].iat[i])), det_size)
                for i in chunk
            ]

        def collect(futures: list[Future]) -> None:
            for future in futures:
                row, values = future.result()
                results[row] = values

        def finish(job: _Job) -> tuple[int, dict[str, Any]]:
            return job.row, _finish(job, ws.root, out_dir, size, face_choice)

        loading: deque[list[Future]] = deque(submit_loads(c) for c in chunks[:2])
        finishing: deque[list[Future]] = deque()
        next_chunk, done = len(loading), 0
        while loading:
            jobs = [f.result() for f in loading.popleft()]
            if next_chunk < len(chunks):
                loading.append(submit_loads(chunks[next_chunk]))
                next_chunk += 1
            _detect(model, jobs, det_size)
            finishing.append([pool.submit(finish, job) for job in jobs])
            while len(finishing) > 2:
                collect(finishing.popleft())
            done += len(jobs)
            progress("align", done, len(todo))
        while finishing:
            collect(finishing.popleft())
    seconds = time.perf_counter() - started

    new_frame = _apply(frame, results)
    counts: dict[str, int] = {}
    for values in results.values():
        counts[values["face_status"]] = counts.get(values["face_status"], 0) + 1
    provenance = dict(manifest.provenance)
    provenance["align"] = {
        "detector": model.name,
        "requested_detector": detector if isinstance(detector, str) else model.name,
        "model_file": model.model_file,
        "model_sha256": _model_digest(model.model_file),
        "provider": model.provider,
        "device": device,
        "size": size,
        "template": [[float(v) for v in p] for p in TEMPLATE_112],
        "det_size": det_size,
        "face_choice": face_choice,
        "attempts": [
            {"pad": a.pad, "canvas": a.canvas, "threshold": a.threshold}
            for a in (*attempts_for(det_size + 1, det_size), *attempts_for(48, det_size))
        ],
        "nms_iou": 0.4,
        "only_missing": only_missing,
        "rows_processed": len(todo),
        "counts": dict(sorted(counts.items())),
    }
    report = AlignReport(
        counts=dict(sorted(counts.items())),
        processed=len(todo),
        seconds=seconds,
        provider=model.provider,
        detector=model.name,
        model_file=model.model_file,
    )
    return Manifest(dataset=manifest.dataset, frame=new_frame, provenance=provenance), report


_RESULT_COLUMNS = ("face_status", "det_score", "n_faces", "bbox", "landmarks", "aligned_path", "width", "height", ERROR_COLUMN)


def _apply(frame, results: dict[int, dict[str, Any]]):
    """A copy of ``frame`` with the processed rows' columns replaced (absent keys become null)."""
    import pandas as pd

    out = frame.copy()
    if ERROR_COLUMN not in out.columns:
        out[ERROR_COLUMN] = pd.Series([None] * len(out), index=out.index, dtype=object)
    for name in _RESULT_COLUMNS:
        values = out[name].astype(object).tolist()
        for row, result in results.items():
            values[row] = result.get(name)
        out[name] = pd.Series(values, index=out.index, dtype=_DTYPES.get(name, object))
    return out


_DTYPES = {"det_score": "float64", "n_faces": "Int64", "width": "Int64", "height": "Int64"}

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

**Registered sources** (FER2013, FER+, FERV39k's face crops: ``registered = true`` in their
``manifests/<dataset>.toml``, or ``registered=True``) are delivered as face crops that their
authors already found, centred and scaled. There a row whose detection finds no face, or only one
that fails :func:`registration_problem`, is not lost: it becomes ``registered``, its crop warped
with the dataset's *mean landmark shape* (the mean, in coordinates normalised to the image, of the
landmarks of the dataset's ``aligned`` rows; :data:`DEFAULT_REGISTERED_SHAPE` when fewer than
:data:`MIN_SHAPE_ROWS` rows are aligned). Those crops are warped after every detection of the run,
from all aligned rows of the resulting manifest, so the shape, and so every registered crop, does
not depend on the order of the rows or on how many runs it took.

**Resuming.** Each finished batch is appended to a journal, ``.ferdata/align/<dataset>.jsonl``,
keyed by everything that decides a row's result (size, detector and model hash, tries, face
choice, registered). A run killed or interrupted half way is resumed by the next run with the
same settings: the rows the journal holds (and whose crop is still on disk) are not detected
again. :func:`discard_journal` removes it once the manifest holding the results is saved.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from .errors import FerdataError, ImageUnreadable, UsageError
from .fsutil import atomic_write_bytes, disk_errors
from .progress import ProgressFn, null_progress
from .schema import SYNTHETIC_SOURCE_PREFIX, Manifest
from .vision.align import TEMPLATE_112, shape_problem, similarity_transform, template, warp
from .vision.decode import Decoded, decode, pad
from .vision.detectors import BUNDLED_MODEL, Detector, Face, load_detector
from .vision.encode import write_crop
from .workspace import Workspace, WorkspaceLike, writes_workspace

FACE_CHOICES = ("largest", "center")
ENGINES = ("local", "ray")  # local: a thread pool in this process; ray: ferdata.align_ray
ERROR_COLUMN = "face_error"  # extra manifest column: why a row is unreadable or registered
JOURNAL_VERSION = 1

# Registered sources. A face whose eyes are closer than MIN_EYE_DISTANCE of the image's shorter
# side, or whose landmarks' centre lies further than MAX_CENTRE_OFFSET (of the width, of the
# height) from the image centre, is not the face a registered crop was made around: on FER2013-like
# crops the detector puts the eyes 0.33 to 0.45 of the side apart and the centre within 0.1 of
# the middle (docs/align.md, benchmarks/registered_crops.py).
MIN_EYE_DISTANCE = 0.15
MAX_CENTRE_OFFSET = 0.25
# Aligned rows needed before a dataset's own mean landmark shape replaces the default.
MIN_SHAPE_ROWS = 20
# The mean landmark shape (x / width, y / height) used until a dataset has MIN_SHAPE_ROWS aligned
# rows: where the bundled detector puts the landmarks on real registered face crops, measured by
# benchmarks/registered_crops.py on the 100 LFW faces of scikit-image's lfw_subset() and on 48x48
# FER2013-style crops of the real faces in tests/face_crops.py, each mean made left-right
# symmetric, then averaged (docs/align.md).
DEFAULT_REGISTERED_SHAPE = np.array(
    [[0.3282, 0.3579], [0.6718, 0.3579], [0.5, 0.5517], [0.3613, 0.7104], [0.6387, 0.7104]], dtype=np.float64
)


@dataclass(frozen=True)
class Attempt:
    """One detection try: pad the image by ``pad`` of its size, fit it in ``canvas`` pixels.

    ``flip`` detects on the mirror image. The tries that see a small image much enlarged, where a
    texture can pass for a face, check what they find: ``checked`` keeps only faces whose
    landmarks pass :func:`ferdata.vision.align.shape_problem`, ``min_eyes`` only faces whose eyes
    are at least that fraction of the image's shorter side apart, and ``both_sides`` only faces
    that the mirror image shows too, within ``mirror_tolerance`` eye distances landmark by landmark
    (their landmarks are then the mean of the two).
    """

    pad: float
    canvas: int
    threshold: float
    flip: bool = False
    checked: bool = False
    min_eyes: float = 0.0
    both_sides: bool = False
    mirror_tolerance: float = 0.35


def attempts_for(long_side: int, det_size: int = 640) -> tuple[Attempt, ...]:
    """The tries for an image whose longer side (as decoded) is ``long_side`` pixels.

    Photos are first detected at ``det_size``. A face that fills the frame (a tight crop) is found
    once the frame is padded and shrunk so that the face is no larger than the biggest anchors.
    Small images (FER2013's 48x48, tight crops up to 256 px) start padded at a small canvas:
    upsampling them to 640 pixels costs six times the inference and places the landmarks worse
    (measured in docs/benchmarks.md). The first try asks for a score of 0.8, which keeps every
    face of dlib's annotated photos (all score 0.97 or more) and drops most non-faces (animals
    score up to about 0.8); the later tries run only for images where it found nothing.

    A mask hides half the face, and the small network then needs the face larger and seen from
    both sides: small images get a try enlarged to 320 pixels at 0.3, one on the mirror image at
    320 pixels at 0.4, then one enlarged to ``det_size`` at 0.8 that keeps only faces the mirror
    image shows too (within half an eye distance); all three keep only faces of a possible
    landmark order and a plausible size. They raise masked recall from 75-83 % to 93.7-98.1 %
    (chosen on one half of ``benchmarks/masked_faces.py``'s sets, checked on the other;
    docs/benchmarks.md). The 320 pixel try at 0.3 comes before the mirror one because, on a masked
    face turned aside, the mirror image's best face is often placed half an eye distance off, and
    the ladder stops at it. The last two tries, smaller and at lower thresholds, find most heavily
    blurred faces.
    """
    if long_side <= 256:
        return (
            Attempt(0.25, 192, 0.8),
            Attempt(0.0, 320, 0.3, checked=True, min_eyes=0.1),
            Attempt(0.0, 320, 0.4, flip=True, checked=True, min_eyes=0.1),
            Attempt(0.0, det_size, 0.8, checked=True, min_eyes=0.1, both_sides=True, mirror_tolerance=0.5),
            Attempt(0.5, 256, 0.6),
            Attempt(0.0, 128, 0.4),
        )
    return (Attempt(0.0, det_size, 0.8), Attempt(0.25, det_size // 2, 0.6), Attempt(0.5, 256, 0.4))


def _mirror(face: Face, width: int) -> Face:
    """``face`` found on the mirror image of an image ``width`` pixels wide, in the image's pixels."""
    box = np.array([width - face.box[2], face.box[1], width - face.box[0], face.box[3]])
    points = face.landmarks.copy()
    points[:, 0] = width - points[:, 0]
    return Face(box=box, score=face.score, landmarks=points[[1, 0, 2, 4, 3]])


def _detect_once(detector: Detector, images: list[np.ndarray], attempt: Attempt, flip: bool) -> list[list[Face]]:
    prepared, offsets = [], []
    for image in images:
        padded, dx, dy = pad(np.ascontiguousarray(image[:, ::-1]) if flip else image, attempt.pad)
        prepared.append(padded)
        offsets.append((dx, dy))
    found = []
    for image, (dx, dy), faces in zip(
        images, offsets, detector.detect(prepared, attempt.canvas, attempt.threshold), strict=True
    ):
        faces = [f.mapped(1.0, dx, dy) for f in faces]
        found.append([_mirror(f, image.shape[1]) for f in faces] if flip else faces)
    return found


def _seen_from_both_sides(faces: list[Face], mirrored: list[Face], tolerance: float) -> list[Face]:
    """The faces that the mirror image shows at the same place, their landmarks averaged.

    A face and its twin are one face when no landmark of one lies further than ``tolerance`` eye
    distances from the same landmark of the other.
    """
    kept = []
    for face in faces:
        eyes = float(np.linalg.norm(face.landmarks[1] - face.landmarks[0]))
        gaps = [float(np.linalg.norm(m.landmarks - face.landmarks, axis=1).max()) for m in mirrored]
        if gaps and min(gaps) < tolerance * eyes:
            twin = mirrored[int(np.argmin(gaps))]
            kept.append(
                Face(
                    box=(face.box + twin.box) / 2,
                    score=min(face.score, twin.score),
                    landmarks=(face.landmarks + twin.landmarks) / 2,
                )
            )
    return kept


def detect_attempt(detector: Detector, images: list[np.ndarray], attempt: Attempt) -> list[list[Face]]:
    """The faces one try finds in each RGB image, in that image's pixels."""
    found = _detect_once(detector, images, attempt, attempt.flip)
    if attempt.both_sides:
        asked = [i for i, faces in enumerate(found) if faces]
        mirrored = _detect_once(detector, [images[i] for i in asked], attempt, not attempt.flip) if asked else []
        for i, other in zip(asked, mirrored, strict=True):
            found[i] = _seen_from_both_sides(found[i], other, attempt.mirror_tolerance)
    for i, image in enumerate(images):
        if attempt.checked:
            found[i] = [f for f in found[i] if shape_problem(f.landmarks) is None]
        if attempt.min_eyes > 0:
            least = attempt.min_eyes * min(image.shape[:2])
            found[i] = [f for f in found[i] if np.linalg.norm(f.landmarks[1] - f.landmarks[0]) >= least]
    return found


def find_faces(detector: Detector, rgb: np.ndarray, det_size: int = 640) -> list[Face]:
    """Faces in one RGB image, in its pixels, after the same tries as :func:`align_manifest`."""
    for attempt in attempts_for(max(rgb.shape[:2]), det_size):
        faces = detect_attempt(detector, [rgb], attempt)[0]
        if faces:
            return faces
    return []


def registration_problem(face: Face, width: int, height: int) -> str | None:
    """Why a face detected in a registered crop is not the face the crop was made around, or None.

    A registered crop is centred on its face and the face fills most of it; a detection far
    smaller than the frame, far off-centre, or with landmarks in an impossible order is something
    else (a face in the background, a pattern, a misfit on a blurred face).
    """
    problem = shape_problem(face.landmarks)
    if problem is not None:
        return problem
    side = max(1, min(width, height))
    eye_distance = float(np.linalg.norm(face.landmarks[1] - face.landmarks[0]))
    if eye_distance < MIN_EYE_DISTANCE * side:
        return f"face far smaller than the frame (eyes {eye_distance / side:.0%} of the image side apart)"
    cx, cy = face.landmarks.mean(axis=0) / np.array([max(1, width), max(1, height)])
    if max(abs(cx - 0.5), abs(cy - 0.5)) > MAX_CENTRE_OFFSET:
        return f"face far off-centre (at {cx:.0%}, {cy:.0%} of the image)"
    return None


def registered_by_default(dataset: str) -> bool:
    """Whether ``manifests/<dataset>.toml`` says the source is delivered as registered face crops."""
    from .resources import load_toml

    try:
        return bool(load_toml(dataset).get("registered", False))
    except FerdataError:
        return False


def mean_landmark_shape(frame) -> tuple[np.ndarray, int]:
    """The dataset's mean landmark shape and the number of aligned rows it comes from.

    The mean of the ``aligned`` rows' landmarks, each divided by its image's width and height
    (synthetic rows left out: their originals are crops of other rows). With fewer than
    :data:`MIN_SHAPE_ROWS` such rows the shape is :data:`DEFAULT_REGISTERED_SHAPE` (and the count
    says how few there were). Rounded to 6 decimals, so that it reads the same in provenance.
    """
    chosen = (
        (frame["face_status"] == "aligned").to_numpy()
        & frame["landmarks"].notna().to_numpy()
        & ~frame["source"].str.startswith(SYNTHETIC_SOURCE_PREFIX).to_numpy()
    )
    sizes = frame.loc[chosen, ["width", "height"]].to_numpy(dtype=np.float64)
    keep = (sizes > 0).all(axis=1)
    rows = int(keep.sum())
    if rows < MIN_SHAPE_ROWS:
        return DEFAULT_REGISTERED_SHAPE.copy(), rows
    points = np.array(frame.loc[chosen, "landmarks"].tolist(), dtype=np.float64)[keep].reshape(-1, 5, 2)
    normalised = points / sizes[keep][:, None, :]
    return np.round(normalised.mean(axis=0), 6), rows


@dataclass
class AlignReport:
    """What an alignment run did."""

    counts: dict[str, int]  # rows per face_status among the rows processed
    processed: int  # rows processed (all rows, or the missing ones with only_missing)
    seconds: float
    provider: str  # onnxruntime execution provider that ran the detector
    detector: str
    model_file: str
    resumed: int = 0  # rows taken from the journal of an interrupted run instead of detected again
    registered: bool = False  # whether the source was treated as registered face crops
    shape_rows: int = 0  # aligned rows the mean landmark shape comes from (registered sources)
    dataset: str = ""  # the dataset aligned

    @property
    def images_per_second(self) -> float:
        detected = self.processed - self.resumed
        return detected / self.seconds if self.seconds > 0 else 0.0


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
    found: int = 0  # faces detected, plausible or not (registered sources)
    rejected: str | None = None  # why the first implausible face was not used (registered sources)


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
        job.detect_rgb = cv2.resize(
            rgb, (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor)), interpolation=cv2.INTER_AREA
        )
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


def _detect(detector: Detector, jobs: list[_Job], det_size: int, registered: bool) -> None:
    """Run the tries in batches until every job has faces or has used all its tries.

    On a registered source only faces that pass :func:`registration_problem` count as found.
    """
    pending = [j for j in jobs if j.error is None]
    while pending:
        groups: dict[Attempt, list[_Job]] = {}
        for job in pending:
            assert job.detect_rgb is not None  # freed only once the job's faces are found
            tries = attempts_for(max(job.detect_rgb.shape[:2]), det_size)
            groups.setdefault(tries[job.attempt], []).append(job)
        pending = []
        for attempt, group in groups.items():
            images = [cast("np.ndarray", j.detect_rgb) for j in group]  # set while a job is pending
            for job, rgb, faces in zip(group, images, _detect_in_runs(detector, images, attempt), strict=True):
                faces = [f.mapped(job.detect_scale) for f in faces]
                if registered and faces:
                    job.found = max(job.found, len(faces))
                    plausible = []
                    for face in faces:
                        problem = registration_problem(face, job.width, job.height)
                        if problem is None:
                            plausible.append(face)
                        elif job.rejected is None:
                            job.rejected = problem
                    faces = plausible
                if faces:
                    job.faces = faces
                    job.detect_rgb = None  # no longer needed: free it before the warp
                    continue
                job.attempt += 1
                if job.attempt < len(attempts_for(max(rgb.shape[:2]), det_size)):
                    pending.append(job)


# Pixels one detector run takes at most. Batching pays on small canvases (at 192 pixels a run of 8
# costs 1.8 ms an image against 6.5 ms alone) and not on large ones (at 640 pixels 20 ms an image
# whatever the batch), where each image in a run adds about 38 MiB to onnxruntime's arena; so a
# run holds 8 images at 320 pixels or less and 2 at 640. Results do not depend on the batch.
PIXELS_PER_RUN = 8 * 320 * 320


def _detect_in_runs(detector: Detector, images: list[np.ndarray], attempt: Attempt) -> list[list[Face]]:
    """:func:`detect_attempt` over ``images``, in runs of at most :data:`PIXELS_PER_RUN` pixels."""
    per_run = max(1, PIXELS_PER_RUN // (attempt.canvas * attempt.canvas))
    found: list[list[Face]] = []
    for start in range(0, len(images), per_run):
        found += detect_attempt(detector, images[start : start + per_run], attempt)
    return found


def _write_crop(
    path: Path, source: Decoded | None, landmarks: np.ndarray, size: int, out_dir: Path, ws_root: Path
) -> str:
    """Warp the face at ``landmarks`` (original pixels) of the image at ``path`` onto the template
    and write it as a content-addressed PNG; its path relative to the workspace.

    The warp reads from a decode whose scale is at least the crop's: enough pixels for the output,
    and never the full 24 MP unless the face needs it. Raises ImageUnreadable when a new decode
    is needed and fails.
    """
    needed = float(np.sqrt(abs(np.linalg.det(similarity_transform(landmarks, template(size))[:, :2]))))
    if source is None or source.scale < min(1.0, needed):
        source = decode(path, min_scale=min(1.0, needed))
    crop, _ = warp(source.rgb, landmarks * source.scale, size)
    return write_crop(out_dir, crop).relative_to(ws_root).as_posix()


def _unreadable(reason: str) -> dict[str, Any]:
    return {"face_status": "unreadable", "face_error": reason, "n_faces": None, "width": 0, "height": 0}


def _finish(job: _Job, ws_root: Path, out_dir: Path, size: int, choice: str, registered: bool) -> dict[str, Any]:
    """The row's new column values; writes the aligned PNG.

    A registered row's crop is not written here: it needs the mean landmark shape, known only
    once every row of the run is detected (see :func:`align_manifest`).
    """
    job.detect_rgb = None
    if job.error is not None:
        return _unreadable(job.error)
    base = {"width": job.width, "height": job.height, "face_error": None}
    if not job.faces:
        if registered:
            reason = f"detected face not used: {job.rejected}" if job.rejected else "no face found"
            return {**base, "face_status": "registered", "n_faces": job.found, "face_error": reason}
        return {**base, "face_status": "no_face", "n_faces": 0}
    face = _choose(job.faces, job.width, job.height, choice)
    try:
        aligned_path = _write_crop(job.path, job.crop_source, face.landmarks, size, out_dir, ws_root)
    except ImageUnreadable as exc:  # changed on disk since the first decode
        return _unreadable(str(exc))
    return {
        **base,
        "face_status": "aligned",
        "det_score": face.score,
        "n_faces": len(job.faces),
        "bbox": [float(v) for v in face.box],
        "landmarks": [float(v) for v in face.landmarks.reshape(-1)],
        "aligned_path": aligned_path,
    }


def align_images(
    detector: Detector,
    paths: list[Path],
    *,
    ws_root: Path,
    out_dir: Path,
    size: int = 112,
    det_size: int = 640,
    face_choice: str = "largest",
    registered: bool = False,
) -> list[dict[str, Any]]:
    """The new column values of each image at ``paths``, its aligned crop written under ``out_dir``.

    The steps :func:`align_manifest`'s pipeline runs on each batch (decode, detect, warp and
    write), one after the other: what the Ray engine's actors call, so that both engines give
    the same statuses, landmarks and crop bytes. A registered row's crop is not written here
    (see :func:`_finish`).
    """
    jobs = [_load(_Job(row=k, path=Path(path)), det_size) for k, path in enumerate(paths)]
    _detect(detector, jobs, det_size, registered)
    return [_finish(job, Path(ws_root), Path(out_dir), size, face_choice, registered) for job in jobs]


def _register(
    path: Path, width: int, height: int, shape: np.ndarray, size: int, out_dir: Path, ws_root: Path
) -> dict[str, Any]:
    """The crop of a registered row: the image warped with the mean landmark shape at its size."""
    landmarks = shape * np.array([width, height], dtype=np.float64)
    try:
        aligned_path = _write_crop(path, None, landmarks, size, out_dir, ws_root)
    except ImageUnreadable as exc:
        return _unreadable(str(exc).replace(str(path), path.name))
    return {"landmarks": [float(v) for v in landmarks.reshape(-1)], "aligned_path": aligned_path}


def _rows_to_do(ws, frame, only_missing: bool) -> list[int]:
    """Rows to (re-)align; synthetic rows are never realigned: their original is a crop already."""
    todo = []
    rows = zip(frame["face_status"], frame["aligned_path"], frame["source"], strict=True)
    for i, (status, aligned, source) in enumerate(rows):
        if source.startswith(SYNTHETIC_SOURCE_PREFIX):
            continue
        if (
            not only_missing
            or status == "not_run"
            or (status == "aligned" and (aligned is None or not ws.absolute(aligned).is_file()))
        ):
            todo.append(i)
    return todo


def _model_digest(model_file: str) -> str:
    if model_file == BUNDLED_MODEL:
        from retinaface.weights import WEIGHTS

        return hashlib.sha256(WEIGHTS).hexdigest()
    return hashlib.sha256(Path(model_file).read_bytes()).hexdigest()


def load_run_detector(detector: str, model_dir: Path | None, device: str, engine: str) -> Detector:
    """The detector :func:`align_manifest` loads in this process for ``detector`` given by name
    (what its ``preloaded`` stands for). The Ray engine's driver needs only the model's name and
    hash, its actors run the detector: there it is loaded on the CPU."""
    return load_detector(detector, model_dir, "cpu" if engine == "ray" else device)


# ----------------------------------------------------------------------------- the journal


def journal_path(ws, dataset: str) -> Path:
    """Where the alignment journal of ``dataset`` lives (inside the workspace's ``.ferdata/``)."""
    return ws.internal / "align" / f"{dataset}.jsonl"


def discard_journal(ws, dataset: str) -> None:
    """Remove ``dataset``'s alignment journal: call it once the aligned manifest is saved."""
    journal_path(ws, dataset).unlink(missing_ok=True)


class _Journal:
    """Finished rows of an alignment run, one JSON line each, appended after every batch.

    The first line holds the settings key; a journal written under other settings is started
    afresh. Lines are only ever appended, each batch in one write; a line cut short by a kill is
    ignored on reading and cut off before the next append, so an interrupted run (kill -9 or
    Ctrl-C) always leaves a journal that reads back as the rows it finished.
    """

    SYNC_EVERY_S = 2.0

    def __init__(self, path: Path, key: dict[str, Any], resume: bool) -> None:
        self.path = path
        self.key = json.loads(json.dumps(key))
        self._matching = False  # the file on disk was written under the same settings
        self.entries: dict[str, dict[str, Any]] = self._read() if resume else {}
        self._fd: int | None = None
        self._synced = time.monotonic()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = self.path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return {}
        lines = data.split(b"\n")
        try:
            header = json.loads(lines[0])
        except ValueError:
            return {}
        if not isinstance(header, dict) or header.get("key") != self.key:
            return {}
        self._matching = True
        entries = {}
        for line in lines[1:-1]:  # the part after the last newline is a line cut short, if any
            try:
                entry = json.loads(line)
                entries[entry["image_id"]] = entry
            except (ValueError, KeyError, TypeError):
                continue
        return entries

    def open(self) -> None:
        with disk_errors(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._matching:
                with self.path.open("rb+") as fh:  # cut a torn last line before appending after it
                    data = fh.read()
                    fh.truncate(data.rfind(b"\n") + 1)
            else:
                header = json.dumps({"journal": "ferdata align", "key": self.key}, sort_keys=True).encode() + b"\n"
                atomic_write_bytes(self.path, header)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def append(self, entries: list[dict[str, Any]]) -> None:
        if self._fd is None or not entries:
            return
        data = b"".join(json.dumps(e, sort_keys=True, separators=(",", ":")).encode() + b"\n" for e in entries)
        with disk_errors(self.path):
            os.write(self._fd, data)
            if time.monotonic() - self._synced > self.SYNC_EVERY_S:
                os.fsync(self._fd)
                self._synced = time.monotonic()

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def reusable(self, image_id: str, original_path: str, sha256: str, ws) -> dict[str, Any] | None:
        """The journal's result for this row, when it is for the same file and still complete."""
        entry = self.entries.get(image_id)
        if entry is None or entry.get("original_path") != original_path or entry.get("sha256") != sha256:
            return None
        values = entry.get("values") or {}
        status = values.get("face_status")
        if status == "aligned":
            aligned = values.get("aligned_path")
            return values if aligned and ws.absolute(aligned).is_file() else None
        # Unreadable rows are cheap to try again, and their file may have been put right since.
        return values if status in ("registered", "no_face") else None


# ----------------------------------------------------------------------------- the run


@writes_workspace("align")
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
    registered: bool | None = None,
    resume: bool = True,
    progress: ProgressFn | None = None,
    batch_size: int = 8,
    det_size: int = 640,
    workers: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    ray_actors: int | None = None,
    preloaded: Detector | None = None,
) -> tuple[Manifest, AlignReport]:
    """Detect and align every row's ``original_path`` (relative to ``ws.root``).

    Returns a NEW Manifest with ``face_status``, ``det_score``, ``n_faces``, ``bbox``,
    ``landmarks``, ``aligned_path``, ``width`` and ``height`` filled (and ``face_error`` for
    unreadable and registered rows); no row is dropped. Aligned PNGs are written atomically under
    ``ws.aligned_dir(dataset)/<size>px/``, named by the SHA-256 of their bytes.
    ``provenance['align']`` records the detector, model file and hash, the provider that ran it,
    the size, the thresholds, and for a registered source the mean landmark shape and the rows it
    comes from. ``only_missing`` processes only rows not yet run and aligned rows whose crop file
    is gone. ``detector`` may also be a loaded detector (from
    :func:`ferdata.vision.detectors.load_detector`), to share one across several calls;
    ``preloaded`` is :func:`load_run_detector`'s detector for these arguments, already loaded
    (ingest loads it while it extracts, off the critical path).

    ``registered`` says whether the source is delivered as registered face crops (None: as its
    ``manifests/<dataset>.toml`` says); see the module's docstring. ``resume`` (the default)
    takes the rows that the journal of an interrupted run with the same settings holds instead of
    detecting them again; ``resume=False`` starts afresh. Call :func:`discard_journal` after
    saving the returned manifest.

    ``engine="ray"`` runs detection and alignment on a Ray cluster (:mod:`ferdata.align_ray`;
    the optional extra ``ferdata[ray]``): ``ray_address`` is the cluster (``auto``, or
    ``HOST:PORT``; None: the Ray this process is connected to, else a local one started for the
    call), ``ray_actors`` the number of detector actors. The results are the same as the local
    engine's, and the journal and resuming work the same way.
    """
    if face_choice not in FACE_CHOICES:
        raise UsageError(f"face_choice={face_choice!r} is not one of {', '.join(FACE_CHOICES)}")
    if not 32 <= size <= 1024:
        raise UsageError(f"size={size} is out of range: use 112 (the standard), 224, or another size from 32 to 1024")
    if batch_size < 1 or det_size < 128:
        raise UsageError("batch_size must be 1 or more and det_size 128 or more")
    if engine not in ENGINES:
        raise UsageError(f"engine={engine} is not one of {', '.join(ENGINES)}")
    if engine == "ray":
        from .align_ray import import_ray

        import_ray()  # without the extra, say so before any work
        if not isinstance(detector, str):
            raise UsageError(
                "engine='ray' loads the detector on every Ray worker: give detector= as a name, not a loaded detector"
            )
    progress = progress or null_progress
    registered_from = "argument" if registered is not None else f"manifests/{manifest.dataset}.toml"
    if registered is None:
        registered = registered_by_default(manifest.dataset)
    if preloaded is not None:
        model = preloaded
    elif isinstance(detector, str):
        model = load_run_detector(detector, model_dir, device, engine)
    else:
        model = detector
    provider = model.provider
    model_sha256 = _model_digest(model.model_file)
    tries = [asdict(a) for a in (*attempts_for(det_size + 1, det_size), *attempts_for(48, det_size))]
    frame = manifest.frame
    todo = _rows_to_do(ws, frame, only_missing)
    out_dir = ws.aligned_dir(manifest.dataset) / f"{size}px"
    workers = workers or max(2, os.cpu_count() or 2)
    started = time.perf_counter()

    from . import __version__

    journal = _Journal(
        journal_path(ws, manifest.dataset),
        {
            "version": JOURNAL_VERSION,
            "ferdata": __version__,
            "dataset": manifest.dataset,
            "size": size,
            "detector": model.name,
            "model_sha256": model_sha256,
            "det_size": det_size,
            "face_choice": face_choice,
            "registered": registered,
            "attempts": tries,
        },
        resume,
    )
    identity = {i: (frame["image_id"].iat[i], frame["original_path"].iat[i], frame["sha256"].iat[i]) for i in todo}
    results: dict[int, dict[str, Any]] = {}
    for i in todo:
        values = journal.reusable(*identity[i], ws)
        if values is not None:
            results[i] = values
    resumed = len(results)
    to_detect = [i for i in todo if i not in results]
    chunks = [to_detect[i : i + batch_size] for i in range(0, len(to_detect), batch_size)]
    progress("align", resumed, len(todo))
    if to_detect:
        journal.open()
    try:
        if engine == "ray" and to_detect:
            from .align_ray import align_on_ray

            done_on_ray = resumed

            def record_batch(batch: list[tuple[int, dict[str, Any]]]) -> None:
                nonlocal done_on_ray
                fresh = [(row, values) for row, values in batch if row not in results]  # a retried batch
                for row, values in fresh:
                    results[row] = values
                journal.append(
                    [
                        {
                            "image_id": identity[r][0],
                            "original_path": identity[r][1],
                            "sha256": identity[r][2],
                            "values": v,
                        }
                        for r, v in fresh
                    ]
                )
                done_on_ray += len(fresh)
                progress("align", done_on_ray, len(todo))

            work = functools.partial(
                align_images,
                ws_root=ws.root,
                out_dir=out_dir,
                size=size,
                det_size=det_size,
                face_choice=face_choice,
                registered=registered,
            )
            assert isinstance(detector, str)  # a loaded detector was refused above
            provider = align_on_ray(
                [(i, ws.absolute(identity[i][1])) for i in to_detect],
                work,
                detector=detector,
                model_dir=model_dir,
                device=device,
                batch_size=batch_size,
                on_batch=record_batch,
                address=ray_address,
                actors=ray_actors,
            )
            chunks = []  # nothing left for the local pipeline below but the registered crops
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ferdata-align") as pool:

            def submit_loads(chunk: list[int]) -> list[Future]:
                return [pool.submit(_load, _Job(row=i, path=ws.absolute(identity[i][1])), det_size) for i in chunk]

            def collect(futures: list[Future]) -> None:
                finished = []
                for future in futures:
                    row, values = future.result()
                    results[row] = values
                    image_id, original_path, sha256 = identity[row]
                    finished.append(
                        {"image_id": image_id, "original_path": original_path, "sha256": sha256, "values": values}
                    )
                journal.append(finished)

            def finish(job: _Job) -> tuple[int, dict[str, Any]]:
                return job.row, _finish(job, ws.root, out_dir, size, face_choice, registered)

            loading: deque[list[Future]] = deque(submit_loads(c) for c in chunks[:2])
            finishing: deque[list[Future]] = deque()
            next_chunk, done = len(loading), resumed
            while loading:
                jobs = [f.result() for f in loading.popleft()]
                if next_chunk < len(chunks):
                    loading.append(submit_loads(chunks[next_chunk]))
                    next_chunk += 1
                _detect(model, jobs, det_size, registered)
                finishing.append([pool.submit(finish, job) for job in jobs])
                while len(finishing) > 2:
                    collect(finishing.popleft())
                done += len(jobs)
                progress("align", done, len(todo))
            while finishing:
                collect(finishing.popleft())

            new_frame = _apply(frame, results)
            shape, shape_rows = DEFAULT_REGISTERED_SHAPE, 0
            if registered:
                shape, shape_rows = mean_landmark_shape(new_frame)
                new_frame = _warp_registered(ws, new_frame, results, shape, size, out_dir, pool, progress)
    finally:
        journal.close()
    seconds = time.perf_counter() - started

    counts: dict[str, int] = {}
    for values in results.values():
        counts[values["face_status"]] = counts.get(values["face_status"], 0) + 1
    provenance = dict(manifest.provenance)
    record: dict[str, Any] = {
        "detector": model.name,
        "requested_detector": detector if isinstance(detector, str) else model.name,
        "model_file": model.model_file,
        "model_sha256": model_sha256,
        "provider": provider,
        "engine": engine,
        "device": device,
        "size": size,
        "template": [[float(v) for v in p] for p in TEMPLATE_112],
        "det_size": det_size,
        "face_choice": face_choice,
        "attempts": tries,
        "nms_iou": 0.4,
        "only_missing": only_missing,
        "rows_processed": len(todo),
        "counts": dict(sorted(counts.items())),
        "status_counts": {k: int(v) for k, v in sorted(new_frame["face_status"].value_counts().items())},
        "registered": registered,
        "registered_from": registered_from,
    }
    if registered:
        record["mean_shape"] = {
            "points": [[float(x), float(y)] for x, y in shape],
            "rows": shape_rows,
            "from": "aligned rows"
            if shape_rows >= MIN_SHAPE_ROWS
            else f"default (fewer than {MIN_SHAPE_ROWS} aligned rows)",
            "coordinates": "x / width, y / height",
        }
        record["plausibility"] = {"min_eye_distance": MIN_EYE_DISTANCE, "max_centre_offset": MAX_CENTRE_OFFSET}
    provenance["align"] = record
    report = AlignReport(
        counts=dict(sorted(counts.items())),
        processed=len(todo),
        seconds=seconds,
        provider=provider,
        detector=model.name,
        model_file=model.model_file,
        resumed=resumed,
        registered=registered,
        shape_rows=shape_rows,
        dataset=manifest.dataset,
    )
    return Manifest(dataset=manifest.dataset, frame=new_frame, provenance=provenance), report


def _warp_registered(ws, frame, results, shape, size: int, out_dir: Path, pool, progress):
    """``frame`` with every registered row warped with ``shape``: the rows of this run, and those
    of earlier runs whose crop was made with another shape or is gone. Updates ``results``."""
    updates: dict[int, dict[str, Any]] = {}
    futures = []
    for index in np.flatnonzero((frame["face_status"] == "registered").to_numpy()):
        i = int(index)
        if frame["source"].iat[i].startswith(SYNTHETIC_SOURCE_PREFIX):
            continue
        width, height = int(frame["width"].iat[i]), int(frame["height"].iat[i])
        wanted = [float(v) for v in (shape * np.array([width, height], dtype=np.float64)).reshape(-1)]
        current, aligned = frame["landmarks"].iat[i], frame["aligned_path"].iat[i]
        same = isinstance(current, (list, np.ndarray)) and [float(v) for v in current] == wanted
        if i not in results and same and aligned and ws.absolute(aligned).is_file():
            continue
        path = ws.absolute(frame["original_path"].iat[i])
        futures.append((i, pool.submit(_register, path, width, height, shape, size, out_dir, ws.root)))
    for k, (i, future) in enumerate(futures):
        row = {name: frame[name].iat[i] for name in _RESULT_COLUMNS}
        row.update({"det_score": None, "bbox": None, "landmarks": None, "aligned_path": None})
        row.update(future.result())
        updates[i] = row
        if i in results:
            results[i] = row
        progress("registered crops", k + 1, len(futures))
    return _apply(frame, updates) if updates else frame


_RESULT_COLUMNS = (
    "face_status",
    "det_score",
    "n_faces",
    "bbox",
    "landmarks",
    "aligned_path",
    "width",
    "height",
    ERROR_COLUMN,
)


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


@writes_workspace("align")
def align(
    ws: WorkspaceLike,
    *,
    dataset: str | None = None,
    detector: str | Detector = "retinaface",
    model_dir: str | os.PathLike[str] | None = None,
    size: int = 112,
    device: str = "auto",
    face_choice: str = "largest",
    only_missing: bool = False,
    registered: bool | None = None,
    restart: bool = False,
    engine: str = "local",
    ray_address: str | None = None,
    ray_actors: int | None = None,
    progress: ProgressFn | None = None,
) -> AlignReport:
    """Detect and align the faces of a workspace's dataset and save its manifest.

    The step ``ferdata align`` runs: :func:`align_manifest` on the manifest of ``dataset`` (the
    only one when None), the result saved atomically and the alignment journal discarded. A run
    that was interrupted resumes from its journal unless ``restart``. ``engine="ray"`` runs on a
    Ray cluster (``ray_address``, ``ray_actors``; see :func:`align_manifest`).
    """
    ws = Workspace.of(ws)
    manifest = ws.load(dataset)
    aligned, report = align_manifest(
        ws,
        manifest,
        detector=detector,
        model_dir=Path(model_dir) if model_dir is not None else None,
        size=size,
        device=device,
        face_choice=face_choice,
        only_missing=only_missing,
        registered=registered,
        resume=not restart,
        engine=engine,
        ray_address=ray_address,
        ray_actors=ray_actors,
        progress=progress,
    )
    ws.save(aligned)
    discard_journal(ws, aligned.dataset)
    return report

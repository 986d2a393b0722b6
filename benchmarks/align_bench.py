"""Alignment throughput against the naive loop, measured side by side in one run.

The naive loop is what a first script does, one image at a time: full decode with OpenCV
(``cv2.imread``: libjpeg-turbo, EXIF orientation applied; the fastest decoder a user would pick)
-> resize to the detector's 640 pixels -> detect -> warp from the full-size image -> PNG file.
ferdata decodes JPEGs at a reduced DCT scale, detects in batches, and decodes, warps and writes
on a thread pool while the detector runs.

Four measurements:

1. camera photos, end to end (``--camera``, default 24: 12 to 48 MP JPEGs with sensor-like noise
   and one real face each, made by ``camera_photos.py``): ``ingest(ws, folder, align=True)`` (the
   originals copied, hashed and committed, then every face aligned) against the naive loop, each
   in a fresh interpreter (importing and loading the model included), taking turns for
   ``--rounds`` rounds; printed with the floors measured alongside: decoding every photo (full
   and 1/8 DCT scale), detection alone, and reading and hashing the bytes;
2. big photos (12, 24 and 48 MP JPEGs made from real photos, ``--big`` per size): images/s of
   ``align_manifest`` and of the naive loop sharing one loaded detector, and whether the
   detections agree (same number of faces, landmark gap over the eye distance);
3. 48x48 grayscale faces (FER2013-like crops of real faces): images/s and share of faces found;
4. peak memory (max RSS of a fresh process) of align_manifest over N and 4N big photos.

Run: python benchmarks/align_bench.py [--camera 24] [--rounds 3] [--big 3] [--small 200] [--memory 8]
     (``--camera 0``, ``--big 0``, ``--small 0``, ``--memory 0`` skip a part)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ferdata.align import align_manifest
from ferdata.schema import Manifest, new_frame
from ferdata.vision.align import template
from ferdata.vision.detectors import load_detector
from ferdata.workspace import Workspace

DATASET = "imagefolder"


def real_photos() -> list[np.ndarray]:
    import insightface
    import skimage.data

    images = Path(insightface.__file__).parent / "data" / "images"
    return [
        skimage.data.astronaut(),
        np.asarray(Image.open(images / "t1.jpg").convert("RGB")),
        np.asarray(Image.open(images / "Tom_Hanks_54745.png").convert("RGB")),
    ]


def big_jpeg(photo: np.ndarray, megapixels: float) -> bytes:
    """``photo`` enlarged to about ``megapixels`` in a 3:2 frame (a camera's), as a JPEG."""
    height = int(round((megapixels * 1e6 / 1.5) ** 0.5))
    width = int(round(height * 1.5))
    frame = np.full((height, width, 3), 170, np.uint8)
    scale = min(height / photo.shape[0], width / photo.shape[1])
    resized = cv2.resize(photo, (int(photo.shape[1] * scale), int(photo.shape[0] * scale)), interpolation=cv2.INTER_LINEAR)
    y, x = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
    frame[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return data.tobytes()


def small_faces(detector, count: int, seed: int = 0) -> list[np.ndarray]:
    """FER2013-like 48x48 grayscale crops of the real faces in the photos, jittered."""
    rng = np.random.default_rng(seed)
    sources = []
    for photo in real_photos():
        for face in detector.detect([photo], 640, 0.8)[0]:
            sources.append((photo, face.box))
    crops = []
    for k in range(count):
        photo, (x1, y1, x2, y2) = sources[k % len(sources)]
        side = (x2 - x1) * rng.uniform(0.95, 1.2)
        cx = (x1 + x2) / 2 + rng.uniform(-0.06, 0.06) * side
        cy = (y1 + y2) / 2 + rng.uniform(-0.02, 0.1) * side
        box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]).round().astype(int)
        box = np.clip(box, 0, [photo.shape[1], photo.shape[0], photo.shape[1], photo.shape[0]])
        crop = photo[box[1] : box[3], box[0] : box[2]]
        gray = cv2.cvtColor(cv2.resize(crop, (48, 48), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        crops.append(gray[:, ::-1].copy() if k % 2 else gray)
    return crops


def workspace_with(root: Path, files: dict[str, bytes]) -> Workspace:
    ws = Workspace.resolve(root)
    folder = ws.originals_dir(DATASET)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        rows.append(dict(image_id=name, dataset=DATASET, source=name, sha256="0" * 64, label_original="happy",
                         label="happy", original_path=f"originals/{DATASET}/{name}", width=0, height=0))
    ws.save(Manifest(DATASET, new_frame(rows)))
    return ws


def naive_loop(detector, paths: list[Path], out: Path, size: int = 112) -> tuple[float, list]:
    """Full decode -> resize to 640 -> detect -> warp from the full image -> PNG file, one at a time."""
    from ferdata.vision.align import similarity_transform

    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR, EXIF orientation applied
        factor = 640 / max(image.shape[:2])
        small = cv2.resize(image, (round(image.shape[1] * factor), round(image.shape[0] * factor)), interpolation=cv2.INTER_AREA)
        faces = detector.detect([cv2.cvtColor(small, cv2.COLOR_BGR2RGB)], 640, 0.8)[0]
        if not faces:
            results.append(None)
            continue
        face = max(faces, key=lambda f: f.area).mapped(factor)
        matrix = similarity_transform(face.landmarks, template(size))
        cv2.imwrite(str(out / f"{path.stem}.png"), cv2.warpAffine(image, matrix, (size, size)))
        results.append((len(faces), face.landmarks))
    return time.perf_counter() - started, results


OURS_CAMERA = """
import sys
from pathlib import Path
from ferdata.ingest import ingest
from ferdata.workspace import Workspace
result = ingest(Workspace.resolve(sys.argv[2]), Path(sys.argv[1]), dataset="imagefolder", align_options={"device": "cpu"})
print(result.align_report.counts.get("aligned", 0))
"""

NAIVE_CAMERA = """
import sys
from pathlib import Path
import cv2
from ferdata.vision.align import similarity_transform, template
from ferdata.vision.detectors import load_detector
detector = load_detector("retinaface", device="cpu")
out = Path(sys.argv[2]); out.mkdir(parents=True)
found = 0
for path in sorted(Path(sys.argv[1]).rglob("*.jpg")):
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR, EXIF orientation applied
    factor = 640 / max(image.shape[:2])
    small = cv2.resize(image, (round(image.shape[1] * factor), round(image.shape[0] * factor)), interpolation=cv2.INTER_AREA)
    faces = detector.detect([cv2.cvtColor(small, cv2.COLOR_BGR2RGB)], 640, 0.8)[0]
    if faces:
        face = max(faces, key=lambda f: f.area).mapped(factor)
        matrix = similarity_transform(face.landmarks, template(112))
        cv2.imwrite(str(out / f"{path.stem}.png"), cv2.warpAffine(image, matrix, (112, 112)))
        found += 1
print(found)
"""

# Floors: each prints the seconds of its own work (the interpreter's start and imports excluded).
FLOOR_DECODE = """
import sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import cv2, numpy as np
flag = {"full": cv2.IMREAD_COLOR, "1/8": cv2.IMREAD_REDUCED_COLOR_8}[sys.argv[2]]
paths = sorted(Path(sys.argv[1]).rglob("*.jpg"))
data = [p.read_bytes() for p in paths]
start = time.perf_counter()
with ThreadPoolExecutor(int(sys.argv[3])) as pool:
    list(pool.map(lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), flag).shape, data))
print(time.perf_counter() - start)
"""

FLOOR_DETECT = """
import sys, time
from pathlib import Path
import cv2, numpy as np
from ferdata.vision.detectors import load_detector
detector = load_detector("retinaface", device="cpu")
images = []
for p in sorted(Path(sys.argv[1]).rglob("*.jpg")):
    small = cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_REDUCED_COLOR_8), cv2.COLOR_BGR2RGB)
    f = 640 / max(small.shape[:2])
    images.append(cv2.resize(small, (round(small.shape[1] * f), round(small.shape[0] * f)), interpolation=cv2.INTER_AREA))
start = time.perf_counter()
for k in range(0, len(images), 8):
    detector.detect(images[k:k + 8], 640, 0.8)
print(time.perf_counter() - start)
"""

FLOOR_COPY = """
import hashlib, os, sys, time
from pathlib import Path
paths = sorted(Path(sys.argv[1]).rglob("*.jpg"))
out = Path(sys.argv[2]); out.mkdir(parents=True)
start = time.perf_counter()
for k, p in enumerate(paths):
    data = p.read_bytes()
    hashlib.sha256(data).hexdigest()
    (out / f"{k}.jpg").write_bytes(data)
os.sync()
print(time.perf_counter() - start)
"""


def bench_camera(count: int, rounds: int, data_dir: Path, workdir: Path) -> None:
    """Camera photos end to end: ferdata ingest + align against the naive OpenCV loop (see the docstring)."""
    import statistics

    from camera_photos import make_photos
    from side_by_side import Contender, report, run_measured, take_turns

    photos = data_dir / f"camera-{count}"
    if not photos.exists():
        print(f"making {count} camera photos in {photos}...", flush=True)
        make_photos(photos.with_name(photos.name + ".part"), count)
        photos.with_name(photos.name + ".part").rename(photos)
    files = sorted(photos.rglob("*.jpg"))
    megapixels = [Image.open(p).size for p in files]
    print(f"\n{len(files)} camera photos, {min(w * h for w, h in megapixels) / 1e6:.0f} to "
          f"{max(w * h for w, h in megapixels) / 1e6:.0f} MP, {sum(p.stat().st_size for p in files) / 2**20:.0f} MiB "
          f"({8 * sum(p.stat().st_size for p in files) / sum(w * h for w, h in megapixels):.1f} bits per pixel): {rounds} rounds", flush=True)
    ours = Contender("ferdata ingest (+ align)", OURS_CAMERA)
    base = Contender("naive OpenCV loop", NAIVE_CAMERA)

    def prepare(contender: Contender, k: int) -> list[str]:
        out = workdir / f"{'ours' if contender is ours else 'naive'}-camera-{k}"
        return [str(photos), str(out)]

    take_turns([ours, base], rounds, prepare)
    for contender in (ours, base):
        found = {r.output.strip().splitlines()[-1] for r in contender.runs}
        print(f"  {contender.name}: faces aligned per run {', '.join(sorted(found))} of {len(files)}")
    floor_rounds = max(1, rounds // 2)

    def floor(code: str, *args: str) -> float:
        return statistics.median(float(run_measured(code, list(args)).output.split()[-1]) for _ in range(floor_rounds))

    floors = {
        "full decode of every photo (OpenCV, 1 thread: what the naive loop decodes)": floor(FLOOR_DECODE, str(photos), "full", "1"),
        "1/8 DCT-scaled decode of every photo (OpenCV, 2 threads)": floor(FLOOR_DECODE, str(photos), "1/8", "2"),
        "detection alone, every photo at 640 pixels (batches of 8)": floor(FLOOR_DETECT, str(photos)),
        "reading, hashing and copying the bytes, then one sync": statistics.median(
            float(run_measured(FLOOR_COPY, [str(photos), str(workdir / f"floor-copy-{k}")]).output.split()[-1]) for k in range(floor_rounds)),
    }
    report(f"{len(files)} camera photos, ingest + align", ours, base, floors)


def bench_big(per_size: int, workdir: Path) -> dict:
    detector = load_detector("retinaface", device="cpu")
    photos = real_photos()
    files = {}
    for mp in (12, 24, 48):
        for k in range(per_size):
            files[f"{mp}mp_{k}.jpg"] = big_jpeg(photos[k % len(photos)], mp)
    ws = workspace_with(workdir / "big", files)
    paths = [ws.originals_dir(DATASET) / name for name in files]
    naive_seconds, naive = naive_loop(detector, paths, workdir / "naive-big")
    started = time.perf_counter()  # both sides get the same loaded detector: its load is not timed
    result, report = align_manifest(ws, ws.load(), detector=detector)
    ours_seconds = time.perf_counter() - started
    gaps, same_count = [], 0
    for n_naive_landmarks, (_, row) in zip(naive, result.frame.iterrows()):
        if n_naive_landmarks is None or row["face_status"] != "aligned":
            same_count += int(n_naive_landmarks is None and row["face_status"] != "aligned")
            continue
        n_faces, landmarks = n_naive_landmarks
        same_count += int(n_faces == row["n_faces"])
        ours = np.asarray(row["landmarks"]).reshape(5, 2)
        gaps.append(float(np.linalg.norm(ours - landmarks, axis=1).max() / np.linalg.norm(landmarks[1] - landmarks[0])))
    return {
        "images": len(files),
        "naive_images_per_s": len(files) / naive_seconds,
        "ours_images_per_s": len(files) / ours_seconds,
        "ratio": naive_seconds / ours_seconds,
        "same_face_count": f"{same_count}/{len(files)}",
        "max_landmark_gap_over_eye_distance": max(gaps) if gaps else None,
    }


def bench_small(count: int, workdir: Path) -> dict:
    detector = load_detector("retinaface", device="cpu")
    crops = small_faces(detector, count)
    files = {}
    for k, crop in enumerate(crops):
        ok, data = cv2.imencode(".png", crop)
        files[f"{k:05d}.png"] = data.tobytes()
    ws = workspace_with(workdir / "small", files)
    paths = [ws.originals_dir(DATASET) / name for name in files]
    naive_seconds, naive = naive_loop(detector, paths, workdir / "naive-small")
    started = time.perf_counter()
    result, report = align_manifest(ws, ws.load(), detector=detector)
    ours_seconds = time.perf_counter() - started
    return {
        "images": count,
        "naive_images_per_s": count / naive_seconds,
        "ours_images_per_s": count / ours_seconds,
        "ratio": naive_seconds / ours_seconds,
        "naive_found": sum(r is not None for r in naive) / count,
        "ours_found": report.counts.get("aligned", 0) / count,
    }


def memory_run(count: int, photo: Path) -> None:
    """In a fresh process: align ``count`` rows that all point at one 24 MP JPEG; print max RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        ws = workspace_with(Path(tmp), {"photo.jpg": photo.read_bytes()})
        one = ws.load().frame
        rows = [dict(one.iloc[0]) | {"image_id": f"r{k}", "source": f"r{k}"} for k in range(count)]
        align_manifest(ws, Manifest(DATASET, new_frame(rows)), device="cpu")
    print(json.dumps({"rows": count, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def bench_memory(count: int, workdir: Path) -> dict:
    photo = workdir / "24mp.jpg"
    photo.write_bytes(big_jpeg(real_photos()[0], 24))
    peaks = {}
    for n in (count, 4 * count):
        command = [sys.executable, __file__, "--memory-run", str(n), "--photo", str(photo)]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        peaks[n] = json.loads(out.stdout.strip().splitlines()[-1])["max_rss_mb"]
    return {"rows": list(peaks), "max_rss_mb": [round(v) for v in peaks.values()], "growth": peaks[4 * count] / peaks[count]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camera", type=int, default=24, help="camera photos for the end-to-end comparison (0: skip)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the end-to-end comparison")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent / ".bench" / "align-data",
                        help="where generated camera photos are kept between runs")
    parser.add_argument("--big", type=int, default=3, help="photos per size (12, 24, 48 MP)")
    parser.add_argument("--small", type=int, default=200, help="48x48 faces")
    parser.add_argument("--memory", type=int, default=8, help="rows in the small memory run (the large has 4x)")
    parser.add_argument("--memory-run", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--photo", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_run:
        memory_run(args.memory_run, args.photo)
        return
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent, prefix=".align-bench-") as tmp:
        if args.camera:
            bench_camera(args.camera, args.rounds, args.data, Path(tmp))
        if args.big:
            big = bench_big(args.big, Path(tmp))
            print(f"\nbig photos ({big['images']} JPEGs, 12/24/48 MP), one loaded detector: naive {big['naive_images_per_s']:.2f} img/s, "
                  f"ferdata {big['ours_images_per_s']:.2f} img/s, ratio {big['ratio']:.1f}x; "
                  f"same face count {big['same_face_count']}, max landmark gap {big['max_landmark_gap_over_eye_distance']:.3f} of the eye distance")
        if args.small:
            small = bench_small(args.small, Path(tmp))
            print(f"48x48 faces ({small['images']}): naive {small['naive_images_per_s']:.1f} img/s found {small['naive_found']:.1%}, "
                  f"ferdata {small['ours_images_per_s']:.1f} img/s found {small['ours_found']:.1%}, ratio {small['ratio']:.1f}x")
        if args.memory:
            memory = bench_memory(args.memory, Path(tmp))
            print(f"peak memory: {memory['rows'][0]} rows {memory['max_rss_mb'][0]} MB, {memory['rows'][1]} rows "
                  f"{memory['max_rss_mb'][1]} MB (x{memory['growth']:.2f})")


if __name__ == "__main__":
    main()

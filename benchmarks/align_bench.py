"""Alignment throughput against the naive loop, measured side by side in one run.

The naive loop is what a first script does, one image at a time: full decode (Pillow, EXIF
applied) -> resize to the detector's 640 pixels -> detect -> warp from the full-size image ->
PNG. ferdata's ``align_manifest`` decodes JPEGs at a reduced DCT scale, detects in batches and
decodes, warps and writes on a thread pool while the detector runs.

Three measurements:

1. big photos (12, 24 and 48 MP JPEGs made from real photos): images/s of both, the ratio, and
   whether the detections agree (same number of faces, landmark gap over the eye distance);
2. 48x48 grayscale faces (FER2013-like crops of real faces): images/s and share of faces found;
3. peak memory (max RSS of a fresh process) of align_manifest over N and 4N big photos.

Run: python benchmarks/align_bench.py [--big 3] [--small 200] [--memory 8]
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
from PIL import Image, ImageOps

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


def naive_loop(detector, paths: list[Path], size: int = 112) -> tuple[float, list]:
    """Full decode -> resize to 640 -> detect -> warp from the full image, one at a time."""
    from ferdata.vision.align import similarity_transform

    started = time.perf_counter()
    results = []
    for path in paths:
        image = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        factor = 640 / max(image.shape[:2])
        small = cv2.resize(image, (round(image.shape[1] * factor), round(image.shape[0] * factor)), interpolation=cv2.INTER_AREA)
        faces = detector.detect([small], 640, 0.8)[0]
        if not faces:
            results.append(None)
            continue
        face = max(faces, key=lambda f: f.area).mapped(factor)
        matrix = similarity_transform(face.landmarks, template(size))
        crop = cv2.warpAffine(image, matrix, (size, size))
        cv2.imencode(".png", crop)
        results.append((len(faces), face.landmarks))
    return time.perf_counter() - started, results


def bench_big(per_size: int, workdir: Path) -> dict:
    detector = load_detector("retinaface", device="cpu")
    photos = real_photos()
    files = {}
    for mp in (12, 24, 48):
        for k in range(per_size):
            files[f"{mp}mp_{k}.jpg"] = big_jpeg(photos[k % len(photos)], mp)
    ws = workspace_with(workdir / "big", files)
    paths = [ws.originals_dir(DATASET) / name for name in files]
    naive_seconds, naive = naive_loop(detector, paths)
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
    naive_seconds, naive = naive_loop(detector, paths)
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
    parser.add_argument("--big", type=int, default=3, help="photos per size (12, 24, 48 MP)")
    parser.add_argument("--small", type=int, default=200, help="48x48 faces")
    parser.add_argument("--memory", type=int, default=8, help="rows in the small memory run (the large has 4x)")
    parser.add_argument("--memory-run", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--photo", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_run:
        memory_run(args.memory_run, args.photo)
        return
    with tempfile.TemporaryDirectory() as tmp:
        big = bench_big(args.big, Path(tmp))
        print(f"big photos ({big['images']} JPEGs, 12/24/48 MP): naive {big['naive_images_per_s']:.2f} img/s, "
              f"ferdata {big['ours_images_per_s']:.2f} img/s, ratio {big['ratio']:.1f}x; "
              f"same face count {big['same_face_count']}, max landmark gap {big['max_landmark_gap_over_eye_distance']:.3f} of the eye distance")
        small = bench_small(args.small, Path(tmp))
        print(f"48x48 faces ({small['images']}): naive {small['naive_images_per_s']:.1f} img/s found {small['naive_found']:.1%}, "
              f"ferdata {small['ours_images_per_s']:.1f} img/s found {small['ours_found']:.1%}, ratio {small['ratio']:.1f}x")
        memory = bench_memory(args.memory, Path(tmp))
    print(f"peak memory: {memory['rows'][0]} rows {memory['max_rss_mb'][0]} MB, {memory['rows'][1]} rows "
          f"{memory['max_rss_mb'][1]} MB (x{memory['growth']:.2f})")


if __name__ == "__main__":
    main()

"""The Ray engine against the local engine on the same images in the same run.

The images (``tests/face_photos.py``'s ``benchmark_folder``): every real photo the tests have
(insightface's group, single and masked pictures, the astronaut, dlib's photos) at 1280, 800 and
480 pixels, the rest FER2013-like 48x48 crops of the real faces; 1,120 by default. One ingested,
unaligned workspace is copied for each run. Timed: ``align_manifest`` from call to return (the
detector loaded, every crop written, the manifest merged), and apart from it the start of a local
Ray cluster (``ray.init``).

Prints each run's time and images/s, the Ray engine's time over the local engine's, and the
target (issue 18): Ray <= 1.2 x local + 15 s for starting Ray. Then the scaling curve, one run per
actor count (``--actors``), and the per-image costs behind docs/scale-out.md's estimate for GPU
nodes: decode and detector time per image, and the bytes each image moves (original read, crop
written, result sent to the driver). Checks that every Ray run's results equal the local run's.

    python benchmarks/ray_bench.py [--images 1120] [--actors 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from face_photos import benchmark_folder  # noqa: E402

from ferdata.align import align_manifest  # noqa: E402
from ferdata.ingest import ingest  # noqa: E402
from ferdata.workspace import Workspace  # noqa: E402

COLUMNS = ["image_id", "face_status", "det_score", "n_faces", "bbox", "landmarks", "aligned_path", "face_error", "width", "height"]


def run(base: Path, target: Path, **options):
    ws = Workspace(shutil.copytree(base, target))
    start = time.perf_counter()
    manifest, report = align_manifest(ws, ws.load("imagefolder"), device="cpu", resume=False, **options)
    return time.perf_counter() - start, manifest, report, ws


def detector_gmac(canvas: int) -> float:
    """Multiply-accumulates (billions) of the bundled RetinaFace's convolutions on one square
    ``canvas``-pixel image, from the ONNX graph's shapes (needs the ``onnx`` package)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper, shape_inference
    from retinaface.weights import WEIGHTS

    model = onnx.load_from_string(WEIGHTS)
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, 3, canvas, canvas)):
        dim.ClearField("dim_param")
        dim.dim_value = value
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*model.graph.value_info, *model.graph.output)}
    shapes |= {i.name: list(i.dims) for i in model.graph.initializer}
    shapes |= {n.output[0]: list(numpy_helper.to_array(n.attribute[0].t).shape) for n in model.graph.node if n.op_type == "Constant"}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    return sum(float(np.prod(shapes[n.output[0]]) * np.prod(shapes[n.input[1]][1:])) for n in convs) / 1e9


KINDS = {"photo": lambda f: f["width"] > 100, "crop": lambda f: f["width"] <= 100}


def per_image_costs(ws: Workspace, frame, sample: int = 60) -> dict[str, float]:
    """Milliseconds per image on this machine, photos and crops apart: decode, the detector's
    first try, and warp + PNG encode + write of the crop."""
    import numpy as np

    from ferdata.align import attempts_for, detect_attempt
    from ferdata.vision.align import warp
    from ferdata.vision.decode import decode
    from ferdata.vision.detectors import load_detector
    from ferdata.vision.encode import write_crop

    detector = load_detector("retinaface", device="cpu")
    costs = {}
    for kind, chosen in KINDS.items():
        rows = frame[chosen(frame) & (frame["face_status"] == "aligned")].head(sample)
        paths = [ws.absolute(p) for p in rows["original_path"]]
        start = time.perf_counter()
        decoded = [decode(p, min_long_side=640) for p in paths]
        costs[f"{kind}_decode_ms"] = 1000 * (time.perf_counter() - start) / len(paths)
        start = time.perf_counter()
        for d in decoded:
            detect_attempt(detector, [d.rgb], attempts_for(max(d.rgb.shape[:2]))[0])
        costs[f"{kind}_first_try_ms"] = 1000 * (time.perf_counter() - start) / len(paths)
        start = time.perf_counter()
        for d, points in zip(decoded, rows["landmarks"]):
            crop, _ = warp(d.rgb, np.asarray(points, dtype=np.float64).reshape(5, 2) * d.scale, 112)
            write_crop(ws.root / "bench-crops", crop)
        costs[f"{kind}_warp_write_ms"] = 1000 * (time.perf_counter() - start) / len(paths)
    # A camera-sized JPEG (12 MP: the astronaut enlarged to 4032x3024), as most photo datasets hold.
    import cv2
    import skimage.data

    camera = ws.root / "camera.jpg"
    big = cv2.resize(skimage.data.astronaut(), (4032, 3024), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(camera), cv2.cvtColor(big, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    start = time.perf_counter()
    for _ in range(10):
        decode(camera, min_long_side=640)
    costs["camera_12mp_decode_ms"] = 1000 * (time.perf_counter() - start) / 10
    costs["camera_12mp_kib"] = camera.stat().st_size / 1024
    return costs


def bytes_moved(ws: Workspace, frame) -> dict[str, float]:
    """Bytes per image, photos and crops apart: the original read from the shared workspace, the
    crop written to it, and the result sent from an actor to the driver."""
    out = {}
    for kind, chosen in KINDS.items():
        rows = frame[chosen(frame)]
        originals = [ws.absolute(p).stat().st_size for p in rows["original_path"]]
        crops = [ws.absolute(p).stat().st_size for p in rows["aligned_path"].dropna()]
        results = [len(json.dumps({c: (None if v is None else str(v)) for c, v in r.items()})) for r in rows[COLUMNS].to_dict("records")]
        out[f"{kind}_original_read"] = sum(originals) / len(originals)
        out[f"{kind}_crop_written"] = sum(crops) / max(1, len(crops))
        out[f"{kind}_result_to_driver"] = sum(results) / len(results)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1120)
    parser.add_argument("--actors", default="1,2", help="actor counts of the scaling curve")
    args = parser.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ingest(ws=Workspace(tmp / "base"), path=benchmark_folder(tmp / "src", args.images), dataset="imagefolder", align=False)

        local_s, local, report, local_ws = run(tmp / "base", tmp / "local")
        print(f"images: {len(local.frame)} ({report.counts}); machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        print(f"local engine:  {local_s:7.1f} s  {len(local.frame) / local_s:6.1f} images/s")

        start = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, object_store_memory=256 * 1024**2)
        ray_start = time.perf_counter() - start
        print(f"Ray start:     {ray_start:7.1f} s")
        runs = {}
        for actors in [None, *(int(a) for a in args.actors.split(","))]:
            seconds, manifest, _, _ = run(tmp / "base", tmp / f"ray-{actors}", engine="ray", ray_actors=actors)
            same = manifest.frame[COLUMNS].equals(local.frame[COLUMNS])
            runs[actors] = seconds
            name = "default" if actors is None else f"{actors} actor{'s' if actors > 1 else ''}"
            print(f"ray engine ({name}): {seconds:7.1f} s  {len(local.frame) / seconds:6.1f} images/s  same results as local: {same}")
            if not same:
                raise SystemExit("the Ray engine's results differ from the local engine's")
        ray.shutdown()

        ratio = runs[None] / local_s
        limit = 1.2 * local_s + 15
        print(f"ratio ray/local: {ratio:.2f} (with Ray start: {(runs[None] + ray_start) / local_s:.2f})")
        print(f"target ray + start <= 1.2 x local + 15 s = {limit:.1f} s: {runs[None] + ray_start:.1f} s -> "
              f"{'met' if runs[None] + ray_start <= limit else 'NOT met'}")
        counts = [a for a in runs if a is not None]
        if len(counts) > 1:
            print("scaling: " + ", ".join(f"{a} actor(s) {len(local.frame) / runs[a]:.1f} images/s" for a in counts)
                  + f"; speed-up {runs[counts[0]] / runs[counts[-1]]:.2f}x")
        costs = per_image_costs(local_ws, local.frame)
        print("per image: " + ", ".join(f"{k} {v:.1f}" for k, v in costs.items()))
        moved = bytes_moved(local_ws, local.frame)
        print("detector: " + ", ".join(f"{c} px {detector_gmac(c):.3f} GMAC" for c in (640, 320, 192)))
        print("bytes per image: " + ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in moved.items()))


if __name__ == "__main__":
    main()

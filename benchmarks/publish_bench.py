"""Publishing N aligned 112×112 faces: ferdata publish against datasets' from_pandas → to_parquet.

    python benchmarks/publish_bench.py              # N = 10,000 (a couple of minutes)
    python benchmarks/publish_bench.py --n 100000   # the issue's target size (needs ~10 GB of disk)

Builds a workspace of N aligned crops (PNG, made from a few hundred distinct synthetic faces so
that generating them is quick; sizes like real crops), then measures, each step in a fresh
process so that its peak memory is its own:

- ``copy``: read every crop and append it to one file: the disk-speed floor for the same bytes;
- ``ferdata``: ``publish(..., configs=["mix"])`` (the same rows as the baseline);
- ``baseline``: the usual recipe, every image read into a pandas frame, then
  ``datasets.Dataset.from_pandas(frame, features=...).to_parquet(path)``;
- ``baseline-chunked``: the same through from_pandas per 10,000 rows + ``concatenate_datasets``
  (the plain recipe fails once the image column passes 2 GiB, about 85,000 crops);
- ``ferdata-all``: the four configs (mix, nm, m, pe), which is what ``ferdata publish`` writes.

Prints seconds, images/s, MB/s and peak RSS for each, and the ratios ferdata/baseline and
ferdata/copy. Timings of the first step may include cold-cache reads; the page cache usually
holds the crops afterwards (say so when you quote the numbers).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LABELS = ("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral")
DISTINCT = 256


def face_png(seed: int) -> bytes:
    """A smooth synthetic 112×112 'face' with sensor-like noise: ~20–30 KB as PNG, like real crops."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:112, 0:112].astype(np.float32)
    blob = np.exp(-(((x - 56) / 30) ** 2 + ((y - 60) / 38) ** 2))
    base = 40 + 170 * blob[..., None] * rng.uniform(0.6, 1.0, size=3)
    pixels = base + rng.normal(0, 6, size=(112, 112, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def build_workspace(root: Path, n: int) -> None:
    """A manifest of n aligned crops: subjects of 14 images (7 labels × non-masked, masked), paired."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ferdata.schema import Manifest, new_frame
    from ferdata.workspace import Workspace

    ws = Workspace.resolve(root)
    crops = ws.aligned_dir("msd-e") / "112px"
    crops.mkdir(parents=True, exist_ok=True)
    templates = [face_png(i) for i in range(DISTINCT)]
    rows = []
    for i in range(n):
        subject, rest = divmod(i, 14)
        masked, label = divmod(rest, 7)
        folder = "MSD-ME" if masked else "MSD-E"
        name = f"{subject:06d}_{label}_dslr"
        crop = crops / f"{folder}_{name}.png"
        crop.write_bytes(templates[i % DISTINCT])
        rows.append(
            {
                "image_id": f"{folder}/{name}", "dataset": "msd-e", "source": f"{folder}/{name}.jpg",
                "sha256": hashlib.sha256(f"{folder}/{name}".encode()).hexdigest(), "subject_id": f"{subject:06d}",
                "label_original": LABELS[label], "label": LABELS[label], "masked": bool(masked), "pair_key": name,
                "pair_id": name, "in_pe": True, "fold": subject % 10, "original_path": f"originals/msd-e/{folder}/{name}.jpg",
                "width": 640, "height": 480, "face_status": "aligned", "det_score": 0.9, "n_faces": 1,
                "aligned_path": ws.relative(crop),
            }
        )
    ws.save(Manifest(dataset="msd-e", frame=new_frame(rows), provenance={}))


def _crop_paths(ws_root: Path) -> list[Path]:
    return sorted((ws_root / "aligned" / "msd-e" / "112px").glob("*.png"))


def step_copy(ws_root: Path, out: Path) -> None:
    with open(out / "all.bin", "wb") as sink:
        sink.writelines(path.read_bytes() for path in _crop_paths(ws_root))
        os.fsync(sink.fileno())


def step_ferdata(ws_root: Path, out: Path, configs: list[str] | None) -> None:
    from ferdata.publish import publish
    from ferdata.workspace import Workspace

    publish(Workspace.resolve(ws_root), out / "hf", configs=configs)


def step_baseline(ws_root: Path, out: Path, chunk: int | None = None) -> None:
    """The usual recipe; with ``chunk``, from_pandas per ``chunk`` rows and concatenate_datasets
    (the workaround once one binary column passes 2 GiB and from_pandas fails)."""
    import datasets
    import pandas as pd

    from ferdata.workspace import Workspace

    datasets.disable_progress_bars()
    ws = Workspace.resolve(ws_root)
    frame = ws.load("msd-e").frame.sort_values("image_id").reset_index(drop=True)
    table = pd.DataFrame(
        {
            "image": [{"bytes": ws.absolute(p).read_bytes(), "path": None} for p in frame["aligned_path"]],
            "label": frame["label"].map(LABELS.index).astype("int64"),
            "image_id": frame["image_id"].astype(str),
            "subject_id": frame["subject_id"].astype(str),
            "masked": frame["masked"].astype(bool),
            "fold": frame["fold"].astype("int64"),
            "pair_id": frame["pair_id"].astype(str),
        }
    )
    features = datasets.Features(
        {
            "image": datasets.Image(), "label": datasets.ClassLabel(names=list(LABELS)),
            "image_id": datasets.Value("string"), "subject_id": datasets.Value("string"),
            "masked": datasets.Value("bool"), "fold": datasets.Value("int64"), "pair_id": datasets.Value("string"),
        }
    )
    step = chunk or len(table)
    pieces = [
        datasets.Dataset.from_pandas(table.iloc[i : i + step], features=features, preserve_index=False)
        for i in range(0, len(table), step)
    ]
    ds = pieces[0] if len(pieces) == 1 else datasets.concatenate_datasets(pieces)
    ds.to_parquet(str(out / "baseline.parquet"))
    os.sync()


def run_child(step: str, ws_root: Path) -> dict:
    """One step in a fresh process: seconds, bytes written and that process's peak RSS."""
    with tempfile.TemporaryDirectory(dir=ws_root.parent, prefix=f"out-{step}-") as folder:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", step, "--ws", str(ws_root), "--out", folder],
            check=False, capture_output=True, text=True,
        )
        if proc.returncode != 0:  # reported, not raised: the baseline is the step that may not cope
            last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit status {proc.returncode}"
            return {"step": step, "failed": last}
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["bytes_out"] = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    return result


def child(step: str, ws_root: Path, out: Path) -> None:
    # libraries are loaded before the clock starts: the steps compare work, not import times
    import datasets  # noqa: F401
    import pandas  # noqa: F401

    import ferdata.publish.folder  # noqa: F401

    started = time.perf_counter()
    if step == "copy":
        step_copy(ws_root, out)
    elif step == "ferdata":
        step_ferdata(ws_root, out, ["mix"])
    elif step == "ferdata-all":
        step_ferdata(ws_root, out, None)
    elif step == "baseline":
        step_baseline(ws_root, out)
    elif step == "baseline-chunked":
        step_baseline(ws_root, out, chunk=10_000)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"step": step, "seconds": seconds, "peak_rss_mib": peak_kib / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="aligned faces to publish (default 10,000; the issue's target is 100,000)")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the workspace (default: a temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--ws", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.ws, args.out)
        return

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="publish-bench-") as folder:
        ws_root = Path(folder) / "ws"
        started = time.perf_counter()
        build_workspace(ws_root, args.n)
        data_mib = sum(p.stat().st_size for p in _crop_paths(ws_root)) / 2**20
        print(f"workspace: {args.n:,} aligned 112×112 crops, {data_mib:,.0f} MiB, built in {time.perf_counter() - started:.1f} s")
        results = {step: run_child(step, ws_root) for step in ("copy", "ferdata", "baseline", "baseline-chunked", "ferdata-all")}
    print(f"{'step':<12} {'seconds':>8} {'images/s':>9} {'MB/s in':>8} {'out MiB':>8} {'peak RSS MiB':>13}")
    for step, r in results.items():
        if "failed" in r:
            print(f"{step:<12} failed: {r['failed']}")
            continue
        print(
            f"{step:<12} {r['seconds']:>8.2f} {args.n / r['seconds']:>9,.0f} {data_mib * 2**20 / 1e6 / r['seconds']:>8.0f} "
            f"{r['bytes_out'] / 2**20:>8,.0f} {r['peak_rss_mib']:>13,.0f}"
        )
    f, c = results["ferdata"], results["copy"]
    print(f"ferdata time / plain copy of the same bytes: {f['seconds'] / c['seconds']:.2f}")
    for name in ("baseline", "baseline-chunked"):
        b = results[name]
        if "failed" not in b:
            print(f"{name}: ferdata is {b['seconds'] / f['seconds']:.2f}x faster, "
                  f"peak memory ferdata / {name}: {f['peak_rss_mib'] / b['peak_rss_mib']:.2f}")


if __name__ == "__main__":
    main()

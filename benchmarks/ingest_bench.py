"""Ingest throughput and peak memory against a plain pandas + PIL loop, measured in the same run.

Two inputs, generated here:
  1. the FER2013 CSV layout at full size (35,887 rows of 48×48 pixels; --rows to change);
  2. a zip of 2,000 JPEG images in an image-folder layout (--images to change).

Each contender runs in its own subprocess so that its peak RSS is its own. The baseline is what a
researcher writes by hand: pandas.read_csv of the whole file, then per row np.array → PIL → PNG
and a SHA-256 (for the zip: zipfile extract of every member, PIL open, SHA-256). Printed: rows/s
of each, the ratio, and the peak memory of each. Peak memory of ingest is also measured at a
quarter of the rows, to show it does not grow with the number of images.

    python benchmarks/ingest_bench.py            # full size (a few minutes on 2 cores)
    python benchmarks/ingest_bench.py --rows 4000 --images 500
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

USAGES = ["Training"] * 8 + ["PublicTest", "PrivateTest"]


def make_csv(path: Path, rows: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    with path.open("w") as fh:
        fh.write("emotion,pixels,Usage\n")
        for i in range(rows):
            fh.write(f"{i % 7},{' '.join(map(str, rng.integers(0, 256, 2304)))},{USAGES[i % 10]}\n")


def make_zip(path: Path, images: int) -> None:
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1)
    labels = ["angry", "happy", "sad", "neutral", "fear", "surprise", "disgust"]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(images):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
            zf.writestr(f"train/{labels[i % 7]}/{i:05d}.jpg", buffer.getvalue())


FERDATA = """
import sys, time
from pathlib import Path
from ferdata.ingest import ingest
from ferdata.workspace import Workspace
src, ws, dataset = Path(sys.argv[1]), Workspace.resolve(sys.argv[2]), sys.argv[3]
t = time.perf_counter()
result = ingest(src, ws, dataset=dataset, align=False)
print(result.rows, time.perf_counter() - t)
"""

BASELINE_CSV = """
import hashlib, io, sys, time
from pathlib import Path
import numpy as np, pandas as pd
from PIL import Image
src, out = Path(sys.argv[1]), Path(sys.argv[2])
t = time.perf_counter()
frame = pd.read_csv(src / "fer2013.csv")
records = []
for i, row in frame.iterrows():
    pixels = np.array(row["pixels"].split(), dtype=np.uint8).reshape(48, 48)
    folder = out / row["Usage"]
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(folder / f"{i}.png")
    records.append({"id": i, "label": row["emotion"], "sha256": hashlib.sha256(pixels.tobytes()).hexdigest()})
pd.DataFrame(records).to_parquet(out / "manifest.parquet")
print(len(records), time.perf_counter() - t)
"""

BASELINE_ZIP = """
import hashlib, sys, time, zipfile
from pathlib import Path
import pandas as pd
from PIL import Image
src, out = Path(sys.argv[1]), Path(sys.argv[2])
t = time.perf_counter()
records = []
with zipfile.ZipFile(src) as zf:
    zf.extractall(out)
    for name in zf.namelist():
        data = (out / name).read_bytes()
        with Image.open(out / name) as img:
            w, h = img.size
        records.append({"name": name, "sha256": hashlib.sha256(data).hexdigest(), "w": w, "h": h})
pd.DataFrame(records).to_parquet(out / "manifest.parquet")
print(len(records), time.perf_counter() - t)
"""


def run(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter; return its rows, seconds and peak RSS (MiB)."""
    wrapper = textwrap.dedent(code) + textwrap.dedent("""
        import resource, json
        print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """)
    proc = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True, check=True)
    lines = proc.stdout.strip().splitlines()
    rows, seconds = lines[-2].split()
    return {"rows": int(rows), "seconds": float(seconds), **json.loads(lines[-1])}


def compare(title: str, ours: dict, base: dict) -> None:
    ours_rate, base_rate = ours["rows"] / ours["seconds"], base["rows"] / base["seconds"]
    print(f"\n{title}")
    print(f"  ferdata ingest : {ours['rows']:>7,} rows in {ours['seconds']:7.1f}s = {ours_rate:8,.0f} rows/s, peak {ours['peak_mib']:6.0f} MiB")
    print(f"  baseline loop  : {base['rows']:>7,} rows in {base['seconds']:7.1f}s = {base_rate:8,.0f} rows/s, peak {base['peak_mib']:6.0f} MiB")
    print(f"  ratio (ferdata / baseline): speed {ours_rate / base_rate:.2f}x, peak memory {ours['peak_mib'] / base['peak_mib']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=35_887)
    parser.add_argument("--images", type=int, default=2_000)
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where to write (default: here; /tmp can be slow to create files)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".ingest-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "csv").mkdir()
        make_csv(tmp / "csv" / "fer2013.csv", args.rows)
        (tmp / "quarter").mkdir()
        make_csv(tmp / "quarter" / "fer2013.csv", args.rows // 4)
        ours = run(FERDATA, str(tmp / "csv"), str(tmp / "ws-csv"), "fer2013")
        base = run(BASELINE_CSV, str(tmp / "csv"), str(tmp / "base-csv"))
        compare(f"FER2013 CSV, {args.rows:,} rows", ours, base)
        quarter = run(FERDATA, str(tmp / "quarter"), str(tmp / "ws-quarter"), "fer2013")
        print(f"  ferdata peak memory at {args.rows // 4:,} rows: {quarter['peak_mib']:.0f} MiB "
              f"(x{ours['peak_mib'] / quarter['peak_mib']:.2f} for 4x the rows)")

        make_zip(tmp / "images.zip", args.images)
        ours = run(FERDATA, str(tmp / "images.zip"), str(tmp / "ws-zip"), "imagefolder")
        base = run(BASELINE_ZIP, str(tmp / "images.zip"), str(tmp / "base-zip"))
        compare(f"zip of {args.images:,} JPEGs", ours, base)


if __name__ == "__main__":
    main()

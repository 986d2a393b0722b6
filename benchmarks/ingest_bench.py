"""Ingest speed and peak memory against the loops a researcher writes by hand, side by side.

Two inputs, generated once and kept in ``--data`` (about 330 MB):

1. ``fer2013.csv`` at full size: 35,887 rows of 48x48 faces in FER2013's layout. The faces are real
   photos' faces (``leakage_bench.population``: each a blend of three real faces under its own warp
   and lighting), because PNG encoding costs depend on content: random pixels or flat squares
   would compress unlike faces.
2. ``photos.zip``: 2,000 small colour JPEGs (crops of the same real photos around their faces,
   112 to 200 pixels, quality 90) in an image-folder layout, deflated as zip tools do by default.

Contenders, each in a fresh interpreter, taking turns for ``--rounds`` rounds
(``side_by_side.take_turns``):

- ferdata: ``ingest(ws, path, dataset=..., align=False)`` (what ``ferdata ingest --no-align`` runs);
- CSV baseline: ``pandas.read_csv`` of the whole file, then per row ``np.array(split)`` -> Pillow
  PNG file -> SHA-256 of the pixels, then one Parquet manifest;
- zip baseline: ``zipfile.extractall``, then per file a read and its SHA-256, then one Parquet;
  and the same followed by one ``os.sync()`` (the loops make nothing durable, ferdata does: the
  target is against the plain loop, the durable one is shown beside it).

ferdata's modules are compiled to bytecode before the rounds, as ``pip install`` does (this
machine sets PYTHONDONTWRITEBYTECODE, so a source checkout was otherwise compiled by every run).

Floors, measured in the same rounds (each part alone, timing only its own work): for the CSV,
reading and parsing every row (no writes), encoding every face as PNG, and writing 35,887
prepared PNG files (4 threads, then one sync); for the zip, reading every member into memory, and
``extractall`` alone.

    python benchmarks/ingest_bench.py                       # both inputs, 3 rounds
    python benchmarks/ingest_bench.py --only csv --rounds 5
    python benchmarks/ingest_bench.py --rows 4000 --images 500   # a quick look

Output folders are kept until the end of the run (deleting 36,000 files just before the next
contender creates its own makes the next file creations slower on this machine's file system,
whichever contender comes next; see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from side_by_side import Contender, report, take_turns  # noqa: E402

USAGES = ["Training"] * 8 + ["PublicTest", "PrivateTest"]
LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


# ----------------------------------------------------------------------------- inputs


def make_csv(path: Path, rows: int) -> None:
    from leakage_bench import photos, population

    faces = population(photos([]), rows, seed=19)
    with path.open("w") as fh:
        fh.write("emotion,pixels,Usage\n")
        for i, face in enumerate(faces):
            fh.write(f"{i % 7},{' '.join(map(str, face.ravel().tolist()))},{USAGES[i % 10]}\n")


def make_zip(path: Path, images: int) -> None:
    from leakage_bench import photos, view
    from PIL import Image

    rng = np.random.default_rng(23)
    sources = photos([])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(images):
            photo = sources[i % len(sources)]
            x1, y1, x2, y2 = photo.box
            side = (x2 - x1) * rng.uniform(1.0, 1.6)
            cx, cy = (x1 + x2) / 2 + rng.uniform(-0.1, 0.1) * side, (y1 + y2) / 2 + rng.uniform(-0.1, 0.1) * side
            out = int(rng.integers(112, 201))
            crop = view(photo, (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), out, gray=False)
            buffer = io.BytesIO()
            Image.fromarray(crop).save(buffer, "JPEG", quality=90)
            zf.writestr(f"photos/{LABELS[i % 7]}/{i:05d}.jpg", buffer.getvalue())


def inputs(folder: Path, rows: int, images: int) -> tuple[Path, Path]:
    """The CSV's folder and the zip, made once per size and kept in ``folder``."""
    csv_dir, archive = folder / f"csv-{rows}", folder / f"photos-{images}.zip"
    if not (csv_dir / "fer2013.csv").exists():
        csv_dir.mkdir(parents=True, exist_ok=True)
        print(f"making {csv_dir / 'fer2013.csv'} ({rows:,} rows of real faces)...", flush=True)
        make_csv(csv_dir / "fer2013.csv.part", rows)
        (csv_dir / "fer2013.csv.part").rename(csv_dir / "fer2013.csv")
    if not archive.exists():
        print(f"making {archive} ({images:,} JPEGs)...", flush=True)
        make_zip(archive.with_suffix(".part"), images)
        archive.with_suffix(".part").rename(archive)
    return csv_dir, archive


# ----------------------------------------------------------------------------- contenders

FERDATA = """
import sys
from pathlib import Path
from ferdata.ingest import ingest
from ferdata.workspace import Workspace
result = ingest(Workspace.resolve(sys.argv[2]), Path(sys.argv[1]), dataset=sys.argv[3], align=False)
print(result.rows)
"""

BASELINE_CSV = """
import hashlib, sys
from pathlib import Path
import numpy as np, pandas as pd
from PIL import Image
src, out = Path(sys.argv[1]), Path(sys.argv[2])
frame = pd.read_csv(src / "fer2013.csv")
records = []
for i, row in frame.iterrows():
    pixels = np.array(row["pixels"].split(), dtype=np.uint8).reshape(48, 48)
    folder = out / row["Usage"]
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(folder / f"{i}.png")
    records.append({"id": i, "label": row["emotion"], "sha256": hashlib.sha256(pixels.tobytes()).hexdigest()})
pd.DataFrame(records).to_parquet(out / "manifest.parquet")
print(len(records))
"""

BASELINE_ZIP = """
import hashlib, sys, zipfile
from pathlib import Path
import pandas as pd
src, out = Path(sys.argv[1]), Path(sys.argv[2])
records = []
with zipfile.ZipFile(src) as zf:
    zf.extractall(out)
    for name in zf.namelist():
        records.append({"name": name, "sha256": hashlib.sha256((out / name).read_bytes()).hexdigest()})
pd.DataFrame(records).to_parquet(out / "manifest.parquet")
print(len(records))
"""

# Floors: the parts alone, each as fast as this machine does it. Each prints the seconds of its
# own work (the interpreter's start, imports and loading its input excluded); they take turns with
# the contenders in every round, so that they see the same load.
FLOOR_PARSE = """
import sys, time
from pathlib import Path
from ferdata.archives import open_tree
from ferdata.sources.fer2013 import read_pixel_csv
from ferdata.resources import load_toml
fer = load_toml("fer2013")
start = time.perf_counter()
with open_tree(Path(sys.argv[1])) as tree:
    n = sum(1 for _ in read_pixel_csv(tree, "fer2013.csv", fer["classes"], fer["layout"]["usage"], 48))
print(time.perf_counter() - start)
"""

FLOOR_ENCODE = """
import sys, time, cv2, numpy as np
from concurrent.futures import ThreadPoolExecutor
faces = np.load(sys.argv[1])
def encode(chunk):
    return [cv2.imencode(".png", f, [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY])[1] for f in chunk]
start = time.perf_counter()
with ThreadPoolExecutor(4) as pool:
    n = sum(len(c) for c in pool.map(encode, np.array_split(faces, 64)))
print(time.perf_counter() - start)
"""

FLOOR_WRITE = """
import os, sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
blob, sizes = np.load(sys.argv[1] + ".blob.npy"), np.load(sys.argv[1] + ".sizes.npy")
out = sys.argv[2]
offsets = np.concatenate([[0], np.cumsum(sizes)])
names = [f"{'train' if i % 10 < 8 else 'test'}/{i:07d}.png" for i in range(len(sizes))]
start = time.perf_counter()
for d in ("train", "test"):
    os.makedirs(os.path.join(out, d))
def write(chunk):
    for i in chunk:
        fd = os.open(os.path.join(out, names[i]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        os.write(fd, blob[offsets[i]:offsets[i + 1]].tobytes())
        os.close(fd)
with ThreadPoolExecutor(4) as pool:
    list(pool.map(write, np.array_split(np.arange(len(sizes)), 64)))
os.sync()
print(time.perf_counter() - start)
"""

# The zip baseline as above, then one os.sync(): the same files made durable, as ferdata makes its
# own before it commits the manifest (shown beside the target, which is against the plain loop).
BASELINE_ZIP_DURABLE = BASELINE_ZIP.replace("print(len(records))", "import os\nos.sync()\nprint(len(records))")

# What each side does, printed with the results (the loops make nothing durable).
DOES_CSV = """  ferdata: reads the CSV in blocks, PNG-encodes and hashes on threads, stages every file with a journal
    (an interrupted run resumes), one sync of the workspace's file system, moves the staged folder in,
    then validates the manifest and replaces it atomically (fsync of the file and its folder).
  baseline: read_csv, per row decode -> Pillow PNG file -> SHA-256, then one Parquet file written in
    place; nothing is flushed to disk (a power cut can leave empty or missing files behind a manifest)."""
DOES_ZIP = """  ferdata: lists the zip checking every name (no absolute paths, no climbing out, no links or devices,
    no overlapping entries), streams each member with the bomb limits counted per chunk, hashes it
    and reads its size from the header, stages it with a journal, one sync of the workspace's file
    system, moves the staged folder in, then validates the manifest and replaces it atomically.
  baseline: zipfile.extractall (its own name sanitising, no bomb limits), then per file a read and its
    SHA-256, then one Parquet file written in place; nothing is flushed to disk.
  baseline + sync: the same, then one os.sync() (shown for durability's sake; the target is the plain loop)."""

FLOOR_ZIP_READ = """
import sys, time, zipfile
start = time.perf_counter()
with zipfile.ZipFile(sys.argv[1]) as zf:
    n = sum(len(zf.read(name)) > 0 for name in zf.namelist())
print(time.perf_counter() - start)
"""

FLOOR_ZIP_EXTRACT = """
import os, sys, time, zipfile
start = time.perf_counter()
with zipfile.ZipFile(sys.argv[1]) as zf:
    zf.extractall(sys.argv[2])
os.sync()
print(time.perf_counter() - start)
"""


def prepared_pngs(csv_path: Path, scratch: Path) -> tuple[Path, Path]:
    """The CSV's faces as an array file, and their PNG bytes as ferdata encodes them (for the
    write floor)."""
    import cv2

    faces = []
    with csv_path.open() as fh:
        next(fh)
        for line in fh:
            faces.append(np.array(line.split(",")[1].split(), dtype=np.uint8).reshape(48, 48))
    faces_file = scratch / "faces.npy"
    np.save(faces_file, np.stack(faces))
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
    pngs = [cv2.imencode(".png", f, params)[1].tobytes() for f in faces]
    base = scratch / "pngs"
    np.save(str(base) + ".blob.npy", np.frombuffer(b"".join(pngs), dtype=np.uint8))
    np.save(str(base) + ".sizes.npy", np.array([len(p) for p in pngs]))
    return faces_file, base


def floors_of(contenders: list[Contender]) -> dict[str, float]:
    """Each floor contender's median of the seconds it printed."""
    import statistics

    return {c.name: statistics.median(float(r.output.split()[-1]) for r in c.runs) for c in contenders}


def bench_csv(csv_dir: Path, work: Path, rounds: int, rows: int) -> None:
    ours = Contender("ferdata ingest --no-align", FERDATA)
    base = Contender("pandas + Pillow loop", BASELINE_CSV)
    faces_file, pngs = prepared_pngs(csv_dir / "fer2013.csv", work)
    floors = [
        Contender("reading and parsing the CSV (ferdata's reader, no writes)", FLOOR_PARSE, [str(csv_dir)]),
        Contender("PNG encoding of every face (OpenCV, as ferdata encodes, 4 threads)", FLOOR_ENCODE, [str(faces_file)]),
        Contender("writing the PNG files (prepared bytes, 4 threads, then one sync)", FLOOR_WRITE, [str(pngs)]),
    ]

    def prepare(contender: Contender, k: int) -> list[str]:
        if contender is floors[2]:
            return [str(work / f"floor-write-{k}")]
        if contender in floors:
            return []
        out = work / f"{'ours' if contender is ours else 'base'}-csv-{k}"
        return [str(csv_dir), str(out), "fer2013"] if contender is ours else [str(csv_dir), str(out)]

    print(f"\nFER2013 CSV, {rows:,} rows: {rounds} rounds\n{DOES_CSV}", flush=True)
    take_turns([ours, base, *floors], rounds, prepare)
    report(f"FER2013 CSV, {rows:,} rows", ours, base, floors_of(floors))


def bench_zip(archive: Path, work: Path, rounds: int, images: int) -> None:
    ours = Contender("ferdata ingest --no-align", FERDATA)
    base = Contender("extractall + SHA-256 + Parquet", BASELINE_ZIP)
    durable = Contender("the same + one os.sync()", BASELINE_ZIP_DURABLE)
    floors = [
        Contender("reading every member into memory", FLOOR_ZIP_READ, [str(archive)]),
        Contender("extractall alone, then one sync", FLOOR_ZIP_EXTRACT, [str(archive)]),
    ]

    def prepare(contender: Contender, k: int) -> list[str]:
        if contender is floors[1]:
            return [str(work / f"floor-extract-{k}")]
        if contender in floors:
            return []
        out = work / f"{'ours' if contender is ours else 'base' if contender is base else 'durable'}-zip-{k}"
        return [str(archive), str(out), "imagefolder"] if contender is ours else [str(archive), str(out)]

    print(f"\nzip of {images:,} small JPEGs: {rounds} rounds\n{DOES_ZIP}", flush=True)
    take_turns([ours, base, durable, *floors], rounds, prepare)
    report(f"zip of {images:,} small JPEGs (the target: against the plain loop)", ours, base, floors_of(floors))
    report(f"zip of {images:,} small JPEGs, against the loop made durable", ours, durable)


def compile_package() -> None:
    """Compile ferdata's modules to bytecode before the rounds, as ``pip install`` does. Where
    PYTHONDONTWRITEBYTECODE is set (this development machine sets it) a source checkout is
    otherwise compiled anew by every run, while the baseline's libraries, installed, are not."""
    import compileall

    ok = compileall.compile_dir(str(HERE.parent / "ferdata"), quiet=1)
    print(f"ferdata's modules compiled to bytecode first, as pip install does ({'done' if ok else 'FAILED'})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=35_887)
    parser.add_argument("--images", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("csv", "zip"))
    parser.add_argument("--data", type=Path, default=HERE.parent / ".bench" / "ingest-data",
                        help="where the generated inputs are kept between runs")
    parser.add_argument("--dir", type=Path, default=HERE.parent,
                        help="where outputs are written (default: the repository; /tmp can be slower to create files in)")
    args = parser.parse_args()
    csv_dir, archive = inputs(args.data, args.rows, args.images)
    compile_package()
    work = Path(tempfile.mkdtemp(dir=args.dir, prefix=".ingest-bench-"))
    try:
        if args.only in (None, "csv"):
            bench_csv(csv_dir, work, args.rounds, args.rows)
        if args.only in (None, "zip"):
            bench_zip(archive, work, args.rounds, args.images)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

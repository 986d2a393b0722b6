"""Benchmarks for `ferdata folds` and the leakage check; every number is a ratio to a baseline run here.

1. Balance on the MSD-E-like case (142 subjects, 7-21 images each, masked twins): ferdata's
   greedy assignment against scikit-learn's StratifiedGroupKFold, same frames and seeds.
2. Folding a large manifest (default 1,000,000 rows) three ways: one subject per 20 rows, one clip
   per 25 frames, and no identities (every image its own group plus 1% exact duplicates). Baseline:
   sorting the same frame by subject (a floor for any work on every row).
3. Perceptual hashes of many small faces (default 20,000 PNGs at 112x112): a serial loop (one
   file per call), the batched code in one process, the process pool, and a second call served by
   the workspace cache.
4. The near-duplicate search (multi-index hashing) against brute force on the same hashes.

Run: python benchmarks/folds_bench.py [--rows 1000000] [--faces 20000] [--workers N]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ferdata import folds, leakage
from ferdata.schema import BASIC_LABELS, Manifest, new_frame
from ferdata.workspace import Workspace

MSDE_LABEL_WEIGHTS = np.array([249, 249, 241, 357, 265, 247, 352], dtype=float) / 1960


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def msde_like(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(142):
        n = int(rng.integers(7, 22))
        for i in range(n):
            if i % 2 == 0:
                label = BASIC_LABELS[int(rng.choice(7, p=MSDE_LABEL_WEIGHTS))]
            rows.append({
                "image_id": f"s{s}-{i}", "dataset": "msd-e", "source": "-", "sha256": f"{s}-{i}", "subject_id": f"s{s}",
                "label_original": label, "label": label, "masked": bool(i % 2), "original_path": "-", "width": 1, "height": 1,
                "pair_id": f"s{s}-{i // 2}" if i % 2 or i + 1 < n else None,
            })
    return new_frame(rows)


def label_spread(table: pd.DataFrame) -> float:
    """Largest (max - min) / mean over folds of any label's count."""
    counts = table[[x for x in BASIC_LABELS if x in table]]
    return float(((counts.max() - counts.min()) / counts.mean()).max())


def bench_msde(seeds: int = 10) -> None:
    from sklearn.model_selection import StratifiedGroupKFold

    print("## 1. MSD-E-like balance, 10 folds (142 subjects, 7-21 images each)")
    print("seed | images | greedy: size dev, min-max, label spread | StratifiedGroupKFold: size dev, min-max, label spread")
    results = {"greedy": [], "sgkf": []}
    t_greedy = t_sgkf = 0.0
    for seed in range(seeds):
        frame = msde_like(seed)
        fold, t = timed(folds.assign_folds, frame, 10, seed=seed)
        t_greedy += t
        ours = frame.assign(fold=fold)
        start = time.perf_counter()
        splitter = StratifiedGroupKFold(10, shuffle=True, random_state=seed)
        theirs_fold = np.empty(len(frame), dtype=np.int64)
        for f, (_, val) in enumerate(splitter.split(frame, folds.strata(frame), frame["subject_id"])):
            theirs_fold[val] = f
        t_sgkf += time.perf_counter() - start
        theirs = frame.assign(fold=pd.array(theirs_fold, dtype="Int64"))
        line = [str(seed), str(len(frame))]
        for name, assigned in (("greedy", ours), ("sgkf", theirs)):
            table = folds.balance_table(assigned)
            dev, spread = folds.max_deviation(table), label_spread(table)
            results[name].append((dev, spread))
            line.append(f"{dev:.2%}, {table['images'].min()}-{table['images'].max()}, {spread:.1%}")
        print(" | ".join(line))
    for name, values in results.items():
        dev = np.array([v[0] for v in values])
        spread = np.array([v[1] for v in values])
        print(f"{name}: size deviation mean {dev.mean():.2%} worst {dev.max():.2%}; "
              f"label spread mean {spread.mean():.1%} worst {spread.max():.1%}")
    print(f"time: greedy {t_greedy / seeds * 1000:.0f} ms, StratifiedGroupKFold {t_sgkf / seeds * 1000:.0f} ms per run")


def big_frame(n: int, mode: str) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    ids = np.arange(n).astype(str).astype(object)
    frame = pd.DataFrame({
        "image_id": "i" + ids,
        "sha256": "h" + ids,
        "label": np.array(BASIC_LABELS, dtype=object)[rng.integers(0, 7, n)],
        "masked": pd.array(rng.random(n) < 0.5, dtype="boolean"),
        "split": "train",
        "subject_id": None,
        "clip_id": None,
        "pair_id": None,
    })
    if mode == "subjects":
        frame["subject_id"] = "s" + (np.arange(n) // 20).astype(str).astype(object)
    elif mode == "clips":
        frame["clip_id"] = "c" + (np.arange(n) // 25).astype(str).astype(object)
    else:
        dup = rng.choice(n, n // 50, replace=False)
        frame.loc[dup[: len(dup) // 2], "sha256"] = frame.loc[dup[len(dup) // 2 :], "sha256"].to_numpy()
    return frame


def bench_big(rows: int) -> None:
    print(f"\n## 2. Folding {rows:,} rows, k=10")
    for mode in ("subjects", "clips", "images"):
        frame = big_frame(rows, mode)
        _, base = timed(frame.sort_values, ["subject_id", "image_id"])
        fold, t = timed(folds.assign_folds, frame, 10, seed=0)
        table = folds.balance_table(frame.assign(fold=fold))
        print(f"{mode:8s}: {t:.2f} s ({t / base:.1f}x a sort of the frame, {base:.2f} s); "
              f"size deviation {folds.max_deviation(table):.4%}")


def synthetic_faces(root: Path, n: int, size: int = 112) -> list[Path]:
    """Distinct faces that share a face-like layout (half a real face, half a random pattern)."""
    spec = importlib.util.find_spec("insightface")
    face_file = Path(spec.submodule_search_locations[0]) / "data/images/Tom_Hanks_54745.png" if spec else None
    if face_file and face_file.exists():
        mean_face = np.asarray(Image.open(face_file).convert("L").resize((size, size)), dtype=np.float64)
    else:
        yy, xx = np.mgrid[:size, :size]
        mean_face = 128 + 60 * np.cos(xx / 9.0) * np.sin(yy / 13.0)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        pattern = Image.fromarray(rng.integers(0, 256, (10, 10), dtype=np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
        pixels = 0.5 * mean_face + 0.5 * np.asarray(pattern, dtype=np.float64)
        path = root / f"{i // 1000:03d}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(path, compress_level=1)
        paths.append(path)
    return paths


def bench_hashes(n: int, workers: int) -> None:
    print(f"\n## 3. Perceptual hashes of {n:,} faces (112x112 PNG), {workers} workers")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.resolve(tmp)
        paths, t_write = timed(synthetic_faces, ws.originals_dir("bench"), n)
        print(f"(writing the faces took {t_write:.1f} s)")
        rows = [{
            "image_id": str(i), "dataset": "imagefolder", "source": str(i), "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            "label_original": "happy", "label": "happy", "original_path": ws.relative(p), "width": 112, "height": 112,
        } for i, p in enumerate(paths)]
        frame = new_frame(rows)
        ws.save(Manifest("bench", frame))
        serial, t_serial = timed(lambda: [leakage._signature_chunk([str(p)])[0][0] for p in paths])
        _, t_batched = timed(leakage.phash_files, paths, workers=1)
        (parallel, ok), t_parallel = timed(leakage.phash_files, paths, workers=workers)
        assert ok.all() and np.array_equal(np.array(serial, dtype=np.int64).view(np.uint64), parallel)
        _, t_first = timed(leakage.row_hashes, ws, "bench", frame, workers=workers)
        cached, t_cached = timed(leakage.row_hashes, ws, "bench", frame, workers=workers)
        print(f"serial loop {t_serial:.2f} s ({n / t_serial:,.0f}/s); batched in 1 process {t_batched:.2f} s; "
              f"{workers} processes {t_parallel:.2f} s -> {t_serial / t_parallel:.2f}x the loop, "
              f"{t_batched / t_parallel:.2f}x one process")
        print(f"workspace (stat, cache lookup, hash, write cache): first run {t_first:.2f} s, cached run "
              f"{t_cached:.2f} s -> {t_serial / t_cached:.1f}x the loop")

        print(f"\n## 4. Near-duplicate search on those {n:,} hashes (hamming <= 6)")
        hashes = np.unique(np.array(list(cached), dtype=np.uint64))
        sub = hashes[: min(len(hashes), 20_000)]
        (i, _j, _), t_mih = timed(leakage.near_pairs, sub, 6)

        def brute(h):
            found = 0
            for start in range(0, len(h), 500):
                d = leakage.hamming(h[start : start + 500, None], h[None, :])
                later = np.arange(len(h))[None, :] > np.arange(start, start + len(d))[:, None]
                found += int(((d <= 6) & later).sum())
            return found

        found, t_brute = timed(brute, sub)
        assert found == len(i)
        print(f"{len(sub):,} hashes: brute force {t_brute:.2f} s, multi-index {t_mih:.3f} s -> {t_brute / t_mih:.0f}x "
              f"({found} pairs)")
        (i, _, _), t_all = timed(leakage.near_pairs, hashes, 6)
        print(f"all {len(hashes):,} hashes: multi-index {t_all:.2f} s ({len(i)} pairs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--faces", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    bench_msde()
    bench_big(args.rows)
    bench_hashes(args.faces, args.workers)


if __name__ == "__main__":
    main()

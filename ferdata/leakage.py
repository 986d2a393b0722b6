"""Leakage check: the same picture, or the same person, on both sides of a fold or split boundary.

Three kinds of evidence, from cheapest to most expensive:

- ``exact``: two rows with the same SHA-256 (the same original bytes or decoded pixels);
- ``near``: two rows whose perceptual hashes (pHash, 64 bits, of the aligned face, or of the
  original where there is no aligned face) differ in at most ``hamming`` bits: re-encodes,
  resizes, small crops. FER2013 has such duplicates across Training/PublicTest/PrivateTest;
- ``identity`` (optional): two faces whose embeddings from a user-supplied face-recognition ONNX
  model (e.g. insightface's ``w600k_r50.onnx``) have a cosine similarity at or above a threshold.

A *leak* is such a pair whose rows sit in different folds, or in different source splits. Only
rows with a label take part (removed rows are never trained or tested on).

The pure parts (hashing pixels, the near-duplicate search, pairing rows into leaks) take arrays
and frames. :func:`check_leakage` is the workspace entry point: it computes the hashes in parallel,
caches them in ``tables/<dataset>/phash.parquet`` keyed by SHA-256, and writes the report
``tables/<dataset>/leakage.csv``.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import LeakageFound, UsageError
from .folds import connected_components, eligible_rows, key_edges
from .progress import ProgressFn, null_progress

PHASH_TABLE = "phash.parquet"
REPORT_FILE = "leakage.csv"
REPORT_COLUMNS = ["kind", "across", "image_id_a", "image_id_b", "fold_a", "fold_b", "split_a", "split_b", "distance"]
DEFAULT_HAMMING = 6
DEFAULT_IDENTITY_THRESHOLD = 0.5

_HASH_SIZE = 8  # 8x8 low frequencies -> 64 bits
_HASH_INPUT = 32  # pHash resizes to 32x32 first (imagehash's hash_size * highfreq_factor)
_CHUNK = 256  # images per task sent to a worker process


# ----------------------------------------------------------------------------- perceptual hash


def _dct_rows() -> np.ndarray:
    """The first 8 rows of the (unnormalised) DCT-II matrix on 32 samples, as scipy.fftpack uses."""
    k = np.arange(_HASH_SIZE)[:, None]
    n = np.arange(_HASH_INPUT)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * _HASH_INPUT))


_DCT = _dct_rows()


def phash_pixels(gray: np.ndarray) -> np.ndarray:
    """pHash of a batch of 32x32 grayscale images (``(n, 32, 32)``) as ``uint64``.

    Same bits as ``imagehash.phash`` (DCT of rows then columns, the 8x8 lowest frequencies
    compared with their median, first coefficient in the most significant bit), computed for the
    whole batch with two matrix products.
    """
    gray = np.asarray(gray, dtype=np.float64).reshape(-1, _HASH_INPUT, _HASH_INPUT)
    low = _DCT @ gray @ _DCT.T  # (n, 8, 8)
    flat = low.reshape(len(gray), -1)
    bits = flat > np.median(flat, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def _hash_input(path: str) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            small = img.convert("L").resize((_HASH_INPUT, _HASH_INPUT), Image.Resampling.LANCZOS)
            return np.asarray(small, dtype=np.float64)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _hash_chunk(paths: list[str]) -> list[int]:
    """pHash per path (as a signed 64-bit int), -1 where the image cannot be read."""
    pixels = [_hash_input(p) for p in paths]
    ok = [i for i, p in enumerate(pixels) if p is not None]
    out = [-1] * len(paths)
    if ok:
        hashes = phash_pixels(np.stack([pixels[i] for i in ok])).view(np.int64)
        for i, h in zip(ok, hashes.tolist(), strict=True):
            out[i] = h
    return out


def phash_files(
    paths: list[str | Path], *, workers: int | None = None, progress: ProgressFn | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """pHashes of image files, in parallel processes when there are many.

    Returns ``(hashes, ok)``: ``uint64`` hashes and a mask of the files that could be read.
    """
    progress = progress or null_progress
    paths = [str(p) for p in paths]
    workers = workers or os.cpu_count() or 1
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    results: list[int] = []
    progress("perceptual hashes", 0, len(paths))
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            for part in pool.map(_hash_chunk, chunks):
                results.extend(part)
                progress("perceptual hashes", len(results), len(paths))
    else:
        for chunk in chunks:
            results.extend(_hash_chunk(chunk))
            progress("perceptual hashes", len(results), len(paths))
    signed = np.array(results, dtype=np.int64)
    return signed.view(np.uint64), signed != -1


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between two arrays of 64-bit hashes."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    as_bytes = x.view(np.uint8).reshape(*x.shape, 8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1).astype(np.int64)


def near_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` of *distinct* hashes within ``max_distance`` bits, with their distance.

    Multi-index hashing: cut the 64 bits into ``max_distance + 1`` blocks; two hashes within
    ``max_distance`` bits agree exactly on at least one block (pigeonhole), so only hashes sharing
    a block value are compared. Exact, and far from quadratic unless the hashes are all alike.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    empty = np.zeros(0, dtype=np.int64)
    if n < 2 or max_distance < 1:
        return empty, empty, empty
    blocks = min(max_distance + 1, 64)
    widths = [64 // blocks + (1 if b < 64 % blocks else 0) for b in range(blocks)]
    found_i, found_j = [], []
    shift = 0
    for width in widths:
        key = (hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        shift += width
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
        ends = np.r_[starts[1:], n]
        group_end = np.repeat(ends, ends - starts)  # end of the run each sorted position is in
        active = np.flatnonzero(group_end - np.arange(n) > 1)
        offset = 1
        while len(active):
            i, j = order[active], order[active + offset]
            close = hamming(hashes[i], hashes[j]) <= max_distance
            found_i.append(np.minimum(i, j)[close])
            found_j.append(np.maximum(i, j)[close])
            offset += 1
            active = active[group_end[active] - active > offset]
    if not found_i:
        return empty, empty, empty
    pair = np.unique(np.concatenate(found_i) * n + np.concatenate(found_j))
    i, j = pair // n, pair % n
    return i, j, hamming(hashes[i], hashes[j])


# ----------------------------------------------------------------------------- pairs -> leaks


@dataclass
class Evidence:
    """Pairs of related rows (positions in the frame), before folds and splits are looked at."""

    exact_key: np.ndarray  # per row: SHA-256 code (-1 never)
    hash_key: np.ndarray  # per row: pHash value code, -1 where not hashed
    near_a: np.ndarray  # edges between pHash value codes (distinct values within the threshold)
    near_b: np.ndarray
    near_distance: np.ndarray
    identity_a: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # row positions
    identity_b: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    identity_similarity: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def clusters(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Component per row over exact, near and identity links, only through ``rows`` if given.

        Each distinct pHash value ``u`` is a virtual node ``n + u``: rows join their value's node
        and near-duplicate edges join value nodes.
        """
        n = len(self.exact_key)
        has = self.hash_key >= 0
        n_values = int(self.hash_key.max()) + 1 if has.any() else 0
        exact_a, exact_b = key_edges(self.exact_key)
        a = np.concatenate([exact_a, np.flatnonzero(has), n + self.near_a, self.identity_a])
        b = np.concatenate([exact_b, n + self.hash_key[has], n + self.near_b, self.identity_b])
        if rows is not None:
            keep = np.ones(n + n_values, dtype=bool)
            keep[:n] = False
            keep[rows] = True
            ok = keep[a] & keep[b]
            a, b = a[ok], b[ok]
        return connected_components(n + n_values, a, b)[:n]


def find_leaks(frame: pd.DataFrame, evidence: Evidence) -> pd.DataFrame:
    """Every pair of labelled rows linked by ``evidence`` that sits in two folds or two splits.

    Rows sharing a key and a (fold, split) place are represented by one of them, so a cluster of
    m copies costs at most places² pairs, not m². Columns: :data:`REPORT_COLUMNS`.
    """
    eligible = eligible_rows(frame).to_numpy()
    fold = frame["fold"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    split = frame["split"].astype(object).where(frame["split"].notna(), "").to_numpy()
    place = pd.Series(list(zip(fold.tolist(), split.tolist(), strict=True)))
    place_code = pd.factorize(place)[0]
    pos = np.flatnonzero(eligible)

    def representatives(key: np.ndarray, *, per_sha: bool = False) -> pd.DataFrame:
        sel = pos[key[pos] >= 0]
        reps = pd.DataFrame({"key": key[sel], "place": place_code[sel], "row": sel, "sha": evidence.exact_key[sel]})
        return reps.drop_duplicates(["key", "place", "sha"] if per_sha else ["key", "place"])

    parts = []
    exact = representatives(evidence.exact_key)
    same = exact.merge(exact, on="key", suffixes=("_a", "_b"))
    same = same[same["row_a"] < same["row_b"]]
    parts.append(pd.DataFrame({"a": same["row_a"], "b": same["row_b"], "kind": "exact", "distance": 0.0}))

    # same pHash, different bytes: one representative per file content and place
    by_hash_sha = representatives(evidence.hash_key, per_sha=True)
    same = by_hash_sha.merge(by_hash_sha, on="key", suffixes=("_a", "_b"))
    same = same[(same["row_a"] < same["row_b"]) & (same["sha_a"] != same["sha_b"])]
    parts.append(pd.DataFrame({"a": same["row_a"], "b": same["row_b"], "kind": "near", "distance": 0.0}))

    if len(evidence.near_a):
        edges = pd.DataFrame({"key_a": evidence.near_a, "key_b": evidence.near_b, "distance": evidence.near_distance})
        # distinct pHash values within the threshold: one representative per value and place
        reps = representatives(evidence.hash_key)[["key", "row"]]
        edges = edges.merge(reps.rename(columns={"key": "key_a", "row": "row_a"}), on="key_a")
        edges = edges.merge(reps.rename(columns={"key": "key_b", "row": "row_b"}), on="key_b")
        parts.append(
            pd.DataFrame({"a": edges["row_a"], "b": edges["row_b"], "kind": "near", "distance": edges["distance"].astype(float)})
        )
    if len(evidence.identity_a):
        parts.append(
            pd.DataFrame(
                {
                    "a": evidence.identity_a,
                    "b": evidence.identity_b,
                    "kind": "identity",
                    "distance": 1.0 - evidence.identity_similarity,
                }
            )
        )
    pairs = pd.concat(parts, ignore_index=True)
    pairs = pairs[eligible[pairs["a"].to_numpy()] & eligible[pairs["b"].to_numpy()]]
    a, b = pairs["a"].to_numpy(dtype=np.int64), pairs["b"].to_numpy(dtype=np.int64)
    across_fold = (fold[a] >= 0) & (fold[b] >= 0) & (fold[a] != fold[b])
    across_split = (split[a] != "") & (split[b] != "") & (split[a] != split[b])
    keep = across_fold | across_split
    a, b, pairs = a[keep], b[keep], pairs[keep]
    across = np.where(across_fold[keep] & across_split[keep], "fold+split", np.where(across_fold[keep], "fold", "split"))
    ids = frame["image_id"].to_numpy()
    report = pd.DataFrame(
        {
            "kind": pairs["kind"].to_numpy(),
            "across": across,
            "image_id_a": ids[a],
            "image_id_b": ids[b],
            "fold_a": pd.array(np.where(fold[a] >= 0, fold[a], None), dtype="Int64"),
            "fold_b": pd.array(np.where(fold[b] >= 0, fold[b], None), dtype="Int64"),
            "split_a": pd.Series(split[a], dtype=object).replace("", None).to_numpy(),
            "split_b": pd.Series(split[b], dtype=object).replace("", None).to_numpy(),
            "distance": pairs["distance"].to_numpy(dtype=float),
        },
        columns=REPORT_COLUMNS,
    )
    kind_order = {"exact": 0, "near": 1, "identity": 2}
    report = report.sort_values(
        ["kind", "distance", "image_id_a", "image_id_b"], key=lambda s: s.map(kind_order) if s.name == "kind" else s
    )
    return report.reset_index(drop=True)


# ----------------------------------------------------------------------------- workspace: hashes


def _face_paths(ws, frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per row: the file to hash (aligned face when there is one, else the original) and its kind."""
    aligned = frame["aligned_path"].notna() & (frame["face_status"] == "aligned")
    rel = frame["aligned_path"].where(aligned, frame["original_path"])
    kind = pd.Series(np.where(aligned, "aligned", "original"), index=frame.index, dtype=object)
    return rel, kind


def row_hashes(
    ws, dataset: str, frame: pd.DataFrame, *, workers: int | None = None, progress: ProgressFn | None = None
) -> pd.Series:
    """pHash per row (``uint64`` values in an object series, None where unreadable), cached.

    The cache ``tables/<dataset>/phash.parquet`` is keyed by SHA-256 and the kind of file hashed;
    an entry is reused while the file keeps its size and modification time (a re-alignment
    rewrites the aligned faces, so their hashes are computed again).
    """
    from .fsutil import atomic_path

    rel, kind = _face_paths(ws, frame)
    todo = pd.DataFrame({"sha256": frame["sha256"], "kind": kind, "path": rel}).drop_duplicates(["sha256", "kind"])
    sizes, mtimes = [], []
    for path in todo["path"]:
        try:
            st = ws.absolute(path).stat()
            sizes.append(st.st_size)
            mtimes.append(st.st_mtime_ns)
        except OSError:
            sizes.append(-1)
            mtimes.append(-1)
    todo["size"] = np.array(sizes, dtype=np.int64)
    todo["mtime_ns"] = np.array(mtimes, dtype=np.int64)

    cache_path = ws.tables_dir(dataset) / PHASH_TABLE
    cached = _read_cache(cache_path)
    merged = todo.merge(cached, on=["sha256", "kind", "size", "mtime_ns"], how="left")
    missing = merged["phash"].isna() & (merged["size"] >= 0)
    if missing.any():
        files = [ws.absolute(p) for p in merged.loc[missing, "path"]]
        values, ok = phash_files(files, workers=workers, progress=progress)
        merged.loc[missing, "phash"] = [f"{v:016x}" if good else "" for v, good in zip(values.tolist(), ok, strict=True)]
        fresh = merged.loc[merged["phash"].notna(), ["sha256", "kind", "size", "mtime_ns", "phash"]]
        table = pd.concat([cached[~cached.set_index(["sha256", "kind"]).index.isin(fresh.set_index(["sha256", "kind"]).index)], fresh])
        with atomic_path(cache_path) as tmp:
            table.to_parquet(tmp, index=False)
    lookup = merged.set_index(["sha256", "kind"])["phash"]
    keys = pd.MultiIndex.from_arrays([frame["sha256"], kind])
    hexes = lookup.reindex(keys).to_numpy()
    return pd.Series(
        [int(h, 16) if isinstance(h, str) and h else None for h in hexes], index=frame.index, dtype=object
    )


def _read_cache(path: Path) -> pd.DataFrame:
    columns = ["sha256", "kind", "size", "mtime_ns", "phash"]
    if path.exists():
        try:
            table = pd.read_parquet(path)
            if list(table.columns) == columns:
                return table
        except (OSError, ValueError):
            pass  # a damaged cache is only a cache: compute the hashes again
    return pd.DataFrame({c: pd.Series(dtype=object if c in ("sha256", "kind", "phash") else np.int64) for c in columns})


# ----------------------------------------------------------------------------- identity model


def identity_embeddings(
    ws, frame: pd.DataFrame, model: Path, *, batch: int = 64, progress: ProgressFn | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised face embeddings from a face-recognition ONNX model, and a mask of rows done.

    The model takes NCHW float RGB input scaled to [-1, 1] (insightface's ArcFace convention) at
    the size its input declares (112x112 when the size is dynamic).
    """
    import onnxruntime as ort
    from PIL import Image

    progress = progress or null_progress
    model = Path(model)
    if not model.is_file():
        raise UsageError(f"identity model {model} not found: pass the path of a face-recognition .onnx file")
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    load_errors = (ort_errors.Fail, ort_errors.InvalidArgument, ort_errors.InvalidGraph, ort_errors.InvalidProtobuf,
                   ort_errors.NoSuchFile, ort_errors.NotImplemented, ort_errors.RuntimeException)
    try:
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    except load_errors as exc:
        raise UsageError(f"cannot load identity model {model}: {str(exc).splitlines()[0]}") from None
    spec = session.get_inputs()[0]
    shape = list(spec.shape)
    height = shape[2] if len(shape) == 4 and isinstance(shape[2], int) else 112
    width = shape[3] if len(shape) == 4 and isinstance(shape[3], int) else 112
    fixed_batch = shape[0] if isinstance(shape[0], int) else None
    step = fixed_batch or batch
    rel, _ = _face_paths(ws, frame)
    paths = [ws.absolute(p) for p in rel]
    n = len(paths)
    ok = np.zeros(n, dtype=bool)
    out: np.ndarray | None = None
    progress("identity embeddings", 0, n)
    for start in range(0, n, step):
        idx, tensors = [], []
        for i in range(start, min(start + step, n)):
            try:
                with Image.open(paths[i]) as img:
                    rgb = np.asarray(img.convert("RGB").resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
            except (OSError, ValueError):
                continue
            tensors.append(((rgb - 127.5) / 127.5).transpose(2, 0, 1))
            idx.append(i)
        if not idx:
            continue
        x = np.stack(tensors)
        if fixed_batch and len(x) < fixed_batch:
            x = np.concatenate([x, np.zeros((fixed_batch - len(x), *x.shape[1:]), dtype=np.float32)])
        emb = np.asarray(session.run(None, {spec.name: x})[0], dtype=np.float32)[: len(idx)].reshape(len(idx), -1)
        if out is None:
            out = np.zeros((n, emb.shape[1]), dtype=np.float32)
        out[idx] = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        ok[idx] = True
        progress("identity embeddings", min(start + step, n), n)
    return (out if out is not None else np.zeros((n, 1), dtype=np.float32)), ok


def similar_pairs(embeddings: np.ndarray, threshold: float, rows: np.ndarray, block: int = 2048):
    """Pairs ``i < j`` among ``rows`` whose cosine similarity is at least ``threshold`` (blockwise)."""
    rows = np.asarray(rows, dtype=np.int64)
    emb = embeddings[rows]
    found_a, found_b, found_s = [], [], []
    for start in range(0, len(rows), block):
        sims = emb[start : start + block] @ emb.T
        i, j = np.nonzero(sims >= threshold)
        i_abs = i + start
        upper = j > i_abs
        found_a.append(rows[i_abs[upper]])
        found_b.append(rows[j[upper]])
        found_s.append(sims[i[upper], j[upper]].astype(float))
    if not found_a:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    return np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_s)


# ----------------------------------------------------------------------------- entry point


@dataclass
class LeakageReport:
    """What the check found. ``leaks`` has the columns :data:`REPORT_COLUMNS`."""

    dataset: str
    leaks: pd.DataFrame
    rows_checked: int
    hashed: int
    not_hashed: int
    hamming: int
    identity_model: str | None
    identity_threshold: float | None
    report_path: str | None = None  # relative to the workspace

    @property
    def found(self) -> bool:
        return len(self.leaks) > 0

    def counts(self) -> dict[str, int]:
        """Leaks per ``kind/across``, e.g. ``{"near/split": 3}``."""
        if not self.found:
            return {}
        keys = self.leaks["kind"] + "/" + self.leaks["across"]
        return {k: int(v) for k, v in keys.value_counts().sort_index().items()}

    def summary(self) -> dict[str, Any]:
        return {
            "leaks": len(self.leaks),
            "by_kind": self.counts(),
            "rows_checked": self.rows_checked,
            "hashed": self.hashed,
            "not_hashed": self.not_hashed,
            "hamming": self.hamming,
            "identity_model": self.identity_model,
            "identity_threshold": self.identity_threshold,
            "report": self.report_path,
        }

    def raise_if_found(self) -> None:
        if self.found:
            parts = ", ".join(f"{v} {k}" for k, v in self.counts().items())
            exc = LeakageFound(
                f"{len(self.leaks)} leaks in {self.dataset} ({parts}): the same image or person in two folds "
                f"or splits; see {self.report_path} and drop one image of each pair (ferdata folds keeps "
                "duplicates without subject ids in one fold)"
            )
            exc.report = self
            raise exc


def gather_evidence(
    ws,
    dataset: str,
    frame: pd.DataFrame,
    *,
    hamming: int = DEFAULT_HAMMING,
    identity_model: Path | None = None,
    identity_threshold: float = DEFAULT_IDENTITY_THRESHOLD,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[Evidence, int]:
    """Hashes (cached), near-duplicate edges and, with a model, identity edges for ``frame``.

    Returns the evidence and the number of rows that could be hashed.
    """
    if hamming < 0 or hamming > 32:
        raise UsageError(f"--hamming must be between 0 and 32 bits (got {hamming}); 6 is a good start")
    hashes = row_hashes(ws, dataset, frame, workers=workers, progress=progress)
    has = hashes.notna().to_numpy()
    values = np.array([h if h is not None else 0 for h in hashes], dtype=np.uint64)
    unique, inverse = np.unique(values[has], return_inverse=True)
    hash_key = np.full(len(frame), -1, dtype=np.int64)
    hash_key[has] = inverse
    near_a, near_b, dist = near_pairs(unique, hamming)
    evidence = Evidence(
        exact_key=pd.factorize(frame["sha256"])[0].astype(np.int64),
        hash_key=hash_key,
        near_a=near_a,
        near_b=near_b,
        near_distance=dist,
    )
    if identity_model is not None:
        rows = np.flatnonzero(eligible_rows(frame).to_numpy())
        emb, ok = identity_embeddings(ws, frame.iloc[rows], identity_model, progress=progress)
        full = np.zeros((len(frame), emb.shape[1]), dtype=np.float32)
        full[rows] = emb
        a, b, s = similar_pairs(full, identity_threshold, rows[ok])
        evidence.identity_a, evidence.identity_b, evidence.identity_similarity = a, b, s
    return evidence, int(has.sum())


def write_report(ws, dataset: str, leaks: pd.DataFrame) -> str:
    from .fsutil import atomic_path

    path = ws.tables_dir(dataset) / REPORT_FILE
    with atomic_path(path) as tmp:
        leaks.to_csv(tmp, index=False)
    return ws.relative(path)


def report_from(
    ws, dataset: str, frame: pd.DataFrame, evidence: Evidence, hashed: int, *, hamming: int,
    identity_model: Path | None, identity_threshold: float,
) -> LeakageReport:
    """Find the leaks for the frame's current folds and splits, and write the report file."""
    leaks = find_leaks(frame, evidence)
    checked = int(eligible_rows(frame).sum())
    return LeakageReport(
        dataset=dataset,
        leaks=leaks,
        rows_checked=checked,
        hashed=hashed,
        not_hashed=len(frame) - hashed,
        hamming=hamming,
        identity_model=str(identity_model) if identity_model is not None else None,
        identity_threshold=identity_threshold if identity_model is not None else None,
        report_path=write_report(ws, dataset, leaks),
    )


def check_leakage(
    ws,
    *,
    dataset: str | None = None,
    hamming: int = DEFAULT_HAMMING,
    identity_model: Path | str | None = None,
    identity_threshold: float = DEFAULT_IDENTITY_THRESHOLD,
    strict: bool = False,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> LeakageReport:
    """Check a workspace's dataset for duplicates and identities across folds and splits.

    Reads the manifest (does not change it), writes ``tables/<dataset>/leakage.csv`` and the hash
    cache. With ``strict``, raises :class:`~ferdata.errors.LeakageFound` after writing the report
    when any leak is found.
    """
    manifest = ws.load(dataset)
    frame = manifest.frame.reset_index(drop=True)
    model = Path(identity_model) if identity_model is not None else None
    evidence, hashed = gather_evidence(
        ws, manifest.dataset, frame, hamming=hamming, identity_model=model,
        identity_threshold=identity_threshold, workers=workers, progress=progress,
    )
    report = report_from(
        ws, manifest.dataset, frame, evidence, hashed, hamming=hamming, identity_model=model,
        identity_threshold=identity_threshold,
    )
    if strict:
        report.raise_if_found()
    return report

"""Leakage check: the same picture, or the same person, on both sides of a fold or split boundary.

A pair is reported only once the pixels say so. Three steps:

1. **Signatures** per image file, cached in ``tables/<dataset>/signatures.parquet`` (keyed by
   SHA-256, reused while the file keeps its size and modification time): the 64-bit pHash of the
   image and of its mirror image, and a 32x32 grayscale thumbnail.
2. **Candidates**, cheap and generous: the same SHA-256; pHashes within ``hamming`` bits, either
   orientation (re-encodes, resizes); and each image's ``neighbours`` nearest images by a
   low-frequency descriptor (the thumbnail averaged down to 8x8, zero mean, unit norm), either
   orientation, which survives blur, shifts, crops, brightness and contrast.
3. **Verification** on the thumbnails: the best alignment (mirror or not, one image zoomed by up to
   1.18x, i.e. a 85% crop, shifted by up to 4 px at 32 px) by normalised cross-correlation (NCC),
   first at 16 px, then refined at 32 px; the sharper image blurred until it fits the blurrier one
   best; then the *similarity*: the correlation of the two images' gradients at that alignment,
   leaving out the 15% of gradients that fit worst (a watermark or a caption). Gradients, unlike
   raw intensities, tell two different faces of the same pose and framing apart.

A verified pair is ``exact`` (the same SHA-256), ``near`` (the same picture altered: similarity at
least ``similarity`` and pixel NCC at least :data:`NCC_FLOOR`) or ``identity`` (the same person in
another picture, by an optional face-recognition model). A pair whose pixels correlate (NCC at
least :data:`NCC_FLOOR`) but one of whose images holds too little detail to decide (heavily
blurred, flat or tiny) is *undecidable*: a blurred 48x48 face correlates that well with dozens of
different faces. Undecidable pairs are reported apart, never counted as leaks and never used to
keep rows together in folds. Thresholds and their calibration: docs/check-leakage.md.

A *leak* is a verified pair whose rows sit in different folds, or in different source splits.
Only rows with a label take part (removed rows are never trained or tested on). The file compared
is a row's face crop when it has one (``aligned`` and ``registered`` rows), else its original;
originals of at most :data:`SMALL_ORIGINAL` px are face pictures already and compared as they are.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ImageUnreadable, LeakageFound, UsageError
from .graph import connected_components, key_edges
from .progress import ProgressFn, null_progress
from .schema import labelled_rows
from .workspace import Workspace, WorkspaceLike, writes_workspace

SIGNATURE_TABLE = "signatures.parquet"
REPORT_FILE = "leakage.csv"
UNDECIDABLE_FILE = "leakage_undecidable.csv"
REPORT_COLUMNS = [
    "kind",
    "across",
    "image_id_a",
    "image_id_b",
    "fold_a",
    "fold_b",
    "split_a",
    "split_b",
    "similarity",
    "signature",
]
UNDECIDABLE_COLUMNS = [*REPORT_COLUMNS, "reason"]
KINDS = ("exact", "near", "identity")

DEFAULT_HAMMING = 6
DEFAULT_NEIGHBOURS = 5
DEFAULT_SIMILARITY = 0.96
DEFAULT_IDENTITY_THRESHOLD = 0.5
# Pixel NCC (at the matched blur) a near pair must also reach; and from which a pair of images
# too poor in detail to decide is reported as undecidable.
NCC_FLOOR = 0.85
# Candidates whose best NCC at 16 px stays below this are dropped before the 32 px verification.
COARSE_FLOOR = 0.75
# Smallest low-frequency descriptor similarity for a neighbour to become a candidate.
DESCRIPTOR_FLOOR = 0.5
# Up to this many images the descriptor neighbours are exact (every pair compared); above it an
# inverted file compares each image with the members of its NEIGHBOUR_PROBES nearest clusters.
EXACT_NEIGHBOURS_BELOW = 2000
NEIGHBOUR_PROBES = 4
# What an image needs to be decidable (measured on its 32x32 thumbnail): fine detail (the share
# of its contrast that a 1 px Gaussian blur removes), contrast (grey levels, standard deviation)
# and size (pixels on its shorter side).
MIN_DETAIL = 0.08
MIN_CONTRAST = 4.0
MIN_SIDE = 16
# A pair whose blurrier image holds little detail (below LOW_DETAIL) is decided only from a higher
# similarity: different faces blurred to that level reach 0.97, blurred copies stay above 0.99.
LOW_DETAIL = 0.12
LOW_DETAIL_SIMILARITY = 0.985

_HASH_SIZE = 8  # 8x8 low frequencies -> 64 bits
THUMB = 32  # pHash resizes to 32x32 first (imagehash's hash_size * highfreq_factor); so do the thumbnails
_DESCRIPTOR = 8
_CHUNK = 256  # images per task sent to a worker process
_ZOOMS = (1.0, 1.09, 1.18)  # crops of 100%, 92% and 85%
_BLURS = (0.0, 0.6, 1.0, 1.5, 2.2)  # extra blur tried on the sharper image (px at 32)
_TRIM = 0.15  # share of gradients left out of the similarity
_ALIKE_DETAIL = 0.85  # pairs whose detail differs less than this ratio skip the blur matching
_GRADIENT_BLUR = 0.5  # px at 32: gradients of a lightly smoothed image forgive resampling and JPEG blocks


# ----------------------------------------------------------------------------- perceptual hash


def _dct_rows() -> np.ndarray:
    """The first 8 rows of the (unnormalised) DCT-II matrix on 32 samples, as scipy.fftpack uses."""
    k = np.arange(_HASH_SIZE)[:, None]
    n = np.arange(THUMB)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * THUMB))


_DCT = _dct_rows()


def phash_pixels(gray: np.ndarray) -> np.ndarray:
    """pHash of a batch of 32x32 grayscale images (``(n, 32, 32)``) as ``uint64``.

    Same bits as ``imagehash.phash`` (DCT of rows then columns, the 8x8 lowest frequencies
    compared with their median, first coefficient in the most significant bit), computed for the
    whole batch with two matrix products.
    """
    gray = np.asarray(gray, dtype=np.float64).reshape(-1, THUMB, THUMB)
    low = _DCT @ gray @ _DCT.T  # (n, 8, 8)
    flat = low.reshape(len(gray), -1)
    bits = flat > np.median(flat, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


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


# ----------------------------------------------------------------------------- signatures of files


def _thumbnail(path: str) -> tuple[np.ndarray, int, int] | None:
    """The 32x32 grayscale thumbnail (float, before rounding: pHash's input) and the image's size.

    The pixels as stored (:func:`~ferdata.vision.decode.read_crop`: no EXIF turn), so that the
    signatures cached in a workspace stay valid."""
    from PIL import Image

    from .vision.decode import read_crop

    try:
        gray = read_crop(path, gray=True)
    except ImageUnreadable:
        return None
    small = Image.fromarray(gray).resize((THUMB, THUMB), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.float64), gray.shape[1], gray.shape[0]


def _signature_chunk(paths: list[str]) -> list[tuple[int, int, bytes, int, int] | None]:
    """(pHash, mirror pHash, thumbnail bytes, width, height) per path; None where unreadable."""
    read = [_thumbnail(p) for p in paths]
    ok = [(i, r) for i, r in enumerate(read) if r is not None]
    out: list[tuple[int, int, bytes, int, int] | None] = [None] * len(paths)
    if ok:
        pixels = np.stack([r[0] for _, r in ok])
        plain = phash_pixels(pixels).view(np.int64).tolist()
        mirror = phash_pixels(pixels[:, :, ::-1]).view(np.int64).tolist()
        for k, (i, r) in enumerate(ok):
            thumb = np.clip(np.rint(r[0]), 0, 255).astype(np.uint8).tobytes()
            out[i] = (plain[k], mirror[k], thumb, r[1], r[2])
    return out


@dataclass
class Signatures:
    """Signatures of image files, one entry per file (``ok`` False where it could not be read)."""

    phash: np.ndarray  # uint64
    phash_mirror: np.ndarray  # uint64
    thumbs: np.ndarray  # (n, 32, 32) uint8
    width: np.ndarray  # int64, 0 where unreadable
    height: np.ndarray
    ok: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.ok)

    @classmethod
    def from_records(cls, records: Sequence[tuple[int, int, bytes, int, int] | None]) -> Signatures:
        n = len(records)
        phash = np.zeros(n, dtype=np.int64)
        mirror = np.zeros(n, dtype=np.int64)
        thumbs = np.zeros((n, THUMB, THUMB), dtype=np.uint8)
        width = np.zeros(n, dtype=np.int64)
        height = np.zeros(n, dtype=np.int64)
        ok = np.zeros(n, dtype=bool)
        for i, rec in enumerate(records):
            if rec is None:
                continue
            phash[i], mirror[i] = rec[0], rec[1]
            thumbs[i] = np.frombuffer(rec[2], dtype=np.uint8).reshape(THUMB, THUMB)
            width[i], height[i] = rec[3], rec[4]
            ok[i] = True
        return cls(phash.view(np.uint64), mirror.view(np.uint64), thumbs, width, height, ok)

    @classmethod
    def from_images(cls, images: list[np.ndarray]) -> Signatures:
        """Signatures of decoded images (grayscale or RGB uint8 arrays), as files would give."""
        from PIL import Image

        records = []
        for image in images:
            img = Image.fromarray(np.asarray(image))
            small = np.asarray(img.convert("L").resize((THUMB, THUMB), Image.Resampling.LANCZOS), dtype=np.float64)
            plain = int(phash_pixels(small[None]).view(np.int64)[0])
            mirror = int(phash_pixels(small[None, :, ::-1]).view(np.int64)[0])
            thumb = np.clip(np.rint(small), 0, 255).astype(np.uint8).tobytes()
            records.append((plain, mirror, thumb, img.size[0], img.size[1]))
        return cls.from_records(records)


def signatures_of_files(
    paths: list[str | Path], *, workers: int | None = None, progress: ProgressFn | None = None
) -> Signatures:
    """Signatures of image files, in parallel processes when there are many."""
    progress = progress or null_progress
    names = [str(p) for p in paths]
    workers = workers or os.cpu_count() or 1
    chunks = [names[i : i + _CHUNK] for i in range(0, len(names), _CHUNK)]
    records: list = []
    progress("image signatures", 0, len(names))
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            for part in pool.map(_signature_chunk, chunks):
                records.extend(part)
                progress("image signatures", len(records), len(names))
    else:
        for chunk in chunks:
            records.extend(_signature_chunk(chunk))
            progress("image signatures", len(records), len(names))
    return Signatures.from_records(records)


def phash_files(
    paths: list[str | Path], *, workers: int | None = None, progress: ProgressFn | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """pHashes of image files: ``(hashes, ok)``, ``uint64`` hashes and a mask of the readable files."""
    sig = signatures_of_files(paths, workers=workers, progress=progress)
    return sig.phash, sig.ok


# ----------------------------------------------------------------------------- image measures


def detail_and_contrast(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per thumbnail: fine detail (share of its contrast a 1 px blur removes) and contrast (grey std)."""
    x = np.asarray(thumbs, dtype=np.float32)
    contrast = x.reshape(len(x), -1).std(axis=1)
    fine = (x - _blur_batch(x, 1.0)).reshape(len(x), -1).std(axis=1)
    return fine / np.maximum(contrast, 1e-6), contrast


def undecidable_reason(detail: np.ndarray, contrast: np.ndarray, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Per image: why a match with it cannot be decided (``""`` when it can)."""
    reason = np.full(len(detail), "", dtype=object)
    reason[detail < MIN_DETAIL] = "blurred"
    reason[contrast < MIN_CONTRAST] = "flat"
    reason[np.minimum(width, height) < MIN_SIDE] = "tiny"
    return reason


def descriptors(thumbs: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Low-frequency descriptor of each thumbnail and of its mirror: 8x8 means, zero mean, unit norm."""
    if len(thumbs) > chunk:  # bounded memory for a million thumbnails
        parts = [descriptors(thumbs[i : i + chunk], chunk) for i in range(0, len(thumbs), chunk)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    x = np.asarray(thumbs, dtype=np.float32)
    step = x.shape[1] // _DESCRIPTOR
    small = x.reshape(len(x), _DESCRIPTOR, step, _DESCRIPTOR, step).mean(axis=(2, 4))

    def unit(v: np.ndarray) -> np.ndarray:
        v = v.reshape(len(v), -1)
        v = v - v.mean(axis=1, keepdims=True)
        return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-6)).astype(np.float32)

    return unit(small), unit(small[:, :, ::-1])


def cropped_descriptors(thumbs: np.ndarray, crop: float = 1 / 1.12, chunk: int = 65536) -> np.ndarray:
    """The descriptor of each thumbnail's central ``crop`` (what a cropped copy of it looks like)."""
    if len(thumbs) > chunk:
        return np.concatenate(
            [cropped_descriptors(thumbs[i : i + chunk], crop, chunk) for i in range(0, len(thumbs), chunk)]
        )
    x = np.asarray(thumbs, dtype=np.float32)
    n = len(x)
    # _warp shows the central 24 px of an image zoomed by its factor: 24 / (32 * crop) of the width
    central = _warp(x, np.full(n, 24 / (THUMB * crop), dtype=np.float32), np.zeros(n), np.zeros(n))
    return descriptors(central.reshape(n, 24, 24))[0]


# ----------------------------------------------------------------------------- candidates


def _pairs_frame(a: np.ndarray, b: np.ndarray, signature: np.ndarray | str) -> pd.DataFrame:
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    frame = pd.DataFrame({"a": np.minimum(a, b), "b": np.maximum(a, b), "signature": signature})
    return frame[frame["a"] != frame["b"]]


def phash_candidates(sig: Signatures, nodes: np.ndarray, max_distance: int, group_cap: int = 64) -> pd.DataFrame:
    """Pairs of ``nodes`` whose pHashes, in either orientation, are within ``max_distance`` bits."""
    nodes = np.asarray(nodes, dtype=np.int64)
    values = np.concatenate([sig.phash[nodes], sig.phash_mirror[nodes]])
    owner = pd.DataFrame({"node": np.concatenate([nodes, nodes]), "mirror": np.repeat([False, True], len(nodes))})
    unique, owner["value"] = np.unique(values, return_inverse=True)
    owner = owner.drop_duplicates(["value", "node"])
    # a hash that many images share (flat images, borders) would give m^2 pairs: chain them instead
    rank = owner.groupby("value").cumcount()
    capped = owner[rank < group_cap]
    u, v, _ = near_pairs(unique, max_distance)
    edges = pd.DataFrame({"u": np.r_[u, np.arange(len(unique))], "v": np.r_[v, np.arange(len(unique))]})
    left = capped.rename(columns={"value": "u", "node": "a", "mirror": "ma"})
    right = capped.rename(columns={"value": "v", "node": "b", "mirror": "mb"})
    pairs = edges.merge(left, on="u").merge(right, on="v")
    extra = owner[rank >= group_cap]
    first = owner[rank == 0].set_index("value")["node"]
    found = [
        _pairs_frame(pairs["a"], pairs["b"], np.where(pairs["ma"] != pairs["mb"], "phash-mirror", "phash")),
        _pairs_frame(extra["node"], first.reindex(extra["value"]).to_numpy(), "phash"),
    ]
    return pd.concat(found, ignore_index=True)


def _top_k(
    query: np.ndarray, ref: np.ndarray, k: int, *, exclude_self: bool, block: int = 1024
) -> tuple[np.ndarray, ...]:
    """Exact ``k`` best references (by dot product) per query: (query, ref, score) triples."""
    qs, rs, ss = [], [], []
    k = min(k, len(ref) - (1 if exclude_self else 0))
    if k < 1:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    for start in range(0, len(query), block):
        rows = np.arange(start, min(start + block, len(query)))
        score = query[rows] @ ref.T
        if exclude_self:
            score[np.arange(len(rows)), rows] = -np.inf
        top = np.argpartition(-score, k - 1, axis=1)[:, :k] if k < score.shape[1] else np.argsort(-score, axis=1)[:, :k]
        qs.append(np.repeat(rows, k))
        rs.append(top.ravel())
        ss.append(np.take_along_axis(score, top, axis=1).ravel())
    return np.concatenate(qs), np.concatenate(rs), np.concatenate(ss)


def _kmeans(points: np.ndarray, centroids: int, seed: int = 0, rounds: int = 8, sample: int = 50_000) -> np.ndarray:
    """Spherical k-means centroids of unit vectors (trained on a sample; empty clusters re-seeded)."""
    rng = np.random.default_rng(seed)
    train = points[rng.choice(len(points), size=min(sample, len(points)), replace=False)]
    centre = train[rng.choice(len(train), size=centroids, replace=False)].copy()
    for _ in range(rounds):
        nearest = np.concatenate(
            [np.argmax(train[i : i + 4096] @ centre.T, axis=1) for i in range(0, len(train), 4096)]
        )
        total = np.zeros_like(centre)
        np.add.at(total, nearest, train)
        empty = np.bincount(nearest, minlength=centroids) == 0
        total[empty] = train[rng.choice(len(train), size=int(empty.sum()))]
        centre = total / np.maximum(np.linalg.norm(total, axis=1, keepdims=True), 1e-6)
    return centre.astype(np.float32)


def _probes(vectors: np.ndarray, centre: np.ndarray, p: int) -> np.ndarray:
    """The ``p`` nearest centroids of each vector."""
    out = []
    for i in range(0, len(vectors), 4096):
        score = vectors[i : i + 4096] @ centre.T
        out.append(
            np.argpartition(-score, p - 1, axis=1)[:, :p] if p < centre.shape[0] else np.argsort(-score, axis=1)[:, :p]
        )
    return np.concatenate(out)


def _indexed_top_k(queries: list[np.ndarray], ref: np.ndarray, k: int, probes: int) -> list[tuple[np.ndarray, ...]]:
    """Approximate ``k`` best references per query, for several query sets, by an inverted file.

    The references are cut into about 2 sqrt(n) clusters (spherical k-means); each query is only
    compared with the members of its ``probes`` nearest clusters. A copy sits next to its original
    in descriptor space, so it is almost always in one of them; the cost falls from n² to about
    n^1.5 dot products.
    """
    n = len(ref)
    centre = _kmeans(ref, max(2, int(2 * np.sqrt(n))))
    home = _probes(ref, centre, 1)[:, 0]
    order = np.argsort(home, kind="stable")
    starts = np.searchsorted(home[order], np.arange(len(centre) + 1))
    results: list[tuple[np.ndarray, ...]] = []
    for query in queries:  # query i is reference i seen another way: never its own neighbour
        probe = _probes(query, centre, min(probes, len(centre)))
        by_list = np.argsort(probe.ravel(), kind="stable")
        q_of = by_list // probe.shape[1]
        list_starts = np.searchsorted(probe.ravel()[by_list], np.arange(len(centre) + 1))
        qs, rs, ss = [], [], []
        for c in range(len(centre)):
            members = order[starts[c] : starts[c + 1]]
            asking = q_of[list_starts[c] : list_starts[c + 1]]
            if not len(members) or not len(asking):
                continue
            score = query[asking] @ ref[members].T
            score[asking[:, None] == members[None, :]] = -np.inf
            kk = min(k, len(members))
            top = (
                np.argpartition(-score, kk - 1, axis=1)[:, :kk]
                if kk < len(members)
                else np.argsort(-score, axis=1)[:, :kk]
            )
            qs.append(np.repeat(asking, kk))
            rs.append(members[top.ravel()])
            ss.append(np.take_along_axis(score, top, axis=1).ravel())
        q, r, sc = np.concatenate(qs), np.concatenate(rs), np.concatenate(ss)
        # the k best per query over all its probed clusters
        keep = np.lexsort((-sc, q))
        q, r, sc = q[keep], r[keep], sc[keep]
        first = np.r_[0, np.flatnonzero(np.diff(q)) + 1]
        rank = np.arange(len(q)) - np.repeat(first, np.diff(np.r_[first, len(q)]))
        best = rank < k
        results.append((q[best], r[best], sc[best]))
    return results


def neighbour_candidates(
    sig: Signatures, nodes: np.ndarray, k: int, *, exact_below: int = EXACT_NEIGHBOURS_BELOW
) -> pd.DataFrame:
    """Each node's ``k`` nearest other nodes by the low-frequency descriptor, either orientation;
    and its ``(k + 1) // 2`` nearest by the descriptor of its central 89% (the other a crop of it).

    Exact (every pair compared) below ``exact_below`` nodes, an inverted file above.
    """
    nodes = np.asarray(nodes, dtype=np.int64)
    n = len(nodes)
    if n < 2 or k < 1:
        return _pairs_frame(np.zeros(0), np.zeros(0), "lowfreq")
    plain, mirror = descriptors(sig.thumbs[nodes])
    cropped = cropped_descriptors(sig.thumbs[nodes])
    _, cropped_mirror = descriptors(_unit_square(cropped))
    # the mirror of a query against the plain references finds a mirrored copy as surely as the
    # other way round; each query keeps its k best over both orientations
    groups = [
        ([(plain, "lowfreq"), (mirror, "lowfreq-mirror")], k),
        ([(cropped, "lowfreq-crop"), (cropped_mirror, "lowfreq-crop-mirror")], (k + 1) // 2),
    ]
    queries = [q for group, _ in groups for q, _ in group]
    width = max(kk for _, kk in groups)
    with _single_threaded_blas():
        if n < exact_below:
            found = [_top_k(q, plain, width, exclude_self=True) for q in queries]
        else:
            found = _indexed_top_k(queries, plain, width, NEIGHBOUR_PROBES)
    parts, at = [], 0
    for group, kk in groups:
        q = np.concatenate([found[at + i][0] for i in range(len(group))])
        r = np.concatenate([found[at + i][1] for i in range(len(group))])
        score = np.concatenate([found[at + i][2] for i in range(len(group))])
        name = np.concatenate(
            [np.full(len(found[at + i][0]), label, dtype=object) for i, (_, label) in enumerate(group)]
        )
        at += len(group)
        order = np.lexsort((-score, q))
        q, r, score, name = q[order], r[order], score[order], name[order]
        keep = _rank_mask(q, kk) & (score >= DESCRIPTOR_FLOOR) & (q != r)
        parts.append(_pairs_frame(nodes[q[keep]], nodes[r[keep]], name[keep]))
    return pd.concat(parts, ignore_index=True)


@contextlib.contextmanager
def _single_threaded_blas():
    """One BLAS thread: many small matrix products on shared cores run faster without thread hand-offs."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn; without it, BLAS keeps its threads
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _rank_mask(query: np.ndarray, k: int) -> np.ndarray:
    """Keep the first ``k`` entries of each run of equal (sorted) query ids."""
    if not len(query):
        return np.zeros(0, dtype=bool)
    first = np.r_[0, np.flatnonzero(np.diff(query)) + 1]
    rank = np.arange(len(query)) - np.repeat(first, np.diff(np.r_[first, len(query)]))
    return rank < k


def _unit_square(flat: np.ndarray) -> np.ndarray:
    side = int(round(np.sqrt(flat.shape[1])))
    return flat.reshape(len(flat), side, side)


def candidate_pairs(sig: Signatures, nodes: np.ndarray, *, hamming: int, neighbours: int) -> pd.DataFrame:
    """Candidate pairs among ``nodes``: columns ``a < b`` (indices into ``sig``) and the signature
    that proposed them first (pHash before descriptor)."""
    parts = [phash_candidates(sig, nodes, hamming)]
    if neighbours > 0:
        parts.append(neighbour_candidates(sig, nodes, neighbours))
    pairs = pd.concat(parts, ignore_index=True)
    return pairs.drop_duplicates(["a", "b"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- verification


def _zoom_sampler(size: int, window: int, zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear sampling of the central ``window``-square of an image zoomed by ``zoom`` about its centre.

    Returns flat source indices (window², 4) and weights (window², 4) into a ``size``-square image.
    """
    centre = (size - 1) / 2
    offset = (size - window) // 2
    grid = np.clip((np.arange(window) + offset - centre) / zoom + centre, 0, size - 1)
    y, x = np.meshgrid(grid, grid, indexing="ij")
    y0 = np.clip(np.floor(y).astype(np.int64), 0, size - 2)
    x0 = np.clip(np.floor(x).astype(np.int64), 0, size - 2)
    fy, fx = y - y0, x - x0
    index = np.stack([y0 * size + x0, y0 * size + x0 + 1, (y0 + 1) * size + x0, (y0 + 1) * size + x0 + 1], -1)
    weight = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], -1)
    return index.reshape(-1, 4), weight.reshape(-1, 4).astype(np.float32)


def _sample(images: np.ndarray, sampler: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Apply a :func:`_zoom_sampler` to a batch of square images: (n, window²) (the 16 px search)."""
    index, weight = sampler
    flat = images.reshape(len(images), -1)
    return np.einsum("nwk,wk->nw", flat[:, index], weight)


def _unit(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit norm along the last axis."""
    x = x - x.sum(axis=-1, keepdims=True, dtype=np.float32) * np.float32(1 / x.shape[-1])
    norm = np.sqrt(np.einsum("...i,...i->...", x, x))[..., None]
    x /= np.maximum(norm, 1e-6)
    return x


def _ncc_with(unit_template: np.ndarray, window: np.ndarray) -> np.ndarray:
    """NCC of zero-mean unit-norm templates with raw windows (last axis), without normalising copies."""
    d = window.shape[-1]
    dot = np.einsum("...i,...i->...", unit_template, window)
    energy = np.einsum("...i,...i->...", window, window) - window.sum(-1) ** 2 / d
    return dot / np.sqrt(np.maximum(energy, 1e-6))


def _windows(images: np.ndarray, window: int) -> np.ndarray:
    """Every ``window``-square of each image, flattened: (n, positions, window²)."""
    from numpy.lib.stride_tricks import sliding_window_view

    view = sliding_window_view(images, (window, window), axis=(1, 2))
    return view.reshape(len(images), -1, window * window)


def _window_at(images: np.ndarray, window: int, position: np.ndarray) -> np.ndarray:
    """The ``window``-square of each image at its ``position`` (row, col), flattened."""
    from numpy.lib.stride_tricks import sliding_window_view

    view = sliding_window_view(images, (window, window), axis=(1, 2))
    return view[np.arange(len(images)), position[:, 0], position[:, 1]].reshape(len(images), window * window)


def _blur_batch(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a batch of float32 images (separable, edges reflected)."""
    import cv2

    if sigma <= 0:
        return images
    n, h, w = images.shape
    kernel = cv2.getGaussianKernel(2 * int(np.ceil(3 * sigma)) + 1, sigma).astype(np.float32).reshape(1, -1)
    rows = cv2.filter2D(np.ascontiguousarray(images).reshape(n * h, w), -1, kernel, borderType=cv2.BORDER_REFLECT)
    cols = np.ascontiguousarray(rows.reshape(n, h, w).transpose(0, 2, 1)).reshape(n * w, h)
    cols = cv2.filter2D(cols, -1, kernel, borderType=cv2.BORDER_REFLECT)
    return cols.reshape(n, w, h).transpose(0, 2, 1)


def _warp(images: np.ndarray, zoom: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """The central 24x24 of each 32 px image zoomed by its ``zoom`` and moved by ``(dy, dx)``: (n, 576).

    One bilinear ``cv2.remap`` over the images stacked into a single tall picture; coordinates are
    clipped to each image's own rows, so no image borrows pixels from its neighbour.
    """
    import cv2

    n = len(images)
    if n > _REMAP_MAX:  # remap takes pictures under 32,767 rows
        parts = [slice(i, i + _REMAP_MAX) for i in range(0, n, _REMAP_MAX)]
        return np.concatenate([_warp(images[p], zoom[p], dy[p], dx[p]) for p in parts])
    if not n:
        return np.zeros((0, 576), dtype=np.float32)
    centre = (THUMB - 1) / 2
    grid: np.ndarray = (np.arange(24, dtype=np.float32) + 4 - centre)[None, :] / zoom[:, None].astype(
        np.float32
    ) + centre
    ys = (
        np.clip(grid + dy[:, None].astype(np.float32), 0, THUMB - 1) + (np.arange(n, dtype=np.float32) * THUMB)[:, None]
    )
    xs = np.clip(grid + dx[:, None].astype(np.float32), 0, THUMB - 1)
    map_y = np.repeat(ys[:, :, None], 24, axis=2).reshape(n * 24, 24)
    map_x = np.repeat(xs[:, None, :], 24, axis=1).reshape(n * 24, 24)
    mosaic = np.ascontiguousarray(images, dtype=np.float32).reshape(n * THUMB, THUMB)
    out = cv2.remap(mosaic, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(n, 576)


_REMAP_MAX = 1000
_ZOOM_STEP = 1.04  # the fine stage tries the coarse zoom and its neighbours by this factor
# coarse configurations: (template side, zoom); side 0 takes a's template and searches b
_CONFIGS = [(0, z) for z in _ZOOMS] + [(1, z) for z in _ZOOMS if z != 1.0]
_SAMPLERS_16 = {z: _zoom_sampler(16, 12, z) for z in _ZOOMS}


def _coarse(
    t16: np.ndarray, ia: np.ndarray, ib: np.ndarray, mirror: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best NCC at 16 px over zoom x shift: (score, config index, position 0..24).

    ``t16`` holds each image once (the pairs index it), so the zoomed templates are made once
    per image and orientation, not once per pair.
    """
    flipped = t16[:, :, ::-1]
    templates = {
        (z, m): _unit(_sample(flipped if m else t16, _SAMPLERS_16[z]))
        for z in _ZOOMS
        for m in (False, True)
        if z != 1.0 or not m
    }
    yb = np.where(mirror[:, None, None], flipped[ib], t16[ib])
    found = []
    for search, template_side in ((yb, 0), (t16[ia], 1)):
        w = _windows(search, 12)
        energy = np.einsum("pwd,pwd->pw", w, w) - w.sum(-1) ** 2 / 144
        norm = np.sqrt(np.maximum(energy, 1e-6))
        zooms = [z for side, z in _CONFIGS if side == template_side]
        if template_side == 0:
            tpl = np.stack([templates[(z, False)][ia] for z in zooms], axis=1)  # (P, Z, 144)
        else:
            tpl = np.stack(
                [np.where(mirror[:, None], templates[(z, True)][ib], templates[(z, False)][ib]) for z in zooms], axis=1
            )
        found.append(np.matmul(tpl, w.transpose(0, 2, 1)) / norm[:, None, :])
    score = np.concatenate(found, axis=1)  # (P, configs, 25)
    flat = score.reshape(len(ia), -1).argmax(axis=1)
    config, position = np.divmod(flat, score.shape[2])
    return score.reshape(len(ia), -1)[np.arange(len(ia)), flat], config, position


def _parabola(left: np.ndarray, centre: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Sub-pixel offset of a peak from three samples (clipped to half a pixel)."""
    curve = left - 2 * centre + right
    offset = np.where(curve < -1e-9, 0.5 * (left - right) / np.where(curve < -1e-9, curve, -1.0), 0.0)
    return np.clip(offset, -0.5, 0.5)


def _fine(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, position: np.ndarray, sharper_x: np.ndarray, alike: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Refine an alignment at 32 px and measure it: (ncc, similarity, zoom).

    The template of ``x`` (zoomed by ``z``) is searched at the 3x3 whole-pixel positions around
    the coarse ``position`` in ``y``, refined to a sub-pixel shift and one zoom step either way;
    then the sharper image of each pair is blurred by the extra sigma that fits the other best
    (skipped for pairs ``alike`` in detail, which a blur would not bring closer).
    """
    n = len(x)
    rows = np.arange(n)
    zero = np.zeros(n, dtype=np.float32)
    tpl = _unit(_warp(x, z, zero, zero))
    surface = np.zeros((n, 3, 3))
    for i, dr in enumerate((-1, 0, 1)):
        for j, dc in enumerate((-1, 0, 1)):
            at = np.clip(position + [dr, dc], 0, 8)
            surface[:, i, j] = _ncc_with(tpl, _window_at(y, 24, at))
            surface[(at != position + [dr, dc]).any(1), i, j] = -2.0  # off the edge
    best = surface.reshape(n, 9).argmax(1)
    bi, bj = np.divmod(best, 3)
    at = np.clip(position + np.stack([bi - 1, bj - 1], 1), 0, 8)
    # sub-pixel: the peak's neighbours along each axis (edges: no refinement)
    pad = np.pad(surface, ((0, 0), (1, 1), (1, 1)), constant_values=-2.0)
    centre = surface[rows, bi, bj]
    sy = _parabola(pad[rows, bi, bj + 1], centre, pad[rows, bi + 2, bj + 1])
    sx = _parabola(pad[rows, bi + 1, bj], centre, pad[rows, bi + 1, bj + 2])
    sy = np.where((pad[rows, bi, bj + 1] > -2) & (pad[rows, bi + 2, bj + 1] > -2), sy, 0.0)
    sx = np.where((pad[rows, bi + 1, bj] > -2) & (pad[rows, bi + 1, bj + 2] > -2), sx, 0.0)
    # the window sits at a whole pixel: move the template's source by the opposite amount
    dy, dx = -sy / z, -sx / z
    window = _window_at(y, 24, at)
    score = _ncc_with(_unit(_warp(x, z, dy, dx)), window)
    zoom = z.astype(np.float64).copy()
    for factor in (1 / _ZOOM_STEP, _ZOOM_STEP):
        trial = _ncc_with(_unit(_warp(x, z * factor, dy, dx)), window)
        better = trial > score
        score[better], zoom[better] = trial[better], z[better] * factor
    part_x, part_y = _warp(x, zoom, dy, dx), _window_at(y, 24, at)
    ncc = _ncc_with(_unit(part_x), part_y)
    differ = np.flatnonzero(~alike)
    if len(differ):
        sx, ex, ey = sharper_x[differ], x[differ], y[differ]
        sharper = np.where(sx[:, None, None], ex, ey)
        for sigma in _BLURS[1:]:
            blurred = _blur_batch(sharper, sigma)
            t = np.where(sx[:, None], _warp(blurred, zoom[differ], dy[differ], dx[differ]), part_x[differ])
            w = np.where(sx[:, None], part_y[differ], _window_at(blurred, 24, at[differ]))
            score = _ncc_with(_unit(t), w)
            better = score > ncc[differ]
            rows = differ[better]
            ncc[rows], part_x[rows], part_y[rows] = score[better], t[better], w[better]
    return ncc, _gradient_similarity(part_x, part_y), zoom


def _gradient_similarity(x: np.ndarray, y: np.ndarray, trim: float = _TRIM) -> np.ndarray:
    """Correlation of the two images' gradients, leaving out the ``trim`` share that fit worst."""
    side = int(np.sqrt(x.shape[1]))

    def grad(v: np.ndarray) -> np.ndarray:
        v = _blur_batch(v.reshape(len(v), side, side).astype(np.float32), _GRADIENT_BLUR)
        gx = v[:, 1:-1, 2:] - v[:, 1:-1, :-2]
        gy = v[:, 2:, 1:-1] - v[:, :-2, 1:-1]
        return np.concatenate([gx.reshape(len(v), -1), gy.reshape(len(v), -1)], axis=1)

    u, v = grad(x), grad(y)
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-6)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-6)
    misfit = (u - v) ** 2
    rank = int((1 - trim) * (misfit.shape[1] - 1))
    cut = np.partition(misfit, rank, axis=1)[:, rank : rank + 1]
    keep = misfit <= cut
    uv = (u * v * keep).sum(1)
    return uv / np.maximum(np.sqrt((u * u * keep).sum(1) * (v * v * keep).sum(1)), 1e-12)


def verify_pairs(
    thumbs: np.ndarray, a: np.ndarray, b: np.ndarray, detail: np.ndarray, batch: int = 4096
) -> pd.DataFrame:
    """Pixel verification of candidate pairs ``(a[i], b[i])`` (indices into ``thumbs``).

    Columns: ``coarse`` (best NCC at 16 px), ``ncc`` (NCC at 32 px at the best alignment and
    matched blur; NaN when the coarse stage already failed), ``similarity`` (trimmed gradient
    correlation there), ``mirror`` and ``zoom`` (of b relative to a). The orientation is the one
    in which the two low-frequency descriptors agree best. ``detail`` (per thumbnail) says which
    image of a pair is the sharper one, the one blurred to match.
    """
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    n = len(a)
    coarse_all, ncc, sim = np.zeros(n), np.full(n, np.nan), np.full(n, np.nan)
    mirror_all, zoom_all = np.zeros(n, dtype=bool), np.ones(n)
    for start in range(0, n, batch):
        sl = slice(start, min(start + batch, n))
        pa, pb = a[sl], b[sl]
        used, inverse = np.unique(np.r_[pa, pb], return_inverse=True)
        ia, ib = inverse[: len(pa)], inverse[len(pa) :]
        t32 = thumbs[used].astype(np.float32)
        plain, flipped = descriptors(thumbs[used])
        mirror = (plain[ia] * flipped[ib]).sum(1) > (plain[ia] * plain[ib]).sum(1)
        coarse, config, position = _coarse(_down(t32), ia, ib, mirror)
        coarse_all[sl], mirror_all[sl] = coarse, mirror
        fine = np.flatnonzero(coarse >= COARSE_FLOOR)
        if not len(fine):
            continue
        xa = t32[ia[fine]]
        xb = np.where(mirror[fine, None, None], t32[ib[fine]][:, :, ::-1], t32[ib[fine]])
        side = np.array([c[0] for c in _CONFIGS])[config[fine]]
        z = np.array([c[1] for c in _CONFIGS], dtype=np.float32)[config[fine]]
        x = np.where(side[:, None, None] == 0, xa, xb)
        y = np.where(side[:, None, None] == 0, xb, xa)
        da, db = detail[pa[fine]], detail[pb[fine]]
        sharper_x = np.where(side == 0, da >= db, db >= da)
        alike = np.minimum(da, db) >= _ALIKE_DETAIL * np.maximum(da, db)
        coarse_rc = np.stack(np.divmod(position[fine], 5), axis=1) * 2
        f_ncc, f_sim, f_zoom = _fine(x, y, z, coarse_rc, sharper_x, alike)
        idx = start + fine
        ncc[idx], sim[idx] = f_ncc, f_sim
        zoom_all[idx] = np.where(side == 0, f_zoom, 1 / f_zoom)
    return pd.DataFrame({"coarse": coarse_all, "ncc": ncc, "similarity": sim, "mirror": mirror_all, "zoom": zoom_all})


def _down(images: np.ndarray) -> np.ndarray:
    """32 px thumbnails averaged down to 16 px."""
    return (images[:, 0::2, 0::2] + images[:, 1::2, 0::2] + images[:, 0::2, 1::2] + images[:, 1::2, 1::2]) * 0.25


def decide(
    verified: pd.DataFrame,
    reason_a: np.ndarray,
    reason_b: np.ndarray,
    similarity: float,
    detail: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per verified candidate: ``near``, ``undecidable`` or ``""`` (not the same picture), and the reason.

    A pair is undecidable when its pixels correlate (NCC at least :data:`NCC_FLOOR`) but one of
    its images is too blurred, flat or small for that to mean anything; the reason names it. A
    pair whose blurrier image has ``detail`` below :data:`LOW_DETAIL` needs a similarity of at
    least :data:`LOW_DETAIL_SIMILARITY` (or ``similarity`` if higher).
    """
    ncc = verified["ncc"].fillna(-1.0).to_numpy()
    sim = verified["similarity"].fillna(-1.0).to_numpy()
    threshold = np.full(len(verified), similarity)
    if detail is not None:
        threshold[detail < LOW_DETAIL] = max(similarity, LOW_DETAIL_SIMILARITY)
    reason = np.where(reason_a != "", reason_a, reason_b).astype(object)
    both = (reason_a != "") & (reason_b != "") & (reason_a != reason_b)
    reason[both] = reason_a[both] + "+" + reason_b[both]
    correlated = ncc >= NCC_FLOOR
    kind = np.full(len(verified), "", dtype=object)
    kind[correlated & (reason != "")] = "undecidable"
    kind[correlated & (reason == "") & (sim >= threshold)] = "near"
    return kind, np.where(kind == "undecidable", reason, "")


# ----------------------------------------------------------------------------- pairs -> leaks


@dataclass
class Evidence:
    """Verified pairs of rows (positions in the frame), before folds and splits are looked at.

    Rows that share a file (the same SHA-256) share a *node*: the first of them. ``pairs`` links
    nodes by ``near`` or ``identity`` evidence; ``undecidable`` holds the pairs that could not be
    decided, which never join anything.
    """

    exact_key: np.ndarray  # per row: SHA-256 code
    node: np.ndarray  # per row: its node (a row position), -1 for rows not taking part
    pairs: pd.DataFrame = field(default_factory=lambda: _empty_pairs())  # a, b, kind, similarity, signature
    undecidable: pd.DataFrame = field(default_factory=lambda: _empty_pairs(reason=True))

    def clusters(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Component per row over exact duplicates and verified pairs, only through ``rows`` if given."""
        n = len(self.exact_key)
        exact_a, exact_b = key_edges(self.exact_key)
        a = np.concatenate([exact_a, self.pairs["a"].to_numpy(dtype=np.int64)])
        b = np.concatenate([exact_b, self.pairs["b"].to_numpy(dtype=np.int64)])
        if rows is not None:
            keep = np.zeros(n, dtype=bool)
            keep[rows] = True
            ok = keep[a] & keep[b]
            a, b = a[ok], b[ok]
        return connected_components(n, a, b)


def _empty_pairs(reason: bool = False) -> pd.DataFrame:
    columns = {
        "a": pd.Series(dtype=np.int64),
        "b": pd.Series(dtype=np.int64),
        "kind": pd.Series(dtype=object),
        "similarity": pd.Series(dtype=float),
        "signature": pd.Series(dtype=object),
    }
    if reason:
        columns["reason"] = pd.Series(dtype=object)
    return pd.DataFrame(columns)


def _places(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fold = frame["fold"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    split = frame["split"].astype(object).where(frame["split"].notna(), "").to_numpy()
    place = pd.Series(list(zip(fold.tolist(), split.tolist(), strict=True)))
    return fold, split, pd.factorize(place)[0]


def _node_pairs_to_rows(pairs: pd.DataFrame, node: np.ndarray, place: np.ndarray, rows: np.ndarray) -> pd.DataFrame:
    """Node pairs expanded to row pairs: one representative row per node and place."""
    reps = pd.DataFrame({"node": node[rows], "place": place[rows], "row": rows}).drop_duplicates(["node", "place"])
    left = reps.rename(columns={"node": "a", "row": "row_a", "place": "place_a"})
    right = reps.rename(columns={"node": "b", "row": "row_b", "place": "place_b"})
    merged = pairs.merge(left, on="a").merge(right, on="b")
    merged = merged[merged["place_a"] != merged["place_b"]]
    return merged.drop(columns=["a", "b"]).rename(columns={"row_a": "a", "row_b": "b"})


def _report(frame: pd.DataFrame, pairs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    fold, split, _ = _places(frame)
    a, b = pairs["a"].to_numpy(dtype=np.int64), pairs["b"].to_numpy(dtype=np.int64)
    across_fold = (fold[a] >= 0) & (fold[b] >= 0) & (fold[a] != fold[b])
    across_split = (split[a] != "") & (split[b] != "") & (split[a] != split[b])
    keep = across_fold | across_split
    a, b, pairs = a[keep], b[keep], pairs[keep]
    across = np.where(
        across_fold[keep] & across_split[keep], "fold+split", np.where(across_fold[keep], "fold", "split")
    )
    ids = frame["image_id"].to_numpy()
    # image_id_a is the smaller id, so that the report reads the same whatever the row order
    swap = ids[a].astype(str) > ids[b].astype(str)
    a, b = np.where(swap, b, a), np.where(swap, a, b)
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
            "similarity": pairs["similarity"].to_numpy(dtype=float).round(4),
            "signature": pairs["signature"].to_numpy(),
            **({"reason": pairs["reason"].to_numpy()} if "reason" in columns else {}),
        },
        columns=columns,
    )
    kind_order = {k: i for i, k in enumerate((*KINDS, "undecidable"))}
    report = report.sort_values(
        ["kind", "similarity", "image_id_a", "image_id_b"],
        key=lambda s: s.map(kind_order) if s.name == "kind" else (-s if s.name == "similarity" else s),
    )
    return report.drop_duplicates(["image_id_a", "image_id_b"]).reset_index(drop=True)


def find_leaks(frame: pd.DataFrame, evidence: Evidence) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Verified pairs of labelled rows that sit in two folds or two splits, and undecidable ones.

    Rows sharing a file and a (fold, split) place are represented by one of them, so a file copied
    m times costs at most places² pairs, not m². Columns: :data:`REPORT_COLUMNS`, and
    :data:`UNDECIDABLE_COLUMNS` for the undecidable pairs.
    """
    eligible = labelled_rows(frame).to_numpy()
    _, _, place = _places(frame)
    pos = np.flatnonzero(eligible)
    exact = pd.DataFrame({"key": evidence.exact_key[pos], "place": place[pos], "row": pos}).drop_duplicates(
        ["key", "place"]
    )
    same = exact.merge(exact, on="key", suffixes=("_a", "_b"))
    same = same[same["row_a"] < same["row_b"]]
    parts = [
        pd.DataFrame(
            {"a": same["row_a"], "b": same["row_b"], "kind": "exact", "similarity": 1.0, "signature": "sha256"}
        )
    ]
    node = evidence.node
    taking_part = pos[node[pos] >= 0]
    if len(evidence.pairs):
        parts.append(_node_pairs_to_rows(evidence.pairs, node, place, taking_part))
    leaks = _report(frame, pd.concat(parts, ignore_index=True), REPORT_COLUMNS)
    undecided = (
        _node_pairs_to_rows(evidence.undecidable, node, place, taking_part) if len(evidence.undecidable) else None
    )
    if undecided is None or undecided.empty:
        return leaks, pd.DataFrame(columns=UNDECIDABLE_COLUMNS)
    return leaks, _report(frame, undecided, UNDECIDABLE_COLUMNS)


# ----------------------------------------------------------------------------- workspace: signatures


# An original no larger than this (pixels, longer side) is a face crop already (FER2013's 48x48,
# FERV39k's face frames): it is compared as it is, since aligning it again only adds resampling and
# black borders where the template reaches past the picture.
SMALL_ORIGINAL = 160


def _face_paths(ws, frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per row: the file to compare and its kind: the face crop of a row that has one (``aligned``
    or ``registered``), unless its original is a small face picture already; else the original."""
    small = pd.concat([frame["width"], frame["height"]], axis=1).max(axis=1).fillna(0) <= SMALL_ORIGINAL
    crop = frame["aligned_path"].notna() & frame["face_status"].isin(["aligned", "registered"]) & ~small
    rel = frame["aligned_path"].where(crop, frame["original_path"])
    kind = pd.Series(np.where(crop, "aligned", "original"), index=frame.index, dtype=object)
    return rel, kind


_CACHE_COLUMNS = ["sha256", "kind", "size", "mtime_ns", "phash", "phash_mirror", "thumb", "width", "height"]


def _read_cache(path: Path) -> pd.DataFrame:
    if path.exists():
        try:
            table = pd.read_parquet(path)
            if list(table.columns) == _CACHE_COLUMNS:
                return table
        except (OSError, ValueError):
            pass  # a damaged cache is only a cache: compute the signatures again
    types = {
        "size": np.int64,
        "mtime_ns": np.int64,
        "phash": np.int64,
        "phash_mirror": np.int64,
        "width": np.int64,
        "height": np.int64,
    }
    return pd.DataFrame({c: pd.Series(dtype=types.get(c, object)) for c in _CACHE_COLUMNS})


def row_signatures(
    ws,
    dataset: str,
    frame: pd.DataFrame,
    rows: np.ndarray,
    *,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[Signatures, np.ndarray]:
    """Signatures of the files of ``rows`` (positions in ``frame``), cached, and each row's node.

    Returns the signatures of every row position (rows outside ``rows`` or unreadable: ``ok``
    False) and ``node``: per row, the first row of ``rows`` with the same SHA-256 and file kind,
    -1 outside ``rows``. The cache ``tables/<dataset>/signatures.parquet`` is keyed by SHA-256
    and file kind; an entry is reused while the file keeps its size and modification time (a
    re-alignment rewrites the crops, so their signatures are computed again).
    """
    from .fsutil import atomic_path

    rows = np.asarray(rows, dtype=np.int64)
    rel, kind = _face_paths(ws, frame)
    part = pd.DataFrame(
        {
            "sha256": frame["sha256"].to_numpy()[rows],
            "kind": kind.to_numpy()[rows],
            "path": rel.to_numpy()[rows],
            "row": rows,
        }
    )
    first = part.drop_duplicates(["sha256", "kind"])
    node = np.full(len(frame), -1, dtype=np.int64)
    node[rows] = (
        first.set_index(["sha256", "kind"])["row"]
        .reindex(pd.MultiIndex.from_frame(part[["sha256", "kind"]]))
        .to_numpy()
    )
    todo = first.copy()
    stats = []
    for path in todo["path"]:
        try:
            st = ws.absolute(path).stat()
            stats.append((st.st_size, st.st_mtime_ns))
        except (OSError, TypeError):
            stats.append((-1, -1))
    todo["size"] = np.array([s for s, _ in stats], dtype=np.int64)
    todo["mtime_ns"] = np.array([m for _, m in stats], dtype=np.int64)
    cache_path = ws.tables_dir(dataset) / SIGNATURE_TABLE
    cached = _read_cache(cache_path)
    merged = todo.merge(cached, on=["sha256", "kind", "size", "mtime_ns"], how="left")
    missing = (merged["thumb"].isna() & (merged["size"] >= 0)).to_numpy()
    if missing.any():
        files = [ws.absolute(p) for p in merged.loc[missing, "path"]]
        fresh = signatures_of_files(files, workers=workers, progress=progress)
        good = fresh.ok
        idx = np.flatnonzero(missing)
        merged.loc[idx, "phash"] = np.where(good, fresh.phash.view(np.int64), 0)
        merged.loc[idx, "phash_mirror"] = np.where(good, fresh.phash_mirror.view(np.int64), 0)
        merged.loc[idx, "thumb"] = pd.Series(
            [t.tobytes() if g else b"" for t, g in zip(fresh.thumbs, good, strict=True)], index=idx, dtype=object
        )
        merged.loc[idx, "width"] = np.where(good, fresh.width, 0)
        merged.loc[idx, "height"] = np.where(good, fresh.height, 0)
        known = merged.loc[merged["thumb"].notna(), _CACHE_COLUMNS]
        keys = known.set_index(["sha256", "kind"]).index
        table = pd.concat([cached[~cached.set_index(["sha256", "kind"]).index.isin(keys)], known], ignore_index=True)
        for name in ("size", "mtime_ns", "phash", "phash_mirror", "width", "height"):
            table[name] = table[name].astype(np.int64)
        ws.tables_dir(dataset).mkdir(parents=True, exist_ok=True)
        with atomic_path(cache_path) as tmp:
            table.to_parquet(tmp, index=False)
    n = len(frame)
    sig = Signatures(
        phash=np.zeros(n, dtype=np.uint64),
        phash_mirror=np.zeros(n, dtype=np.uint64),
        thumbs=np.zeros((n, THUMB, THUMB), dtype=np.uint8),
        width=np.zeros(n, dtype=np.int64),
        height=np.zeros(n, dtype=np.int64),
        ok=np.zeros(n, dtype=bool),
    )
    thumbs = merged["thumb"].to_numpy()
    readable = np.array([isinstance(t, bytes) and len(t) == THUMB * THUMB for t in thumbs], dtype=bool)
    at = merged["row"].to_numpy(dtype=np.int64)[readable]
    sig.ok[at] = True
    sig.phash[at] = merged["phash"].to_numpy()[readable].astype(np.int64).view(np.uint64)
    sig.phash_mirror[at] = merged["phash_mirror"].to_numpy()[readable].astype(np.int64).view(np.uint64)
    sig.thumbs[at] = np.frombuffer(b"".join(thumbs[readable]), dtype=np.uint8).reshape(-1, THUMB, THUMB)
    sig.width[at] = merged["width"].to_numpy()[readable].astype(np.int64)
    sig.height[at] = merged["height"].to_numpy()[readable].astype(np.int64)
    return sig, node


def row_hashes(
    ws, dataset: str, frame: pd.DataFrame, *, workers: int | None = None, progress: ProgressFn | None = None
) -> pd.Series:
    """pHash per row (``uint64`` values in an object series, None where unreadable), cached."""
    sig, node = row_signatures(ws, dataset, frame, np.arange(len(frame)), workers=workers, progress=progress)
    values = [int(sig.phash[k]) if sig.ok[k] else None for k in node]
    return pd.Series(values, index=frame.index, dtype=object)


# ----------------------------------------------------------------------------- the check on arrays


@dataclass
class Verdicts:
    """Every candidate pair of a :func:`find_duplicates` run and what verification made of it."""

    pairs: pd.DataFrame  # a, b, signature, coarse, ncc, similarity, mirror, zoom, kind, reason
    detail: np.ndarray
    contrast: np.ndarray
    reason: np.ndarray  # per image: why it is undecidable ("" when it is not)


_VERIFY_CHUNK = 8192  # candidate pairs per task sent to a worker process


def _verify_task(task: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> pd.DataFrame:
    thumbs, a, b, detail = task
    with _single_threaded_blas():
        return verify_pairs(thumbs, a, b, detail)


def find_duplicates(
    sig: Signatures,
    nodes: np.ndarray | None = None,
    *,
    hamming: int = DEFAULT_HAMMING,
    neighbours: int = DEFAULT_NEIGHBOURS,
    similarity: float = DEFAULT_SIMILARITY,
    keep: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> Verdicts:
    """Candidates, verification and decision among the images ``nodes`` of ``sig`` (default: all readable).

    Pure: signatures in, verdicts out (``workers`` processes verify the candidates). Exact
    duplicates (the same file) are the caller's business: give each file once. ``keep(a, b)``,
    when given, says which candidate pairs are worth verifying (the others are dropped).
    """
    progress = progress or null_progress
    nodes = np.flatnonzero(sig.ok) if nodes is None else np.asarray(nodes, dtype=np.int64)[sig.ok[nodes]]
    detail, contrast = np.zeros(len(sig), dtype=np.float32), np.zeros(len(sig), dtype=np.float32)
    if len(nodes):
        detail[nodes], contrast[nodes] = detail_and_contrast(sig.thumbs[nodes])
    reason = undecidable_reason(detail, contrast, sig.width, sig.height)
    pairs = (
        candidate_pairs(sig, nodes, hamming=hamming, neighbours=neighbours)
        if len(nodes) > 1
        else _pairs_frame(np.zeros(0), np.zeros(0), "")
    )
    if keep is not None and len(pairs):
        pairs = pairs[keep(pairs["a"].to_numpy(dtype=np.int64), pairs["b"].to_numpy(dtype=np.int64))].reset_index(
            drop=True
        )
    total = len(pairs)
    a_all, b_all = pairs["a"].to_numpy(dtype=np.int64), pairs["b"].to_numpy(dtype=np.int64)

    def tasks():
        for start in range(0, total, _VERIFY_CHUNK):
            a, b = a_all[start : start + _VERIFY_CHUNK], b_all[start : start + _VERIFY_CHUNK]
            used, inverse = np.unique(np.r_[a, b], return_inverse=True)  # ship only the thumbnails needed
            yield sig.thumbs[used], inverse[: len(a)], inverse[len(a) :], detail[used]

    checked: list[pd.DataFrame] = []
    progress("verifying candidates", 0, total)
    workers = workers or os.cpu_count() or 1
    if workers > 1 and total > _VERIFY_CHUNK:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            pending: deque = deque()
            for task in tasks():  # at most two tasks per worker in flight: bounded memory
                pending.append(pool.submit(_verify_task, task))
                if len(pending) >= 2 * workers:
                    checked.append(pending.popleft().result())
                    progress("verifying candidates", min(len(checked) * _VERIFY_CHUNK, total), total)
            while pending:
                checked.append(pending.popleft().result())
                progress("verifying candidates", min(len(checked) * _VERIFY_CHUNK, total), total)
    else:
        for task in tasks():
            checked.append(_verify_task(task))
            progress("verifying candidates", min(len(checked) * _VERIFY_CHUNK, total), total)
    verified = pd.concat(checked, ignore_index=True) if checked else verify_pairs(sig.thumbs, a_all, b_all, detail)
    pairs = pd.concat([pairs.reset_index(drop=True), verified], axis=1)
    a, b = pairs["a"].to_numpy(dtype=np.int64), pairs["b"].to_numpy(dtype=np.int64)
    kind, why = decide(pairs, reason[a], reason[b], similarity, np.minimum(detail[a], detail[b]))
    pairs["kind"], pairs["reason"] = kind, why
    return Verdicts(pairs, detail, contrast, reason)


# ----------------------------------------------------------------------------- identity model


def identity_embeddings(
    ws, frame: pd.DataFrame, model: Path, *, batch: int = 64, progress: ProgressFn | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised face embeddings from a face-recognition ONNX model, and a mask of rows done.

    The model takes NCHW float RGB input scaled to [-1, 1] (insightface's ArcFace convention) at
    the size its input declares (112x112 when the size is dynamic).
    """
    import onnxruntime as ort

    from .vision.decode import read_crop

    progress = progress or null_progress
    model = Path(model)
    if not model.is_file():
        raise UsageError(f"identity model {model} not found: pass the path of a face-recognition .onnx file")
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    load_errors = (
        ort_errors.Fail,
        ort_errors.InvalidArgument,
        ort_errors.InvalidGraph,
        ort_errors.InvalidProtobuf,
        ort_errors.NoSuchFile,
        ort_errors.NotImplemented,
        ort_errors.RuntimeException,
    )
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
                rgb = read_crop(paths[i], (width, height)).astype(np.float32)
            except ImageUnreadable:
                continue  # not embedded: the row takes no part in identity pairs
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
    """What the check found: verified ``leaks`` (:data:`REPORT_COLUMNS`) and the ``undecidable``
    pairs (:data:`UNDECIDABLE_COLUMNS`), which are not leaks."""

    dataset: str
    leaks: pd.DataFrame
    rows_checked: int
    hashed: int
    not_hashed: int
    hamming: int
    identity_model: str | None
    identity_threshold: float | None
    undecidable: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UNDECIDABLE_COLUMNS))
    neighbours: int = DEFAULT_NEIGHBOURS
    similarity: float = DEFAULT_SIMILARITY
    candidates: int = 0
    report_path: str | None = None  # relative to the workspace
    undecidable_path: str | None = None

    @property
    def found(self) -> bool:
        return len(self.leaks) > 0

    def counts(self) -> dict[str, int]:
        """Leaks per ``kind/across``, e.g. ``{"near/split": 3}``."""
        if not self.found:
            return {}
        keys = self.leaks["kind"] + "/" + self.leaks["across"]
        return {k: int(v) for k, v in keys.value_counts().sort_index().items()}

    def undecidable_counts(self) -> dict[str, int]:
        """Undecidable pairs per reason (``blurred``, ``flat``, ``tiny``, or two joined by ``+``)."""
        if self.undecidable.empty:
            return {}
        return {k: int(v) for k, v in self.undecidable["reason"].value_counts().sort_index().items()}

    def summary(self) -> dict[str, Any]:
        return {
            "leaks": len(self.leaks),
            "by_kind": self.counts(),
            "undecidable": len(self.undecidable),
            "undecidable_by_reason": self.undecidable_counts(),
            "rows_checked": self.rows_checked,
            "hashed": self.hashed,
            "not_hashed": self.not_hashed,
            "candidates": self.candidates,
            "hamming": self.hamming,
            "neighbours": self.neighbours,
            "similarity": self.similarity,
            "identity_model": self.identity_model,
            "identity_threshold": self.identity_threshold,
            "report": self.report_path,
            "undecidable_report": self.undecidable_path,
        }

    def raise_if_found(self) -> None:
        """Raise :class:`LeakageFound` for verified leaks; undecidable pairs never count."""
        if self.found:
            parts = ", ".join(f"{v} {k}" for k, v in self.counts().items())
            exc = LeakageFound(
                f"{len(self.leaks)} leaks in {self.dataset} ({parts}): the same image or person in two folds "
                f"or splits; see {self.report_path} and drop one image of each pair (ferdata folds keeps "
                "duplicates without subject ids in one fold)"
            )
            exc.report = self
            raise exc


def _check_options(hamming: int, neighbours: int, similarity: float) -> None:
    if hamming < 0 or hamming > 32:
        raise UsageError(f"hamming must be between 0 and 32 bits (got {hamming}); 6 is a good start")
    if neighbours < 0:
        raise UsageError(f"neighbours must be 0 or more (got {neighbours}); {DEFAULT_NEIGHBOURS} is the default")
    if not 0.0 < similarity <= 1.0:
        raise UsageError(
            f"similarity must be in (0, 1] (got {similarity}); {DEFAULT_SIMILARITY} is the calibrated default"
        )


def gather_evidence(
    ws,
    dataset: str,
    frame: pd.DataFrame,
    *,
    hamming: int = DEFAULT_HAMMING,
    neighbours: int = DEFAULT_NEIGHBOURS,
    similarity: float = DEFAULT_SIMILARITY,
    identity_model: Path | None = None,
    identity_threshold: float = DEFAULT_IDENTITY_THRESHOLD,
    across_only: bool = False,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[Evidence, dict[str, int]]:
    """Signatures (cached), verified pairs and, with a model, identity pairs for the labelled rows.

    With ``across_only``, only candidates that could be a leak under the frame's current folds and
    splits are verified (two rows in one place never are); :func:`ferdata.folds.make_folds` needs
    every pair, to keep duplicates together, and leaves it off. Returns the evidence and counts:
    ``hashed`` (rows whose file could be read), ``candidates`` (pairs verified).
    """
    _check_options(hamming, neighbours, similarity)
    rows = np.flatnonzero(labelled_rows(frame).to_numpy())
    sig, node = row_signatures(ws, dataset, frame, rows, workers=workers, progress=progress)
    nodes = np.unique(node[node >= 0])
    keep = _could_leak(frame, node, rows) if across_only else None
    verdicts = find_duplicates(
        sig,
        nodes,
        hamming=hamming,
        neighbours=neighbours,
        similarity=similarity,
        keep=keep,
        workers=workers,
        progress=progress,
    )
    found = verdicts.pairs
    near = found[found["kind"] == "near"]
    pairs = pd.DataFrame(
        {
            "a": near["a"],
            "b": near["b"],
            "kind": "near",
            "similarity": near["similarity"],
            "signature": near["signature"],
        }
    )
    undecided = found[found["kind"] == "undecidable"]
    undecidable = pd.DataFrame(
        {
            "a": undecided["a"],
            "b": undecided["b"],
            "kind": "undecidable",
            "similarity": undecided["ncc"],
            "signature": undecided["signature"],
            "reason": undecided["reason"],
        }
    )
    if identity_model is not None:
        emb, ok = identity_embeddings(ws, frame.iloc[rows], identity_model, progress=progress)
        full = np.zeros((len(frame), emb.shape[1]), dtype=np.float32)
        full[rows] = emb
        a, b, s = similar_pairs(full, identity_threshold, rows[ok])
        a, b = node[a], node[b]
        same = pd.DataFrame(
            {
                "a": np.minimum(a, b),
                "b": np.maximum(a, b),
                "kind": "identity",
                "similarity": s,
                "signature": "identity-model",
            }
        )
        same = same[same["a"] != same["b"]]
        pairs = pd.concat([pairs, same], ignore_index=True).drop_duplicates(["a", "b"])  # near wins over identity
    evidence = Evidence(
        exact_key=pd.factorize(frame["sha256"])[0].astype(np.int64),
        node=node,
        pairs=pairs.reset_index(drop=True),
        undecidable=undecidable.reset_index(drop=True),
    )
    hashed = int(np.isin(node[rows], np.flatnonzero(sig.ok)).sum())
    return evidence, {"hashed": hashed, "candidates": len(found)}


def _could_leak(
    frame: pd.DataFrame, node: np.ndarray, rows: np.ndarray
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``keep(a, b)`` for node pairs: False where no row of ``a`` and row of ``b`` can be a leak.

    A node whose rows all sit in one (fold, split) place is compared by that place, with the rule
    of :func:`find_leaks` (two known folds that differ, or two known splits that differ); a node
    spread over several places is always kept.
    """
    fold, split, _ = _places(frame)
    table = pd.DataFrame({"node": node[rows], "fold": fold[rows], "split": split[rows]})
    spread = table.drop_duplicates().groupby("node").size() > 1
    first = table.drop_duplicates("node").set_index("node")
    node_fold = np.full(len(frame), -1, dtype=np.int64)
    node_split = np.full(len(frame), "", dtype=object)
    node_spread = np.zeros(len(frame), dtype=bool)
    node_fold[first.index.to_numpy()] = first["fold"].to_numpy()
    node_split[first.index.to_numpy()] = first["split"].to_numpy()
    node_spread[spread.index[spread].to_numpy()] = True

    def keep(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        fa, fb, sa, sb = node_fold[a], node_fold[b], node_split[a], node_split[b]
        across = ((fa >= 0) & (fb >= 0) & (fa != fb)) | ((sa != "") & (sb != "") & (sa != sb))
        return across | node_spread[a] | node_spread[b]

    return keep


def write_report(ws, dataset: str, table: pd.DataFrame, name: str = REPORT_FILE) -> str:
    from .fsutil import atomic_path

    path = ws.tables_dir(dataset) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return ws.relative(path)


def report_from(
    ws,
    dataset: str,
    frame: pd.DataFrame,
    evidence: Evidence,
    counts: dict[str, int],
    *,
    hamming: int,
    neighbours: int = DEFAULT_NEIGHBOURS,
    similarity: float = DEFAULT_SIMILARITY,
    identity_model: Path | None,
    identity_threshold: float,
) -> LeakageReport:
    """Find the leaks for the frame's current folds and splits, and write both report files."""
    leaks, undecidable = find_leaks(frame, evidence)
    checked = int(labelled_rows(frame).sum())
    return LeakageReport(
        dataset=dataset,
        leaks=leaks,
        undecidable=undecidable,
        rows_checked=checked,
        hashed=counts["hashed"],
        not_hashed=checked - counts["hashed"],
        candidates=counts["candidates"],
        hamming=hamming,
        neighbours=neighbours,
        similarity=similarity,
        identity_model=str(identity_model) if identity_model is not None else None,
        identity_threshold=identity_threshold if identity_model is not None else None,
        report_path=write_report(ws, dataset, leaks),
        undecidable_path=write_report(ws, dataset, undecidable, UNDECIDABLE_FILE),
    )


@writes_workspace("check-leakage")
def check_leakage(
    ws: WorkspaceLike,
    *,
    dataset: str | None = None,
    hamming: int = DEFAULT_HAMMING,
    neighbours: int = DEFAULT_NEIGHBOURS,
    similarity: float = DEFAULT_SIMILARITY,
    identity_model: Path | str | None = None,
    identity_threshold: float = DEFAULT_IDENTITY_THRESHOLD,
    strict: bool = False,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> LeakageReport:
    """Check a workspace's dataset for duplicates and identities across folds and splits.

    Reads the manifest (does not change it), writes ``tables/<dataset>/leakage.csv`` (verified
    leaks), ``tables/<dataset>/leakage_undecidable.csv`` and the signature cache. With ``strict``,
    raises :class:`~ferdata.errors.LeakageFound` after writing the reports when any verified leak
    is found; undecidable pairs never make it fail.
    """
    ws = Workspace.of(ws)
    manifest = ws.load(dataset)
    frame = manifest.frame.reset_index(drop=True)
    model = Path(identity_model) if identity_model is not None else None
    evidence, counts = gather_evidence(
        ws,
        manifest.dataset,
        frame,
        hamming=hamming,
        neighbours=neighbours,
        similarity=similarity,
        identity_model=model,
        identity_threshold=identity_threshold,
        across_only=True,
        workers=workers,
        progress=progress,
    )
    report = report_from(
        ws,
        manifest.dataset,
        frame,
        evidence,
        counts,
        hamming=hamming,
        neighbours=neighbours,
        similarity=similarity,
        identity_model=model,
        identity_threshold=identity_threshold,
    )
    if strict:
        report.raise_if_found()
    return report

"""Calibration benchmark for the duplicate check: known copies and hard negatives made from real photos.

Every picture here is a real photo: faces from the photos that installed packages ship
(insightface's Tom Hanks, scikit-image's LFW subset), the dlib photos and face crops in
``tests/data``, and any folder of face photos passed with ``--photos`` (e.g. a copy of the
face-mask photos). From each source photo the script cuts a *base* picture (a 48x48 grayscale face
like FER2013's, or a 128x128 colour face) and makes known copies of it:

    blur-1..4    Gaussian blur, sigma 1-4 px          shift        shifted by up to +-4 px
    crop         85-95% of the picture, rescaled or   jpeg-10..95  re-encoded as JPEG
                 kept at its own size                 gamma        gamma 0.5-2, brightness/contrast
    mirror       flipped left-right                   grayscale    colour base to grayscale
    down-48      colour 128 px base to 48x48          overlay      watermark or caption text
    combo        two or three of the above together

and hard negatives: held-out photos never used as a base (other people, same pose and framing,
since every base is a face crop of the same kind), the same held-out faces blurred (sigma 1.5-6
on 48 px), and flat, low-contrast pictures. Bases are in split ``test``, everything else
in ``train``; a reported pair is right when both images come from the same source photo.

It then runs the check the way ``ferdata check-leakage`` does (signatures, candidates,
verification on pixels) and prints precision and recall per transformation and overall, the
undecidable pairs (and how many of them involve a hard negative), and the time per stage.

Run: python benchmarks/leakage_bench.py [--photos DIR ...] [--seed 0] [--speed 35887]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from ferdata import leakage

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "tests" / "data"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


# ----------------------------------------------------------------------------- source photos


@dataclass
class Photo:
    name: str
    rgb: np.ndarray  # H x W x 3, uint8
    box: tuple[float, float, float, float]  # the face (or the whole picture): x1, y1, x2, y2


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _whole(name: str, rgb: np.ndarray, keep: float = 0.88) -> Photo:
    """A photo that is already a face crop: the base is its central part, so shifts stay inside."""
    h, w = rgb.shape[:2]
    side = keep * min(h, w)
    cx, cy = w / 2, h / 2
    return Photo(name, rgb, (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))


def _dlib_faces(xml: Path) -> list[Photo]:
    """Faces of dlib's annotated group photos, boxes widened like FER2013's crops (hair and chin)."""
    found = []
    for image in ET.parse(xml).getroot().iter("image"):
        path = xml.parent / image.get("file")
        if not path.exists():
            continue
        rgb = _rgb(path)
        for i, box in enumerate(image.iter("box")):
            x, y = float(box.get("left")), float(box.get("top"))
            w, h = float(box.get("width")), float(box.get("height"))
            side = 1.35 * max(w, h)
            cx, cy = x + w / 2, y + h / 2 - 0.05 * h
            found.append(Photo(f"{path.stem}#{i}", rgb, (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)))
    return found


def photos(extra: list[Path]) -> list[Photo]:
    """Every source photo, in a fixed order."""
    found: list[Photo] = []
    spec = importlib.util.find_spec("insightface")
    if spec is not None:
        hanks = Path(spec.submodule_search_locations[0]) / "data" / "images" / "Tom_Hanks_54745.png"
        found.append(_whole("Tom_Hanks", _rgb(hanks), keep=0.8))
    if importlib.util.find_spec("skimage") is not None:
        from skimage.data import lfw_subset

        faces = lfw_subset()[:100]  # the first 100 are faces (aligned LFW crops, 25x25)
        for i, face in enumerate(faces):
            gray = (face * 255).round().astype(np.uint8)
            found.append(_whole(f"lfw#{i}", np.dstack([gray] * 3)))
    for xml in sorted(TEST_DATA.glob("*/*_with_face_landmarks.xml")):
        found += _dlib_faces(xml)
    folders = [TEST_DATA / "leakage-faces", *extra]
    seen = {p.name for p in found}
    for folder in folders:
        for xml in sorted(folder.rglob("*_with_face_landmarks.xml")) if folder != TEST_DATA / "leakage-faces" else []:
            found += [p for p in _dlib_faces(xml) if p.name not in seen]
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.stem not in seen and "dlib" not in path.parts[-2]:
                seen.add(path.stem)
                found.append(_whole(path.stem, _rgb(path)))
    return found


# ----------------------------------------------------------------------------- views and copies


def view(photo: Photo, box: tuple[float, float, float, float], size: int | tuple[int, int], gray: bool) -> np.ndarray:
    """The part of the photo inside ``box`` resized to ``size`` (edges repeated outside the photo)."""
    import cv2

    x1, y1, x2, y2 = box
    out_w, out_h = (size, size) if isinstance(size, int) else size
    sx, sy = out_w / (x2 - x1), out_h / (y2 - y1)
    matrix = np.array([[sx, 0, -x1 * sx], [0, sy, -y1 * sy]], dtype=np.float64)
    src = photo.rgb
    if min(sx, sy) < 0.5:  # shrink with area averaging first, as a camera or a resize tool would
        f = 2 * min(sx, sy)
        src = cv2.resize(src, (max(1, round(src.shape[1] * f)), max(1, round(src.shape[0] * f))), interpolation=cv2.INTER_AREA)
        fx, fy = src.shape[1] / photo.rgb.shape[1], src.shape[0] / photo.rgb.shape[0]
        matrix = matrix @ np.array([[1 / fx, 0, 0], [0, 1 / fy, 0], [0, 0, 1]])
    out = cv2.warpAffine(src, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if gray:
        out = np.asarray(Image.fromarray(out).convert("L"))
    return out


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as back:
        return np.asarray(back.convert(Image.fromarray(img).mode))


def _gamma(img: np.ndarray, gamma: float, gain: float = 1.0, offset: float = 0.0) -> np.ndarray:
    x = (img.astype(np.float64) / 255.0) ** gamma
    return np.clip(255 * (gain * x) + offset, 0, 255).round().astype(np.uint8)


_WORDS = ["stock", "photo", "preview", "© images", "sample", "shutter", "dreams", "watermark", "123rf", "alamy", "getty"]


def _overlay(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A semi-transparent watermark across the picture, or an opaque caption strip of text."""
    pil = Image.fromarray(img).convert("RGBA")
    layer = Image.new("RGBA", pil.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    w, h = pil.size
    size = max(8, int(h * rng.uniform(0.14, 0.24)))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # an old Pillow without scalable default font
        font = ImageFont.load_default()
    text = " ".join(rng.choice(_WORDS, size=2))
    if rng.random() < 0.6:  # translucent watermark, white or dark
        shade = 255 if rng.random() < 0.7 else 0
        alpha = int(rng.uniform(0.3, 0.6) * 255)
        y = rng.uniform(0.2, 0.7) * h
        draw.text((rng.uniform(-0.1, 0.2) * w, y), text, fill=(shade, shade, shade, alpha), font=font)
    else:  # a caption: opaque text on a band at the bottom or the top
        y = h - size * 1.2 if rng.random() < 0.5 else 0
        draw.rectangle([0, y, w, y + size * 1.2], fill=(0, 0, 0, 255))
        draw.text((2, y), text, fill=(255, 255, 255, 255), font=font)
    mode = Image.fromarray(img).mode
    return np.asarray(Image.alpha_composite(pil, layer).convert(mode))


def _shifted_box(box, dx: float, dy: float, size: int):
    x1, y1, x2, y2 = box
    px = (x2 - x1) / size  # photo pixels per output pixel
    return (x1 + dx * px, y1 + dy * px, x2 + dx * px, y2 + dy * px)


def _crop_box(box, fraction: float, rng: np.random.Generator):
    x1, y1, x2, y2 = box
    w, h = (x2 - x1) * fraction, (y2 - y1) * fraction
    ox, oy = rng.uniform(0, (x2 - x1) - w), rng.uniform(0, (y2 - y1) - h)
    return (x1 + ox, y1 + oy, x1 + ox + w, y1 + oy + h)


def copies(photo: Photo, size: int, gray: bool, rng: np.random.Generator) -> list[tuple[str, str, np.ndarray]]:
    """Known copies of the base view of ``photo``: (transformation, detail, image)."""
    base = view(photo, photo.box, size, gray)
    out: list[tuple[str, str, np.ndarray]] = []
    for sigma in (1, 2, 3, 4):
        out.append((f"blur-{sigma}", f"sigma {sigma}", _blur(base, sigma)))
    for _ in range(2):
        dx, dy = 0, 0
        while dx == 0 and dy == 0:
            dx, dy = rng.integers(-4, 5, 2)
        out.append(("shift", f"{dx:+d},{dy:+d} px", view(photo, _shifted_box(photo.box, dx, dy, size), size, gray)))
    for _ in range(2):
        fraction = float(rng.uniform(0.85, 0.95))
        box = _crop_box(photo.box, fraction, rng)
        own = rng.random() < 0.5  # kept at its own pixel size, or rescaled to the base's
        target = max(8, round(size * fraction)) if own else size
        out.append(("crop", f"{fraction:.0%}{' own size' if own else ''}", view(photo, box, target, gray)))
    for quality in (10, 30, 60, 95):
        out.append((f"jpeg-{quality}", f"quality {quality}", _jpeg(base, quality)))
    gamma = float(rng.choice([0.5, 0.7, 1.5, 2.0]))
    out.append(("gamma", f"gamma {gamma}", _gamma(base, gamma)))
    gain, offset = float(rng.uniform(0.6, 1.3)), float(rng.uniform(-40, 40))
    out.append(("gamma", f"contrast {gain:.2f} brightness {offset:+.0f}", _gamma(base, 1.0, gain, offset)))
    out.append(("mirror", "left-right", base[:, ::-1].copy()))
    out.append(("overlay", "text", _overlay(base, rng)))
    if not gray:
        out.append(("grayscale", "L", np.asarray(Image.fromarray(base).convert("L"))))
        out.append(("down-48", "48x48", view(photo, photo.box, 48, gray=True)))
    # combinations, as re-uploads do: several small changes at once
    dx, dy = rng.integers(-3, 4, 2)
    shifted = view(photo, _shifted_box(photo.box, dx, dy, size), size, gray)
    out.append(("combo", "shift+jpeg-40+gamma", _jpeg(_gamma(shifted, float(rng.uniform(0.7, 1.4))), 40)))
    cropped = view(photo, _crop_box(photo.box, float(rng.uniform(0.88, 0.95)), rng), size, gray)
    out.append(("combo", "crop+overlay", _overlay(cropped, rng)))
    out.append(("combo", "mirror+blur-1+jpeg-50", _jpeg(_blur(base[:, ::-1].copy(), 1.0), 50)))
    return out


@dataclass
class Bench:
    images: list[np.ndarray]
    table: pd.DataFrame  # image_id, source, split, role (base/copy/negative), transform, detail


def build(all_photos: list[Photo], seed: int = 0, held_out: float = 0.3, per_source: int = 5) -> Bench:
    """Bases and copies from most photos; hard negatives from the held-out rest."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(all_photos))
    n_held = int(round(held_out * len(all_photos)))
    held, used = [all_photos[i] for i in order[:n_held]], [all_photos[i] for i in order[n_held:]]
    images: list[np.ndarray] = []
    rows: list[dict] = []

    def add(image: np.ndarray, source: str, split: str, role: str, transform: str, detail: str) -> None:
        rows.append({"image_id": f"{role}-{len(images):05d}", "source": source, "split": split, "role": role,
                     "transform": transform, "detail": detail})
        images.append(image)

    for i, photo in enumerate(used):
        # FER-like: most bases are 48x48 grayscale; every third is a 128 px colour face
        gray = i % 3 != 2
        size = 48 if gray else 128
        add(view(photo, photo.box, size, gray), photo.name, "test", "base", "base", f"{size}px {'gray' if gray else 'rgb'}")
        # a few copies per photo, as in real data (clusters of 2-6), not every transformation at once
        made = copies(photo, size, gray, rng)
        for k in rng.choice(len(made), size=min(per_source, len(made)), replace=False):
            transform, detail, image = made[k]
            add(image, photo.name, "train", "copy", transform, detail)
    for i, photo in enumerate(held):  # each held-out photo once: sharp, heavily blurred or flat
        face = view(photo, photo.box, 48, True)
        if i % 3 == 0:
            add(face, photo.name, "train", "negative", "other-face", "48px gray, never a base")
        elif i % 3 == 1:
            sigma = float(rng.choice([1.5, 2, 3, 4, 5, 6]))
            add(_blur(face, sigma), photo.name, "train", "negative", "blurred-face", f"sigma {sigma:g}")
        else:
            contrast = float(rng.uniform(0.02, 0.06))
            flat = (face.mean() + contrast * (face.astype(float) - face.mean())).round().astype(np.uint8)
            add(flat, photo.name, "train", "negative", "flat", f"contrast {contrast:.0%}")
    for i in range(10):  # plain fields: uniform grey, gentle gradients
        level = int(rng.integers(40, 220))
        ramp = np.linspace(0, rng.uniform(0, 12), 48)[None, :] + np.zeros((48, 1))
        add(np.clip(level + ramp, 0, 255).astype(np.uint8), f"flat-field-{i}", "train", "negative", "flat", "near-uniform")
    return Bench(images, pd.DataFrame(rows))


# ----------------------------------------------------------------------------- precision and recall


def evaluate(benches: list[Bench], similarity: float, workers: int) -> pd.DataFrame:
    """Run the check on each benchmark; per copy: was its pair with the base found, undecided, missed."""
    per_copy, pairs, negatives_max, baseline = [], [], [], []
    cpu = wall = 0.0
    n_pairs = 0
    for number, bench in enumerate(benches):
        table = bench.table
        sig = leakage.Signatures.from_images(bench.images)
        started, started_cpu = time.perf_counter(), time.process_time()
        verdicts = leakage.find_duplicates(sig, similarity=similarity, workers=workers)
        wall += time.perf_counter() - started
        cpu += time.process_time() - started_cpu
        found = verdicts.pairs
        n_pairs += len(found)
        source, split, role = table["source"].to_numpy(), table["split"].to_numpy(), table["role"].to_numpy()
        transform = table["transform"].to_numpy()
        kind = {(a, b): k for a, b, k in zip(found["a"], found["b"], found["kind"], strict=True)}
        # baseline, the check before this issue: pHash (one orientation) within 6 bits, asserted as is
        i_old, j_old, _ = leakage.near_pairs(sig.phash, leakage.DEFAULT_HAMMING)
        same_hash = pd.Series(np.arange(len(sig))).groupby(sig.phash).apply(list)
        old = set(zip(i_old.tolist(), j_old.tolist())) | {(a, b) for g in same_hash for a in g for b in g if a < b}
        old_cross = [(a, b) for a, b in old if split[a] != split[b]]
        baseline.append((sum(source[a] == source[b] for a, b in old_cross), len(old_cross)))
        bases = {s: i for i, s in enumerate(source) if role[i] == "base"}
        for j in np.flatnonzero(role == "copy"):
            i = bases[source[j]]
            per_copy.append({"bench": number, "transform": transform[j], "verdict": kind.get((min(i, j), max(i, j)), "missed") or "rejected",
                             "baseline": (min(i, j), max(i, j)) in old})
        decidable = found[(found["reason"] == "") & (found["ncc"] >= leakage.NCC_FLOOR)]
        wrong = decidable[source[decidable["a"]] != source[decidable["b"]]]
        negatives_max.append(float(wrong["similarity"].max()) if len(wrong) else float("nan"))
        reported = found[found["kind"] != ""].copy()
        reported["true"] = source[reported["a"]] == source[reported["b"]]
        reported["across"] = split[reported["a"]] != split[reported["b"]]
        reported["hard_negative"] = (role[reported["a"]] == "negative") | (role[reported["b"]] == "negative")
        reported["negative_kind"] = np.where(role[reported["a"]] == "negative", transform[reported["a"]], transform[reported["b"]])
        pairs.append(reported)
    copies = pd.DataFrame(per_copy)
    reported = pd.concat(pairs, ignore_index=True)
    near = reported[(reported["kind"] == "near") & reported["across"]]
    undecidable = reported[reported["kind"] == "undecidable"]

    print(f"## Precision and recall ({len(benches)} benchmark sets, {len(copies)} known copies, similarity >= {similarity})")
    print()
    print("| transformation | copies | found (`near`) | undecidable | not found | baseline: pHash <= 6 bits |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, group in copies.groupby("transform", sort=True):
        counts = group["verdict"].value_counts()
        n = len(group)
        print(f"| {name} | {n} | {counts.get('near', 0) / n:.1%} | {counts.get('undecidable', 0) / n:.1%} | "
              f"{(n - counts.get('near', 0) - counts.get('undecidable', 0)) / n:.1%} | {group['baseline'].mean():.1%} |")
    recall = (copies["verdict"] == "near").mean()
    undecided = (copies["verdict"] == "undecidable").mean()
    precision = near["true"].mean() if len(near) else float("nan")
    print()
    print(f"overall: recall {recall:.3f} (undecidable {undecided:.1%}), precision of the cross-split `near` pairs "
          f"{precision:.4f} ({len(near)} reported, {int((~near['true']).sum())} wrong)")
    right, told = sum(r for r, _ in baseline), sum(t for _, t in baseline)
    print(f"baseline (pHash <= 6 bits, every pair asserted): recall {copies['baseline'].mean():.3f}, precision of its "
          f"cross-split pairs {right / max(told, 1):.4f} ({told} reported, {told - right} wrong); "
          f"recall ratio {recall / max(copies['baseline'].mean(), 1e-9):.2f}x")
    sharp = copies[~copies["transform"].isin(["blur-3", "blur-4"])]
    print(f"without blur sigma 3-4 (too blurred at 48 px to decide): recall {(sharp['verdict'] == 'near').mean():.3f}")
    hard = undecidable[undecidable["hard_negative"]]
    print(f"undecidable pairs: {len(undecidable)} in all, {len(hard)} involving a hard negative "
          f"({', '.join(f'{k} {v}' for k, v in hard['negative_kind'].value_counts().items())}); "
          f"{int(undecidable['true'].sum())} of all undecidable pairs are in fact copies")
    print(f"highest similarity of a decidable pair of two different pictures: {np.nanmax(negatives_max):.3f}")
    wrong_hard = near[near["hard_negative"] & ~near["true"]]
    print(f"hard negatives reported as `near`: {len(wrong_hard)}")
    print(f"verification: {n_pairs} candidate pairs, {wall:.1f} s wall, {cpu:.1f} s CPU")
    print()
    return copies


# ----------------------------------------------------------------------------- speed


def population(all_photos: list[Photo], n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` 48x48 grayscale faces, FER-like, from the real photos: each an even blend of three
    faces under their own random warp, then lit its own way, so that nearly all are new faces
    that still look like faces (a few come out alike, as in real data)."""
    import cv2

    rng = np.random.default_rng(seed)
    faces = np.stack([view(p, p.box, 48, gray=True).astype(np.float32) for p in all_photos])
    out = []
    for _ in range(n):
        weights = rng.dirichlet(np.full(3, 2.0))
        mix = np.zeros((48, 48), dtype=np.float32)
        for w, i in zip(weights, rng.choice(len(faces), size=3, replace=False), strict=True):
            angle, scale = rng.uniform(-15, 15), rng.uniform(0.88, 1.15)
            matrix = cv2.getRotationMatrix2D((23.5 + rng.uniform(-4, 4), 23.5 + rng.uniform(-4, 4)), angle, scale)
            face = faces[i][:, ::-1] if rng.random() < 0.5 else faces[i]
            mix += w * cv2.warpAffine(face, matrix, (48, 48), borderMode=cv2.BORDER_REFLECT)
        gain, offset = rng.uniform(0.7, 1.3), rng.uniform(-30, 30)
        out.append(np.clip(gain * (mix - 128) + 128 + offset + rng.normal(0, 2, mix.shape), 0, 255).astype(np.uint8))
    return out


def population_signatures(all_photos: list[Photo], n: int, seed: int = 0, chunk: int = 20000) -> leakage.Signatures:
    """Signatures of ``n`` population faces, made in memory chunk by chunk (no files)."""
    import cv2

    thumbs = np.empty((n, leakage.THUMB, leakage.THUMB), dtype=np.uint8)
    for start in range(0, n, chunk):
        faces = population(all_photos, min(chunk, n - start), seed=seed + start)
        thumbs[start : start + len(faces)] = [cv2.resize(f, (leakage.THUMB, leakage.THUMB), interpolation=cv2.INTER_AREA) for f in faces]
    hashes = np.concatenate([leakage.phash_pixels(thumbs[i : i + chunk]) for i in range(0, n, chunk)])
    mirrors = np.concatenate([leakage.phash_pixels(thumbs[i : i + chunk, :, ::-1]) for i in range(0, n, chunk)])
    return leakage.Signatures(phash=hashes, phash_mirror=mirrors, thumbs=thumbs, width=np.full(n, 48),
                              height=np.full(n, 48), ok=np.ones(n, dtype=bool))


def speed(all_photos: list[Photo], n: int, workers: int) -> None:
    """``ferdata check-leakage`` on ``n`` 48x48 PNGs (cold: signatures computed; warm: cached),
    against today's check (pHash within 6 bits only) on the same files in the same run."""
    import hashlib
    import tempfile

    from ferdata.schema import BASIC_LABELS, Manifest, new_frame
    from ferdata.workspace import Workspace

    images = population(all_photos, n)
    with tempfile.TemporaryDirectory(dir=ROOT, prefix=".leakage-bench-") as tmp:
        ws = Workspace.resolve(tmp)
        folder = ws.root / "originals" / "fer2013"
        folder.mkdir(parents=True)
        rows = []
        for i, image in enumerate(images):
            path = folder / f"{i:06d}.png"
            Image.fromarray(image).save(path)
            split = "train" if i < 0.8 * n else ("val" if i < 0.9 * n else "test")
            label = BASIC_LABELS[i % 7]
            rows.append({"image_id": f"{i:06d}", "dataset": "fer2013", "source": f"fer2013.csv#row={i}",
                         "sha256": hashlib.sha256(image.tobytes()).hexdigest(), "split": split, "label_original": label,
                         "label": label, "original_path": f"originals/fer2013/{i:06d}.png", "width": 48, "height": 48})
        ws.save(Manifest("fer2013", new_frame(rows)))
        paths = [ws.root / r["original_path"] for r in rows]
        load = os.getloadavg()[0]
        (_, baseline), baseline_cpu = _timed(lambda: leakage.near_pairs(np.unique(leakage.phash_files(paths, workers=workers)[0]), 6))
        (report, cold), cold_cpu = _timed(lambda: leakage.check_leakage(ws, workers=workers))
        (_, warm), warm_cpu = _timed(lambda: leakage.check_leakage(ws, workers=workers))
        frame = ws.load().frame
        ((_, every), all_time), all_cpu = _timed(lambda: leakage.gather_evidence(ws, "fer2013", frame, workers=workers))
    print(f"## Speed: {n:,} 48x48 images, {workers} workers (load average {load:.1f} at the start)")
    print()
    print("| run | wall | CPU (all processes) | wall / today's check |")
    print("|---|---:|---:|---:|")
    print(f"| today's check (pHash <= 6 bits, no verification), hashes computed | {baseline:.1f} s | {baseline_cpu:.1f} s | 1 |")
    print(f"| check-leakage, signatures computed (cold) | {cold:.1f} s | {cold_cpu:.1f} s | {cold / baseline:.2f}x |")
    print(f"| check-leakage, signatures cached (warm) | {warm:.1f} s | {warm_cpu:.1f} s | {warm / baseline:.2f}x |")
    print(f"| every candidate verified, as `folds` does (warm) | {all_time:.1f} s | {all_cpu:.1f} s | {all_time / baseline:.2f}x |")
    print()
    print(f"check-leakage verified {report.candidates:,} candidate pairs (those across splits; {every['candidates']:,} in all); "
          f"{len(report.leaks)} leaks, {len(report.undecidable)} undecidable (the faces are blends of a few hundred "
          "photos, so some come out alike)")
    print()


def _timed(fn):
    """(value, wall seconds), CPU seconds of this process and of the worker processes it reaped."""
    import resource

    def cpu() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    start_cpu, start = cpu(), time.perf_counter()
    value = fn()
    return (value, time.perf_counter() - start), cpu() - start_cpu


def scale(all_photos: list[Photo], n: int, workers: int) -> None:
    """What the check costs at ``n`` images (default 10^6), from signatures made in memory."""
    started = time.perf_counter()
    big = population_signatures(all_photos, n, seed=7)
    print(f"## Scale: {n:,} images (signatures made in memory in {time.perf_counter() - started:.0f} s; "
          f"{workers} cores, load average {os.getloadavg()[0]:.1f})")
    print()
    nodes = np.arange(n)
    # faces' hashes are alike, so with 7 blocks of 9 bits (6 bits apart) each block value is shared
    # by thousands of images: at this scale the pHash radius comes down and the descriptor carries recall
    radius = int(os.environ.get("SCALE_HAMMING", "3"))
    (found, t_hash), cpu_hash = _timed(lambda: leakage.phash_candidates(big, nodes, radius))
    print(f"- pHash multi-index search (<= {radius} bits, both orientations): {t_hash:.0f} s "
          f"({cpu_hash:.0f} s CPU), {len(found):,} candidate pairs")
    (pairs, t_nn), cpu_nn = _timed(lambda: leakage.neighbour_candidates(big, nodes, leakage.DEFAULT_NEIGHBOURS))
    print(f"- descriptor neighbours (inverted file, {leakage.NEIGHBOUR_PROBES} probes, 4 query sets): {t_nn:.0f} s "
          f"({cpu_nn:.0f} s CPU), {len(pairs):,} candidate pairs")
    (detail, t_detail), _ = _timed(lambda: leakage.detail_and_contrast(big.thumbs)[0])
    sample = pairs.sample(min(len(pairs), 40000), random_state=0)
    with leakage._single_threaded_blas():
        (_, t_verify), cpu_verify = _timed(
            lambda: leakage.verify_pairs(big.thumbs, sample["a"].to_numpy(), sample["b"].to_numpy(), detail)
        )
    per_pair = cpu_verify / len(sample)
    total = len(pd.concat([found, pairs]).drop_duplicates(["a", "b"]))
    print(f"- detail of every image: {t_detail:.0f} s; verification: {per_pair * 1e6:.0f} us CPU per candidate pair "
          f"(measured on {len(sample):,}), so {total:,} candidates need about {per_pair * total / 60:.0f} CPU min, "
          f"{per_pair * total / 60 / workers:.0f} min on {workers} cores")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, action="append", default=[], help="more folders of face photos")
    parser.add_argument("--sets", type=int, default=4, help="benchmark sets (different seeds)")
    parser.add_argument("--similarity", type=float, default=leakage.DEFAULT_SIMILARITY)
    parser.add_argument("--speed", type=int, default=35887, help="images for the speed run (0: skip)")
    parser.add_argument("--scale", type=int, default=1_000_000, help="images for the scale measurement (0: skip)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    all_photos = photos(args.photos)
    print(f"{len(all_photos)} source photos")
    print()
    evaluate([build(all_photos, seed=s) for s in range(args.sets)], args.similarity, args.workers)
    if args.speed:
        speed(all_photos, args.speed, args.workers)
    if args.scale:
        scale(all_photos, args.scale, args.workers)


if __name__ == "__main__":
    main()

"""Tiny imitations of each dataset's real layout, written by the tests (no real data needed)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

MSD_E_CLASSES = ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]
FER_CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def image_bytes(seed: int, size: tuple[int, int] = (24, 20), fmt: str = "JPEG") -> bytes:
    """A small image whose bytes depend on ``seed`` only."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def msd_e_tree(root: Path, subjects: int = 3, labels: range = range(7), wrap: str = "delivery") -> Path:
    """``root/wrap/MSD-E|MSD-ME/<subject>_<label>_<take>.jpg`` + Paired_files.txt.

    Returns the folder to ingest. Subject ids are zero-padded like ``007``.
    """
    base = root / wrap if wrap else root
    names = []
    seed = 0
    for s in range(1, subjects + 1):
        for label in labels:
            name = f"{s:03d}_{label}_dslr.jpg"
            names.append(name)
            for folder in ("MSD-E", "MSD-ME"):
                seed += 1
                write(base / folder / name, image_bytes(seed))
    (base / "Paired_files.txt").write_text("\n".join(names) + "\n")
    return root


def fer2013_csv(rows: list[tuple[int, str]], seed: int = 0, icml: bool = False, usage: bool = True) -> bytes:
    """A FER2013-style CSV: one (emotion, Usage) per row, random 48×48 pixels."""
    rng = np.random.default_rng(seed)
    if icml:
        lines = ["emotion, Usage, pixels"]
    elif usage:
        lines = ["emotion,pixels,Usage"]
    else:
        lines = ["emotion,pixels"]
    for emotion, use in rows:
        pixels = " ".join(map(str, rng.integers(0, 256, 48 * 48)))
        if icml:
            lines.append(f"{emotion},{use},{pixels}")
        elif usage:
            lines.append(f'{emotion},"{pixels}",{use}' if seed % 2 else f"{emotion},{pixels},{use}")
        else:
            lines.append(f"{emotion},{pixels}")
    return ("\n".join(lines) + "\n").encode()


FER_USAGES = ["Training"] * 6 + ["PublicTest"] * 2 + ["PrivateTest"] * 2


def fer_rows(n: int = 10) -> list[tuple[int, str]]:
    return [(i % 7, FER_USAGES[i % len(FER_USAGES)]) for i in range(n)]


def ferplus_votes(n: int) -> bytes:
    header = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    lines = [header]
    for i in range(n):
        usage = FER_USAGES[i % len(FER_USAGES)]
        name = "" if i == 3 else f"fer{i:07d}.png"
        lines.append(f"{usage},{name},{10 - i % 10},{i % 10},0,0,0,0,0,0,0,0")
    return ("\n".join(lines) + "\n").encode()

"""What the reliability tests share: running ferdata as a real process, snapshots of folders,
small datasets with real faces."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import insightface
from builders import image_bytes
from PIL import Image

IMAGES = Path(insightface.__file__).parent / "data" / "images"


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones included) -> SHA-256 of its bytes."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def user_files(ws_root: Path) -> dict[str, str]:
    """The workspace as a user sees it: everything but ferdata's own ``.ferdata/`` folder."""
    return {k: v for k, v in snapshot(ws_root).items() if not k.startswith(".ferdata/")}


def ferdata_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "ferdata", *map(str, args)]


def run_ferdata(*args: str, env: dict | None = None, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """``python -m ferdata ARGS`` in a real process, without a terminal."""
    return subprocess.run(  # noqa: PLW1510 - the exit status is what the tests check
        ferdata_argv(*args), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, env=env, **kwargs,
    )


def start_ferdata(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        ferdata_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True, env=env, **kwargs,
    )


def wait_for(condition, timeout: float = 60.0, every: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


def one_line_error(stderr: str) -> str:
    """The single ``error: ...`` line a failing command must print (no traceback, nothing else)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def imagefolder(root: Path, n: int = 6, size: tuple[int, int] = (24, 20)) -> Path:
    """``root/<label>/img<k>.jpg``: a tiny imagefolder dataset of random pixels."""
    labels = ("happy", "sad", "angry")
    for k in range(n):
        path = root / labels[k % len(labels)] / f"img{k:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(1000 + k, size))
    return root


def face_msd_e(root: Path, subjects: int = 2) -> Path:
    """An MSD-E layout with real faces: each insightface photo under MSD-E/ and MSD-ME/ (grayscale
    as the 'masked' twin, so that the two sides differ), subjects 001.. with labels 0..2."""
    faces = [IMAGES / "Tom_Hanks_54745.png", IMAGES / "t1.jpg"]
    names = []
    for s in range(1, subjects + 1):
        for label in range(3):
            name = f"{s:03d}_{label}_dslr.jpg"
            names.append(name)
            face = Image.open(faces[(s + label) % len(faces)]).convert("RGB")
            for folder, picture in (("MSD-E", face), ("MSD-ME", face.convert("L").convert("RGB"))):
                (root / folder).mkdir(parents=True, exist_ok=True)
                picture.save(root / folder / name, quality=90)
    (root / "Paired_files.txt").write_text("\n".join(names) + "\n")
    return root


def copy_workspace(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FERDATA_WORKSPACE"}
    env.update(extra)
    return env

"""Resumable alignment: a ``ferdata align`` killed (SIGKILL) at 60% of an uninterrupted run's
time, then run again, against the uninterrupted run measured in the same session.

The rows are FER2013-like 48x48 crops of real faces (``tests/face_crops.py``: sharp, shifted,
every fifth blurred) ingested as a registered ``imagefolder``; times are whole-command wall times
(starting Python and loading the model included, as a user sees them). Prints the rows the killed
run had journalled, the re-run's time over the full run's (target: at most 0.65), and whether the
manifest and the crop files are identical to the uninterrupted run's.

    python benchmarks/align_resume.py [--rows 800] [--at 0.6]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from reliability.helpers import snapshot  # noqa: E402
from reliability.test_align_resume import fer_like_folder  # noqa: E402

from ferdata.align import journal_path  # noqa: E402
from ferdata.ingest import ingest  # noqa: E402
from ferdata.workspace import Workspace  # noqa: E402


def command(ws: Path) -> list[str]:
    return [sys.executable, "-m", "ferdata", "align", "-w", str(ws), "--device", "cpu", "--registered"]


def timed(ws: Path) -> float:
    start = time.monotonic()
    subprocess.run(command(ws), check=True, capture_output=True)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--at", type=float, default=0.6, help="kill at this share of the full run's time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ingest(Workspace(tmp / "base"), fer_like_folder(tmp / "src", args.rows), dataset="imagefolder", align=False)
        reference, ws = shutil.copytree(tmp / "base", tmp / "reference"), shutil.copytree(tmp / "base", tmp / "ws")
        full = timed(reference)
        start = time.monotonic()
        process = subprocess.Popen(command(ws), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(max(0.0, args.at * full - (time.monotonic() - start)))
        process.send_signal(signal.SIGKILL)
        process.wait()
        done = len(journal_path(Workspace(ws), "imagefolder").read_bytes().split(b"\n")) - 2
        rerun = timed(ws)
        same_manifest = Workspace(ws).load("imagefolder").frame.equals(Workspace(reference).load("imagefolder").frame)
        crops = lambda root: snapshot(root / "aligned")  # noqa: E731
        print(f"rows: {args.rows}; full run {full:.1f} s; killed at {args.at:.0%} ({args.at * full:.1f} s) "
              f"with {done} rows journalled; re-run {rerun:.1f} s = {rerun / full:.2f} of the full run")
        print(f"same manifest: {same_manifest}; same crop files: {crops(ws) == crops(reference)}")


if __name__ == "__main__":
    main()

"""How far a deflate zip bomb gets before ingest stops it: bytes produced and peak memory.

A zip holding one deflated member of SIZE GiB of zeros (about 1000:1) is ingested by a real
``ferdata ingest`` process, and so is a zip of one small image (the baseline: what the process
costs without a bomb). Printed: the bytes the member produced before it was refused (measured
in-process through the public streaming API) and the peak resident memory of both processes,
with the difference and the ratio between them.

Usage: python benchmarks/bomb_bench.py [SIZE_GIB]   (default 3; the docs promise a stop within
64 MiB of output and about 100 MB of memory over the baseline)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import archive_factory as af  # noqa: E402
from builders import image_bytes  # noqa: E402

from ferdata.archives import open_tree  # noqa: E402
from ferdata.errors import UnsafeArchiveError  # noqa: E402


def peak_rss(args: list[str]) -> tuple[int, int, str]:
    """(exit status, peak resident bytes, last stderr line) of ``python -m ferdata ARGS``."""
    child = subprocess.Popen([sys.executable, "-m", "ferdata", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    last = (child.stderr.read().decode().strip().splitlines() or [""])[-1]
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024, last


def produced_before_refusal(path: Path, member: str) -> int:
    produced = 0
    with open_tree(path) as tree, tree.open(member) as stream:
        try:
            while chunk := stream.read(2**20):
                produced += len(chunk)
        except UnsafeArchiveError:
            return produced
    raise SystemExit("the bomb was read to its end: not refused")


def main() -> None:
    size_gib = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with tempfile.TemporaryDirectory(prefix="ferdata-bomb-") as folder:
        root = Path(folder)
        bomb = af.deflate_bomb(root / "bomb.zip", "happy/bomb.jpg", size_gib * 2**30)
        small = af.zip_archive(root / "small.zip", {"happy/a.jpg": image_bytes(1, (64, 64))})
        packed = bomb.stat().st_size
        produced = produced_before_refusal(bomb, "happy/bomb.jpg")
        common = ["--dataset", "imagefolder", "--no-align"]
        base_rc, base_rss, _ = peak_rss(["ingest", str(small), *common, "-w", str(root / "ws-small")])
        bomb_rc, bomb_rss, line = peak_rss(["ingest", str(bomb), *common, "-w", str(root / "ws-bomb")])
    mib = 2**20
    print(f"bomb: {size_gib} GiB of zeros deflated into a {packed / mib:.1f} MiB zip")
    print(f"output before refusal: {produced / mib:.1f} MiB (promise: within 64 MiB)")
    print(f"ingest of a one-image zip (baseline): exit {base_rc}, peak RSS {base_rss / mib:.0f} MiB")
    print(f"ingest of the bomb: exit {bomb_rc}, peak RSS {bomb_rss / mib:.0f} MiB: {line}")
    print(f"bomb over baseline: +{(bomb_rss - base_rss) / mib:.0f} MiB, ratio {bomb_rss / base_rss:.2f}")


if __name__ == "__main__":
    main()

"""Runs ferdata commands on a disk with 0 bytes free and reports what happened, as JSON on stdout.

Usage: ``python full_disk_driver.py CONFIG.json``. CONFIG holds ``mode``, ``workspace`` (a
finished workspace to copy), ``scratch`` (an empty folder), ``commands`` (argument lists, where
``{ws}`` and ``{out}`` stand for the workspace and an output folder on the full disk) and
``retry`` (one command run again once there is room).

Modes:

* ``tmpfs``: run inside ``unshare -Urm`` (a user and mount namespace, no privilege needed where
  the kernel allows it): a small tmpfs is mounted on ``scratch``, the workspace copied onto it,
  and the tmpfs filled to its last byte, so every write meets a real ENOSPC.
* ``fsize``: the workspace is copied into ``scratch`` and each command runs with
  ``RLIMIT_FSIZE`` = 0 (SIGXFSZ ignored): any write of a byte fails with EFBIG, the way a full
  disk fails it. For machines without user namespaces.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.relative_to(folder).as_posix().startswith(".ferdata/")
    }


def fill(folder: Path) -> Path:
    """Write zeros into ``folder`` until its file system has no byte left."""
    filler = folder / "filler"
    block = b"\0" * 4096
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(block)
        except OSError:
            pass
        try:  # the last partial block
            while True:
                fh.write(b"\0")
        except OSError:
            pass
    return filler


def no_writes() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    scratch = Path(config["scratch"])
    if config["mode"] == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(scratch)], check=True)
    ws = scratch / "ws"
    out = scratch / "out"
    shutil.copytree(config["workspace"], ws, symlinks=True)
    filler = fill(scratch) if config["mode"] == "tmpfs" else None
    preexec = no_writes if config["mode"] == "fsize" else None
    env = {k: v for k, v in os.environ.items() if k != "FERDATA_WORKSPACE"}

    def run(args: list[str], preexec_fn=None) -> dict:
        argv = [a.replace("{ws}", str(ws)).replace("{out}", str(out)) for a in args]
        before = snapshot(ws)
        done = subprocess.run(  # noqa: PLW1510
            [sys.executable, "-m", "ferdata", *argv], capture_output=True, text=True, timeout=300,
            stdin=subprocess.DEVNULL, env=env, preexec_fn=preexec_fn, cwd="/",
        )
        return {
            "args": args,
            "rc": done.returncode,
            "stderr": done.stderr,
            "unchanged": snapshot(ws) == before,
            "lock_left": (ws / ".ferdata" / "lock").exists(),
            "temporary_files": sorted(p.name for p in scratch.rglob(".tmp-*")),
        }

    results = [run(args, preexec) for args in config["commands"]]
    if filler is not None:
        filler.unlink()
    retried = run(config["retry"]) if config.get("retry") else None
    print(json.dumps({"results": results, "retry": retried}))


if __name__ == "__main__":
    main()

"""A full disk or a read-only workspace: one clear line (exit 1), the previous manifest and files
intact, and the same command succeeds once there is room again.

How the failures are made real (no mock of the thing under test):

* **Full disk:** the command runs in a child process whose ``RLIMIT_FSIZE`` is lowered below the
  size of the files it must write (SIGXFSZ ignored), so the kernel refuses the write with EFBIG,
  exactly where a full disk refuses it with ENOSPC (ENOSPC, EDQUOT and EROFS themselves are
  raised by hand into the translation, see the test).
* **Read-only workspace:** the workspace is ``chmod -R a-w``; when the tests run as root (who
  ignores file modes) the command's process first drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH.
"""

from __future__ import annotations

import csv
import errno
import os
import random
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from builders import msd_e_tree

from ferdata.errors import WorkspaceWriteError
from ferdata.fsutil import TEMP_PREFIX, disk_errors
from ferdata.ingest import ingest
from ferdata.workspace import Workspace

from .helpers import (
    clean_env,
    ferdata_argv,
    imagefolder,
    one_line_error,
    snapshot,
    user_files,
)


def write_votes(path: Path, image_ids) -> Path:
    rng = random.Random(5)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "annotator", "vote"])
        for image_id in image_ids:
            for k in range(7):
                writer.writerow([image_id, f"a{k}", rng.choice(["ok", "ok", "happy", "sad"])])
    return path


@pytest.fixture
def sandbox(tmp_path: Path):
    yield tmp_path
    for path in tmp_path.rglob("*"):  # give write permission back so that pytest can clean up
        if path.is_dir() and not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.fixture
def relabel_ready(sandbox: Path) -> tuple[Workspace, Path]:
    ws = Workspace.resolve(sandbox / "ws")
    ingest(ws, msd_e_tree(sandbox / "src", subjects=10), dataset="msd-e", align=False)
    votes = write_votes(sandbox / "votes.csv", ws.load("msd-e").frame["image_id"])
    return ws, votes


def file_size_limited(limit: int):
    def limit_writes() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # inherited across exec: writes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


def run(args: list[str], preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: PLW1510 - the exit status is what the tests check
        ferdata_argv(*args), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env=clean_env(), preexec_fn=preexec_fn, cwd="/",
    )


def test_full_disk_during_relabel_keeps_the_previous_manifest(relabel_ready) -> None:
    ws, votes = relabel_ready
    before = snapshot(ws.root)
    args = ["relabel", "-w", str(ws.root), "--votes", str(votes)]

    full = run(args, preexec_fn=file_size_limited(4096))  # smaller than the audit table and the manifest

    assert full.returncode == 1
    line = one_line_error(full.stderr)
    assert "cannot write" in line and "File too large" in line and "previous manifest is intact" in line
    assert snapshot(ws.root) == before  # no temporary file, no torn table, the lock released
    assert (ws.load("msd-e").frame["label_status"] == "original").all()

    again = run(args)  # room again: the same command now succeeds
    assert again.returncode == 0, again.stderr
    assert (ws.load("msd-e").frame["label_status"] != "original").any()


def test_full_disk_during_ingest_keeps_the_previous_manifest_and_originals(sandbox: Path) -> None:
    ws = Workspace.resolve(sandbox / "ws")
    ingest(ws, imagefolder(sandbox / "first", n=6), dataset="imagefolder", align=False)
    before = user_files(ws.root)
    changed = imagefolder(sandbox / "second", n=6, size=(160, 160))  # same names, new and bigger bytes
    args = ["ingest", str(changed), "--dataset", "imagefolder", "--no-align", "-w", str(ws.root)]

    full = run(args, preexec_fn=file_size_limited(8192))

    assert full.returncode == 1
    assert "cannot write" in one_line_error(full.stderr)
    assert user_files(ws.root) == before
    assert run(args).returncode == 0
    assert user_files(ws.root) != before


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_no_space_quota_and_read_only_file_system_are_one_clear_line(tmp_path: Path, code: int) -> None:
    """ENOSPC, EDQUOT and EROFS cannot be produced here without privileges (no tmpfs, no quota, no
    /dev/full in every container): the OS error is raised by hand and goes through the same
    translation every workspace write uses (atomic writes, ingest's staging and commit)."""
    with pytest.raises(WorkspaceWriteError, match=os.strerror(code)) as caught, disk_errors(tmp_path / "manifest.parquet"):
        raise OSError(code, os.strerror(code))
    assert "\n" not in str(caught.value) and "manifest.parquet" in str(caught.value)


def test_other_os_errors_are_not_disguised(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), disk_errors(tmp_path / "x"):  # not a full disk: kept as is
        raise FileNotFoundError(errno.ENOENT, "gone")


def without_permission_override() -> None:
    """Root ignores file modes through CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: drop them from
    the bounding set, so that the command run next (still root) meets the modes like anyone."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "cannot drop the permission-override capabilities")


def read_only(root: Path):
    """(preexec_fn, undo): ``chmod -R a-w`` the workspace; root's child also loses the override."""
    modes = {p: p.stat().st_mode for p in [root, *root.rglob("*")]}
    for path, mode in modes.items():
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    preexec_fn = without_permission_override if os.geteuid() == 0 else None
    return preexec_fn, lambda: [path.chmod(mode) for path, mode in modes.items()]


@pytest.mark.parametrize("command", ["relabel", "ingest"])
def test_read_only_workspace_is_refused_clearly_and_left_intact(relabel_ready, sandbox: Path, command: str) -> None:
    ws, votes = relabel_ready
    args = {
        "relabel": ["relabel", "-w", str(ws.root), "--votes", str(votes)],
        "ingest": ["ingest", str(sandbox / "src"), "--dataset", "msd-e", "--no-align", "-w", str(ws.root)],
    }[command]
    before = snapshot(ws.root)
    preexec_fn, undo = read_only(ws.root)
    try:
        result = run(args, preexec_fn=preexec_fn)
    finally:
        undo()
    assert result.returncode == 1, result.stdout
    assert "read-only" in one_line_error(result.stderr)
    assert snapshot(ws.root) == before
    assert not any(p.name.startswith(TEMP_PREFIX) for p in ws.root.rglob("*"))


def test_full_disk_while_a_nested_archive_is_spooled_is_one_clear_line(sandbox: Path) -> None:
    """A zip inside the delivery is copied alone to ``.ferdata/tmp/`` while it is read: a full disk
    during that copy is the same one line as anywhere else, and the workspace keeps what it had."""
    import archive_factory as af
    from builders import image_bytes

    ws = Workspace.resolve(sandbox / "ws")
    ingest(ws, imagefolder(sandbox / "first", n=6), dataset="imagefolder", align=False)
    before = user_files(ws.root)
    images = {f"{('happy', 'sad')[k % 2]}/img{k:03d}.png": image_bytes(k, (64, 64), "PNG") for k in range(12)}
    inner = af.zip_archive(sandbox / "inner.zip", images, compression="stored")
    outer = af.zip_archive(sandbox / "delivery.zip", {"part1.zip": inner.read_bytes()})
    biggest_image = max(len(data) for data in images.values())
    limit = inner.stat().st_size // 2
    assert limit > 2 * biggest_image  # only the spooled copy is too big to write
    args = ["ingest", str(outer), "--dataset", "imagefolder", "--no-align", "-w", str(ws.root)]

    full = run(args, preexec_fn=file_size_limited(limit))

    assert full.returncode == 1, full.stderr
    line = one_line_error(full.stderr)
    assert "cannot write" in line and "File too large" in line and "temporary copy of" in line and "part1.zip" in line
    assert user_files(ws.root) == before
    assert not (ws.internal / "tmp").exists() or not any((ws.internal / "tmp").iterdir())  # the copy is gone
    assert not (ws.internal / "lock").exists()

    again = run(args)  # room again: the same command now ingests the nested images
    assert again.returncode == 0, again.stderr
    assert len(ws.load("imagefolder").frame) == 12


def _user_namespaces() -> bool:
    """Whether this machine lets an unprivileged process mount a tmpfs of its own (unshare -Urm)."""
    import shutil

    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-Urm", "true"], capture_output=True, timeout=30)  # noqa: PLW1510
    return probe.returncode == 0


@pytest.fixture(scope="module")
def full_disk_setup(tmp_path_factory) -> dict:
    """A workspace after ingest, votes for it, and a second delivery to ingest."""
    root = tmp_path_factory.mktemp("full-disk")
    ws = Workspace.resolve(root / "ws")
    ingest(ws, msd_e_tree(root / "src", subjects=3), dataset="msd-e", align=False)
    return {
        "root": root,
        "ws": ws.root,
        "votes": write_votes(root / "votes.csv", ws.load("msd-e").frame["image_id"]),
        "bigger": msd_e_tree(root / "bigger", subjects=4),
    }


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("tmpfs", marks=pytest.mark.skipif(not _user_namespaces(), reason="no user namespaces: no tmpfs of our own")),
        "fsize",
    ],
    ids=["ENOSPC on a full tmpfs", "EFBIG under RLIMIT_FSIZE=0"],
)
def test_every_writing_command_on_a_disk_with_0_bytes_free_is_one_line(full_disk_setup, mode: str, tmp_path: Path) -> None:
    """Each command that writes, on a disk that has no byte left: exit 1 with one line, the
    workspace unchanged, no lock left behind (a lock file is created, but its holder cannot be
    written), no temporary file; with room again, the same command succeeds.

    ``tmpfs``: a real ENOSPC, on a 32 MiB tmpfs mounted in a user namespace and filled to its
    last byte. ``fsize``: each command may not write a single byte (EFBIG), for machines where
    unprivileged namespaces are not allowed."""
    import json

    setup = full_disk_setup
    commands = [
        ["ingest", str(setup["bigger"]), "--dataset", "msd-e", "--no-align", "-w", "{ws}"],
        ["relabel", "-w", "{ws}", "--votes", str(setup["votes"])],
        ["pairs", "-w", "{ws}"],
        ["folds", "--k", "2", "-w", "{ws}"],
        ["tag", "add", "-w", "{ws}", "--tag", "glasses", "--where", "subject_id == '001'"],
        ["align", "-w", "{ws}", "--device", "cpu"],
        ["mask-synth", "-w", "{ws}"],
        ["check-leakage", "-w", "{ws}"],
        ["publish", "-w", "{ws}", "--images", "original", "--out", "{out}/published"],
        ["demo", "--out", "{out}/demo", "--epochs", "1", "--device", "cpu"],
    ]
    if mode == "fsize":  # every locking command fails at the lock the same way: one of them is enough here
        commands = [c for c in commands if c[0] in ("ingest", "relabel", "publish", "demo")]
    scratch = tmp_path / "disk"
    scratch.mkdir()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "mode": mode, "workspace": str(setup["ws"]), "scratch": str(scratch), "commands": commands,
        "retry": ["relabel", "-w", "{ws}", "--votes", str(setup["votes"])],
    }))
    driver = [sys.executable, str(Path(__file__).with_name("full_disk_driver.py")), str(config)]
    done = subprocess.run(["unshare", "-Urm", *driver] if mode == "tmpfs" else driver,  # noqa: PLW1510
                          capture_output=True, text=True, timeout=600, env=clean_env())
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    for result in report["results"]:
        command = " ".join(result["args"][:2])
        assert result["rc"] == 1, (command, result["stderr"])
        line = one_line_error(result["stderr"])
        assert ("No space left on device" if mode == "tmpfs" else "File too large") in line, (command, line)
        assert "free some disk space" in line, (command, line)
        assert result["unchanged"] and not result["lock_left"] and result["temporary_files"] == [], (command, result)
    assert report["retry"]["rc"] == 0, report["retry"]["stderr"]  # room again: the same command succeeds


def test_a_path_too_long_for_the_file_system_is_one_line(tmp_path: Path) -> None:
    """ENAMETOOLONG (a path over PATH_MAX; names over 255 bytes are refused when the archive is
    opened) is the user's problem too: one line, not a traceback."""
    with pytest.raises(WorkspaceWriteError, match="the path is too long for this file system") as caught:
        with disk_errors(tmp_path / "x"):
            os.open(str(tmp_path) + ("/" + "a" * 200) * 25 + "/x", os.O_CREAT | os.O_WRONLY)
    assert "\n" not in str(caught.value)

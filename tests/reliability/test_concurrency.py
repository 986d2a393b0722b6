"""Two commands on one workspace at once: the second fails clearly (or, from the library with
``wait``, waits its turn); writes never interleave. The lock file names its holder's pid, and a
lock whose holder is gone is detected as stale and taken over.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import archive_factory as af
import pytest
from builders import image_bytes, msd_e_tree

from ferdata.errors import WorkspaceLocked
from ferdata.ingest import ingest
from ferdata.workspace import EMPTY_LOCK_STALE_S, Workspace

from .helpers import clean_env, one_line_error, run_ferdata, start_ferdata, wait_for


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("delivery")
    files = {f"{('happy', 'sad')[k % 2]}/img{k:04d}.png": image_bytes(k, (96, 96), "PNG") for k in range(300)}
    return af.zip_archive(folder / "delivery.zip", files, compression="stored")


def test_second_command_fails_clearly_while_the_first_holds_the_workspace(tmp_path: Path, delivery: Path) -> None:
    ws = tmp_path / "ws"
    args = ["ingest", str(delivery), "--dataset", "imagefolder", "--no-align", "-w", str(ws)]
    first = start_ferdata(*args, env=clean_env())
    # the lock names its holder a moment after it is created: freeze the holder only once it has
    assert wait_for(lambda: Workspace._read_lock(ws / ".ferdata" / "lock") is not None)
    first.send_signal(signal.SIGSTOP)  # frozen while it holds the lock: the overlap is certain
    holder = json.loads((ws / ".ferdata" / "lock").read_text())
    assert holder["pid"] == first.pid and holder["command"] == "ingest"

    second = run_ferdata(*args, env=clean_env())
    also = run_ferdata("relabel", "-w", str(ws), "--votes", str(tmp_path / "votes.csv"), env=clean_env())

    first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    for refused in (second, also):
        assert refused.returncode == 1
        line = one_line_error(refused.stderr)
        assert f"in use by pid {first.pid} (ingest)" in line and "wait for it to finish" in line
    # The first command's result is whole: every row, every original, and the lock is gone.
    frame = Workspace(ws).load("imagefolder").frame
    assert len(frame) == 300 and all((ws / p).is_file() for p in frame["original_path"])
    assert not (ws / ".ferdata" / "lock").exists()


WRITER = textwrap.dedent(
    """
    import os, sys, time
    from ferdata.workspace import Workspace
    ws, log = Workspace.resolve(sys.argv[1]), sys.argv[2]
    for _ in range(3):
        with ws.lock("writer", wait=60):
            for step in ("start", "end"):
                with open(log, "a") as fh:
                    fh.write(f"{step} {os.getpid()}\\n")
                time.sleep(0.05)
    """
)


def test_writers_waiting_for_the_lock_never_interleave(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    log = tmp_path / "log.txt"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "ws"), str(log)], env=clean_env())
        for _ in range(4)
    ]
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    lines = log.read_text().split()
    pairs = [(lines[i], lines[i + 1], lines[i + 2], lines[i + 3]) for i in range(0, len(lines), 4)]
    assert len(pairs) == 12  # 4 writers x 3 turns
    for start, pid, end, same_pid in pairs:  # each turn is a start and an end of ONE writer
        assert (start, end) == ("start", "end") and pid == same_pid


def test_lock_of_a_dead_process_is_stale_and_taken_over(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    ingest(ws, msd_e_tree(tmp_path / "src", subjects=1), dataset="msd-e", align=False)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = ws.internal / "lock"
    lock.write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(), "command": "ingest", "since": 0}))

    result = run_ferdata("pairs", "-w", str(ws.root), env=clean_env())

    assert result.returncode == 0, result.stderr
    assert not lock.exists()
    assert ws.load("msd-e").frame["pair_id"].notna().all()


def test_holder_killed_with_sigkill_leaves_a_lock_the_next_command_takes_over(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    ingest(ws, msd_e_tree(tmp_path / "src", subjects=1), dataset="msd-e", align=False)
    code = "import sys, time; from ferdata.workspace import Workspace\nwith Workspace.resolve(sys.argv[1]).lock('pairs'): time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code, str(ws.root)], env=clean_env())
    assert wait_for(lambda: (ws.internal / "lock").exists())
    blocked = run_ferdata("pairs", "-w", str(ws.root), env=clean_env())
    assert blocked.returncode == 1 and f"pid {holder.pid} (pairs)" in one_line_error(blocked.stderr)

    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (ws.internal / "lock").exists()  # SIGKILL: no cleanup ran
    after = run_ferdata("pairs", "-w", str(ws.root), env=clean_env())
    assert after.returncode == 0, after.stderr


def test_lock_held_on_another_host_is_never_taken_over(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    ws.internal.mkdir(parents=True)
    other = {"pid": 1, "host": socket.gethostname() + "-elsewhere", "command": "align", "since": 0}
    (ws.internal / "lock").write_text(json.dumps(other))
    with pytest.raises(WorkspaceLocked, match=r"in use by pid 1 \(align\)"), ws.lock("relabel"):
        pass
    assert json.loads((ws.internal / "lock").read_text()) == other  # left for its owner


def test_waiting_writer_gets_the_lock_when_the_holder_ends(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    marker = tmp_path / "holder-done"
    code = (
        "import sys, time; from pathlib import Path; from ferdata.workspace import Workspace\n"
        "with Workspace.resolve(sys.argv[1]).lock('align'):\n    time.sleep(1.0); Path(sys.argv[2]).touch()"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(ws.root), str(marker)], env=clean_env())
    assert wait_for(lambda: (ws.internal / "lock").exists())
    with ws.lock("relabel", wait=60):
        assert marker.exists()  # we got it only once the holder had finished its work
        assert json.loads((ws.internal / "lock").read_text())["pid"] == os.getpid()
    assert holder.wait(timeout=60) == 0
    assert not (ws.internal / "lock").exists()


def killed_before_naming_itself(lock: Path) -> None:
    """A real process that creates the lock file as Workspace.lock does (O_EXCL) and is SIGKILLed
    before it writes its holder: the empty lock such a kill leaves."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    code = "import os, signal, sys\nos.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)\nos.kill(os.getpid(), signal.SIGKILL)"
    done = subprocess.run([sys.executable, "-c", code, str(lock)], check=False)
    assert done.returncode == -signal.SIGKILL
    assert lock.exists() and lock.read_bytes() == b""


def age(path: Path, seconds: float) -> None:
    then = path.stat().st_mtime - seconds
    os.utime(path, (then, then))


def test_empty_lock_left_by_a_kill_is_stale_once_it_is_a_few_seconds_old(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    ingest(ws, msd_e_tree(tmp_path / "src", subjects=1), dataset="msd-e", align=False)
    lock = ws.internal / "lock"
    killed_before_naming_itself(lock)

    fresh = run_ferdata("pairs", "-w", str(ws.root), env=clean_env())  # its writer may still be naming itself
    assert fresh.returncode == 1
    assert "in use by another process" in one_line_error(fresh.stderr)
    assert lock.exists()

    age(lock, 2 * EMPTY_LOCK_STALE_S)
    later = run_ferdata("pairs", "-w", str(ws.root), env=clean_env())
    assert later.returncode == 0, later.stderr
    assert not lock.exists()
    assert ws.load("msd-e").frame["pair_id"].notna().all()


@pytest.mark.parametrize("content", [b'{"pid": 4', b"not json", b'{"pid": "x"}', b'{"pid": 0}', b"[1, 2]", b"\xff\xfe"])
def test_unreadable_lock_is_refused_while_fresh_and_taken_over_once_stale(tmp_path: Path, content: bytes) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    lock = ws.internal / "lock"
    lock.parent.mkdir(parents=True)
    lock.write_bytes(content)
    with pytest.raises(WorkspaceLocked, match="in use by another process"), ws.lock("relabel"):
        pass
    assert lock.read_bytes() == content

    age(lock, 2 * EMPTY_LOCK_STALE_S)
    with ws.lock("relabel"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_waiting_writer_takes_over_an_empty_lock_once_it_is_stale(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("ferdata.workspace.EMPTY_LOCK_STALE_S", 0.5)
    ws = Workspace.resolve(tmp_path / "ws")
    killed_before_naming_itself(ws.internal / "lock")
    with ws.lock("relabel", wait=30):
        assert json.loads((ws.internal / "lock").read_text())["pid"] == os.getpid()
    assert not (ws.internal / "lock").exists()

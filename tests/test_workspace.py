from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ferdata.errors import WorkspaceError, WorkspaceLocked
from ferdata.schema import Manifest, new_frame
from ferdata.workspace import Workspace


def test_resolve_prefers_the_argument_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FERDATA_WORKSPACE", str(tmp_path / "env"))
    assert Workspace.resolve(tmp_path / "arg").root == (tmp_path / "arg").resolve()
    assert Workspace.resolve().root == (tmp_path / "env").resolve()
    monkeypatch.delenv("FERDATA_WORKSPACE")
    monkeypatch.chdir(tmp_path)
    assert Workspace.resolve().root == tmp_path.resolve()


def _save(ws: Workspace, dataset: str) -> None:
    ws.save(Manifest(dataset, new_frame([dict(
        image_id="a", dataset=dataset, source="a.jpg", sha256="0" * 64, label_original="sad", label="sad",
        original_path="originals/a.jpg", width=1, height=1,
    )])))


def test_dataset_name_is_optional_only_with_one_dataset(ws):
    with pytest.raises(WorkspaceError, match="holds no manifest"):
        ws.dataset_name(None)
    _save(ws, "msd-e")
    assert ws.dataset_name(None) == "msd-e"
    _save(ws, "fer2013")
    with pytest.raises(WorkspaceError, match="choose one with dataset="):
        ws.dataset_name(None)
    with pytest.raises(WorkspaceError, match="has no manifest for ferv39k"):
        ws.dataset_name("ferv39k")


def test_second_writer_fails_clearly_and_names_the_holder(ws):
    import threading

    raised: list[BaseException] = []

    def second_writer() -> None:
        try:
            with Workspace(str(ws.root)).lock("folds"):
                pass
        except WorkspaceLocked as exc:
            raised.append(exc)

    with ws.lock("relabel"):
        other = threading.Thread(target=second_writer)
        other.start()
        other.join()
    assert len(raised) == 1 and re.search(rf"pid {os.getpid()} \(relabel\)", str(raised[0]))
    with ws.lock("folds"):  # released on exit
        pass
    assert not (ws.internal / "lock").exists()


def test_the_lock_is_reentrant_in_one_thread_and_released_by_the_outermost_holder(ws):
    with ws.lock("label-issues"):
        with Workspace.of(str(ws.root)).lock("tag"):  # a library function calling another
            assert json.loads((ws.internal / "lock").read_text())["command"] == "label-issues"
        assert (ws.internal / "lock").exists()
    assert not (ws.internal / "lock").exists()


def test_library_functions_take_the_lock_themselves(ws):
    from ferdata.workspace import writes_workspace

    seen = []

    @writes_workspace("probe")
    def step(ws, *, note: str) -> str:
        seen.append(json.loads((ws.internal / "lock").read_text())["command"])
        return note

    assert step(str(ws.root), note="ok") == "ok"  # a str is taken for the workspace
    assert seen == ["probe"] and not (ws.internal / "lock").exists()


def test_a_workspace_takes_str_and_path_like():
    assert Workspace("some/where").root == Path("some/where")
    assert Workspace.of("some/where").root == Path("some/where").resolve()
    assert isinstance(Workspace(Path("x")).root, Path)


def test_a_stale_lock_of_a_dead_process_is_taken_over(ws):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    ws.internal.mkdir(parents=True)
    import socket

    (ws.internal / "lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "command": "ingest"}))
    with ws.lock("stats"):
        holder = json.loads((ws.internal / "lock").read_text())
        assert holder["pid"] == os.getpid()


LOCK_ON_A_FULL_DISK = """
import resource, signal, sys
from ferdata.errors import WorkspaceWriteError
from ferdata.workspace import Workspace
ws = Workspace.resolve(sys.argv[1])
ws.internal.mkdir(parents=True, exist_ok=True)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # from here on, a write of one byte fails (EFBIG)
try:
    with ws.lock("relabel"):
        print("held")
except WorkspaceWriteError as exc:
    print(exc)
"""


def test_a_lock_that_cannot_be_written_is_not_left_behind(ws):
    """The lock file is created (an inode needs no free byte) but its holder cannot be written:
    the empty file is removed, so that it cannot block the next command."""
    done = subprocess.run([sys.executable, "-c", LOCK_ON_A_FULL_DISK, str(ws.root)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"cannot write the lock of workspace {ws.root} (File too large): free some disk space")
    assert not (ws.internal / "lock").exists()
    with ws.lock("relabel"):  # the next command is not blocked
        pass


def test_a_workspace_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    ws = Workspace.resolve(tmp_path / "file" / "ws")  # a file where a folder should be
    with pytest.raises(WorkspaceError, match=r"cannot write to workspace .* \(Not a directory\)"):
        with ws.lock("ingest"):
            pass


def test_a_dry_run_takes_no_lock(ws):
    from ferdata.workspace import writes_workspace

    @writes_workspace("probe", when=lambda call: not call["dry_run"])
    def step(ws, *, dry_run: bool = False) -> bool:
        return (ws.internal / "lock").exists() if isinstance(ws, Workspace) else False

    assert step(ws) is True
    assert step(ws, dry_run=True) is False

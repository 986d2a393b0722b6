"""The archive password never shows: not in output, logs or exceptions, not in any file of the
workspace (manifest and its Parquet metadata included, tables, staging, journal), and not in the
process listing. ferdata handles it in-process (pyzipper, py7zr) and starts no child process of
its own; an audit hook in a real ``ferdata ingest`` proves it, and the process table is sampled
for the password while that ingest runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pyzipper
from builders import msd_e_tree
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.workspace import Workspace

from .helpers import clean_env, ferdata_argv, one_line_error, run_ferdata

PASSWORD = "Pw-5ecret-in-no-file-9f3c7a"
ENCODINGS = (PASSWORD.encode(), PASSWORD.encode("utf-16-le"), PASSWORD[::-1].encode())


def aes_delivery(src: Path, out: Path) -> Path:
    with pyzipper.AESZipFile(out, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as archive:
        archive.setpassword(PASSWORD.encode())
        for path in sorted(src.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(src).as_posix())
    return out


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("secret")
    return aes_delivery(msd_e_tree(folder / "tree", subjects=8), folder / "msd-e.zip")


def files_holding_the_password(folder: Path) -> list[str]:
    return [
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and any(secret in p.read_bytes() for secret in ENCODINGS)
    ]


def _command_lines() -> list[bytes]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes())
            except OSError:
                pass
    return lines


# ferdata's CLI in a real process, with an audit hook that logs every process it starts
AUDITED_CLI = """
import json, os, sys
log = open(os.environ["SPAWN_LOG"], "a")
def hook(event, args):
    if event in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.system", "os.spawn", "os.fork"):
        shown = args[:3] if event == "subprocess.Popen" else args  # executable, argv, cwd: what ps shows
        log.write(json.dumps([event, repr(shown)]) + "\\n"); log.flush()
sys.addaudithook(hook)
sys.argv = ["ferdata", *sys.argv[1:]]
from ferdata.cli import main
main()
"""


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads the process table from /proc (Linux)")
def test_ingest_keeps_the_password_out_of_output_files_and_the_process_table(tmp_path: Path, delivery: Path) -> None:
    ws, spawn_log = tmp_path / "ws", tmp_path / "spawned.jsonl"
    spawn_log.touch()
    process = subprocess.Popen(
        [sys.executable, "-c", AUDITED_CLI, "ingest", str(delivery), "--dataset", "msd-e", "--no-align",
         "--password-env", "MSDE_PW", "-w", str(ws)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env=clean_env(MSDE_PW=PASSWORD, SPAWN_LOG=str(spawn_log)),
    )  # fmt: skip
    listings_with_password = 0
    while process.poll() is None:  # what `ps` would show, sampled for the whole run
        listings_with_password += sum(PASSWORD.encode() in line for line in _command_lines())
    out, err = process.communicate()

    assert process.returncode == 0, err
    assert listings_with_password == 0
    spawned = [json.loads(line) for line in spawn_log.read_text().splitlines()]
    assert all(PASSWORD not in args for _, args in spawned)
    # The only process started is pycryptodome's `file -b <python>` (platform.architecture(), when
    # the AES code loads): its command line carries no secret (it inherits the environment, as
    # every child does; /proc/PID/environ is readable only by the same user). ferdata starts none.
    assert all(event == "subprocess.Popen" and "'file', '-b'" in args for event, args in spawned), spawned
    assert PASSWORD not in out + err
    assert Workspace(ws).load("msd-e").frame.shape[0] == 112
    assert files_holding_the_password(ws) == []
    assert PASSWORD not in str(Workspace(ws).load("msd-e").provenance)


@pytest.mark.parametrize("given", ["env", "file"])
def test_wrong_password_error_names_neither_password(tmp_path: Path, delivery: Path, given: str) -> None:
    wrong = "Wr0ng-guess-71be"
    (tmp_path / "pw.txt").write_text(wrong + "\n")
    how = ["--password-env", "MSDE_PW"] if given == "env" else ["--password-file", str(tmp_path / "pw.txt")]
    result = run_ferdata(
        "ingest", str(delivery), "--dataset", "msd-e", "--no-align", *how, "-w", str(tmp_path / "ws"),
        env=clean_env(MSDE_PW=wrong),
    )
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert "wrong password" in line
    assert wrong not in result.stdout + result.stderr and PASSWORD not in result.stdout + result.stderr
    assert files_holding_the_password(tmp_path / "ws") == []


def test_password_is_never_a_plain_option_value(tmp_path: Path, delivery: Path) -> None:
    result = CliRunner().invoke(app, ["ingest", str(delivery), "--password", PASSWORD, "-w", str(tmp_path / "ws")])
    assert result.exit_code == 2  # bad usage: no such option
    assert not (tmp_path / "ws").exists()


def test_hidden_prompt_does_not_echo(tmp_path: Path, delivery: Path) -> None:
    """On a terminal the password is asked with getpass: typed into a pseudo-terminal, it is not echoed."""
    import pty
    import select
    import time

    leader, follower = pty.openpty()
    env = clean_env(TERM="dumb", COLUMNS="200")
    process = subprocess.Popen(
        ferdata_argv("ingest", str(delivery), "--dataset", "msd-e", "--no-align", "-w", str(tmp_path / "ws")),
        stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"password" in seen.lower():
            os.write(leader, PASSWORD.encode() + b"\n")
            answered = True
        if process.poll() is not None and not ready:
            break
    process.wait(timeout=60)
    os.close(leader)
    assert answered and process.returncode == 0, seen.decode(errors="replace")
    assert PASSWORD.encode() not in seen
    assert files_holding_the_password(tmp_path / "ws") == []

"""Every bad input an adversarial probe found (issue 14) ends in one line on stderr and exit 1, or
in exit 0 where the input is acceptable; never a traceback, and the workspace keeps what it had.

The commands run through typer's test runner (in process, fast): an exception that escaped the
one-line translation would show as ``result.exception`` other than ``SystemExit``. The bomb's
memory is measured on a real process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import archive_factory as af
import pytest
from builders import fer2013_csv, fer_rows, image_bytes, msd_e_tree, write
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.errors import MAX_MESSAGE
from ferdata.workspace import Workspace

from .helpers import ferdata_argv, user_files

ERROR_LINE = len("error: ") + MAX_MESSAGE


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(result) -> str:
    """The run's single error line, after checking that nothing escaped as a traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not an escaped exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert len(lines[0]) <= ERROR_LINE
    return lines[0]


@pytest.fixture
def existing(tmp_path: Path) -> Workspace:
    """A workspace that already holds a manifest, to check that a failure leaves it as it was."""
    ws = Workspace.resolve(tmp_path / "ws")
    result = invoke("ingest", msd_e_tree(tmp_path / "msd", subjects=2), "--dataset", "msd-e", "--no-align", "-w", ws.root)
    assert result.exit_code == 0, result.output
    return ws


def fer_csv_folder(root: Path, data: bytes, name: str = "fer2013.csv") -> Path:
    write(root / name, data)
    return root


def with_row(k: int, row: bytes, n: int = 6) -> bytes:
    lines = fer2013_csv(fer_rows(n)).split(b"\n")
    lines[k + 1] = row
    return b"\n".join(lines)


PIXELS = b" ".join([b"9"] * 2304)


def zip_of(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for k, name in enumerate(names):
            archive.writestr(name, image_bytes(k))
    return path


CASES = {
    # name: (build the input in a folder -> ingest arguments, what the line must say)
    "member name over the file system's limit": (
        lambda d: [zip_of(d / "long.zip", ["happy/ok.jpg", "happy/" + "a" * 300 + ".jpg"]), "--dataset", "imagefolder"],
        "has a name part of 304 bytes, over the 255 that file systems allow",
    ),
    "valid zip with no members": (lambda d: [af.zip_archive(d / "empty.zip", {})], "empty.zip holds no files"),
    "member name with a newline": (
        lambda d: [zip_of(d / "nl.zip", ["happy/ok.jpg", "happy/a\nb.jpg"]), "--dataset", "imagefolder"],
        r"member 'happy/a\nb.jpg' has a control character '\n' in its name",
    ),
    "member name with a tab": (
        lambda d: [zip_of(d / "tab.zip", ["happy/ok.jpg", "sad/a\tb.jpg"]), "--dataset", "imagefolder"],
        r"has a control character '\t' in its name",
    ),
    "FER2013 CSV with invalid UTF-8": (
        lambda d: [fer_csv_folder(d / "src", with_row(2, b"3," + PIXELS + b",Train\xff\xfeing"))],
        "fer2013.csv#row=2 (the row holds bytes that are not UTF-8 text)",
    ),
    "FER2013 CSV with a field over Python's csv limit": (
        lambda d: [fer_csv_folder(d / "src", with_row(1, b"3," + b"7 " * 70_000 + b",Training"))],
        "fer2013.csv#row=1 (the row is longer than 10,240 characters",
    ),
    "FER2013 CSV with empty pixels in the first row": (
        lambda d: [fer_csv_folder(d / "src", with_row(0, b"3,,Training"))],
        "1 row in src does not fit the fer2013 layout, e.g. fer2013.csv#row=0 (pixels is empty)",
    ),
    "pixel value 300": (
        lambda d: [fer_csv_folder(d / "src", with_row(3, b"3," + b" ".join([b"300"] + [b"1"] * 2303) + b",Training"))],
        "(pixel value 300 is not in 0..255)",
    ),
    "a 200 KB Usage value": (
        lambda d: [fer_csv_folder(d / "src", with_row(0, b"3," + PIXELS + b"," + b"U" * 200_000))],
        "fer2013.csv#row=0 (the row is longer than",
    ),
    "CSV without a Usage column": (
        lambda d: [fer_csv_folder(d / "src", fer2013_csv(fer_rows(4), usage=False), "data.csv"), "--dataset", "fer2013"],
        "data.csv has no Usage column, so its rows would have no split: name their split with --split NAME",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_leaves_the_workspace_as_it_was(case: str, existing: Workspace, tmp_path: Path) -> None:
    build, expected = CASES[case]
    folder = tmp_path / "input"
    folder.mkdir()
    args = build(folder)
    before = user_files(existing.root)

    line = one_line(invoke("ingest", *args, "--no-align", "-w", existing.root))

    assert expected in line, line
    assert user_files(existing.root) == before
    assert not (existing.internal / "lock").exists()


@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbf" + fer2013_csv(fer_rows(4)),
        fer2013_csv(fer_rows(4), icml=True),
    ],
    ids=["UTF-8 byte-order mark", "icml columns"],
)
@pytest.mark.parametrize("name", ["fer2013.csv", "fer2013 (1).csv", "data.csv"])
def test_acceptable_csvs_ingest(data: bytes, name: str, tmp_path: Path) -> None:
    result = invoke("ingest", fer_csv_folder(tmp_path / "src", data, name), "--no-align", "-w", tmp_path / "ws")
    assert result.exit_code == 0, result.output
    assert len(Workspace.resolve(tmp_path / "ws").load("fer2013").frame) == 4


def test_votes_with_wrong_columns_are_one_line(existing: Workspace, tmp_path: Path) -> None:
    votes = write(tmp_path / "votes.csv", b"vote,annotator,picture\nhappy,a1,MSD-E/001_0_dslr\n")
    before = user_files(existing.root)
    line = one_line(invoke("relabel", "-w", existing.root, "--votes", votes, "--skip-unmatched"))
    assert "has no image column (its columns: 'vote', 'annotator', 'picture')" in line
    assert user_files(existing.root) == before


def test_a_huge_value_in_votes_is_cut_in_the_error_line(existing: Workspace, tmp_path: Path) -> None:
    votes = write(tmp_path / "votes.csv", b"image,annotator,vote\n" + b"z" * 200_000 + b",a1,happy\n")
    line = one_line(invoke("relabel", "-w", existing.root, "--votes", votes))
    assert "not in the manifest" in line and len(line) < 500


def test_reingest_that_would_lose_work_is_one_line_naming_prune(existing: Workspace, tmp_path: Path) -> None:
    assert invoke("folds", "--k", "2", "-w", existing.root).exit_code == 0
    before = user_files(existing.root)
    smaller = msd_e_tree(tmp_path / "smaller", subjects=1)
    line = one_line(invoke("ingest", smaller, "--dataset", "msd-e", "--no-align", "-w", existing.root))
    assert "would drop 14 of the 28 msd-e rows" in line and "pass --prune" in line
    assert user_files(existing.root) == before


def test_a_symlink_planted_in_the_workspace_is_one_line(existing: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (existing.originals_dir("msd-e") / "MSD-E").rename(tmp_path / "moved")
    (existing.originals_dir("msd-e") / "MSD-E").symlink_to(outside, target_is_directory=True)
    bigger = msd_e_tree(tmp_path / "bigger", subjects=3)
    line = one_line(invoke("ingest", bigger, "--dataset", "msd-e", "--no-align", "-w", existing.root))
    assert "outside the workspace" in line and "remove the link" in line
    assert list(outside.iterdir()) == []


def peak_memory(args: list) -> tuple[int, int, str]:
    """(exit status, peak resident set in bytes, stderr) of a real ``ferdata`` process."""
    child = subprocess.Popen(ferdata_argv(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, env={k: v for k, v in os.environ.items() if k != "FERDATA_WORKSPACE"})
    stderr = child.stderr.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_maxrss * 1024, stderr


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_a_deflate_bomb_costs_about_100_mb_of_memory_at_most(tmp_path: Path) -> None:
    """2 GiB of zeros in a 2 MB zip. Measured against a run on a one-image zip, the bomb's run
    uses little more memory (before the fix it held 100 times the zip's size: 200 MB)."""
    bomb = af.deflate_bomb(tmp_path / "bomb.zip", "happy/bomb.jpg", 2048 * af.MiB)
    small = af.zip_archive(tmp_path / "small.zip", {"happy/a.jpg": image_bytes(1, (64, 64))})
    common = ["--dataset", "imagefolder", "--no-align"]
    base_rc, base_peak, _ = peak_memory(["ingest", small, *common, "-w", tmp_path / "ws-small"])
    rc, peak, stderr = peak_memory(["ingest", bomb, *common, "-w", tmp_path / "ws-bomb"])
    assert base_rc == 0 and rc == 1
    assert [line for line in stderr.splitlines() if line.strip()] == [stderr.strip()] and "decompression bomb" in stderr
    assert peak - base_peak < 100 * 10**6, (peak, base_peak)

"""Fuzzing the commands with hostile CSV rows, votes files and archive member names (hypothesis).

Every example runs the real command (typer's runner, in process) on a copy of a workspace that
already holds a manifest with work in it, and checks the same four promises:

* the exit status is 0 or 1 (never a traceback: an escaped exception shows as one here);
* exit 1 comes with exactly one ``error:`` line on stderr;
* on exit 1 the old manifest, and every file of the workspace a user sees, is byte for byte as it was;
* nothing is written outside the workspace, and nothing inside it is a symbolic link.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

import archive_factory as af
import pytest
from builders import fer2013_csv, fer_rows, image_bytes, msd_e_tree
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.workspace import Workspace

from .helpers import snapshot, user_files

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    """One workspace per fuzzed command, each holding a manifest whose rows carry folds (work)."""
    root = tmp_path_factory.mktemp("fuzz-bases")
    folders = {}
    for name, source, dataset in (
        ("csv", _write(root / "fer/fer2013.csv", fer2013_csv(fer_rows(6))).parent, "fer2013"),
        ("votes", msd_e_tree(root / "msd", subjects=1), "msd-e"),
        ("names", _write(root / "images/happy/ok.jpg", image_bytes(1)).parents[1], "imagefolder"),
    ):
        ws = Workspace.resolve(root / f"ws-{name}")
        result = CliRunner().invoke(app, ["ingest", str(source), "--dataset", dataset, "--no-align", "-w", str(ws.root)])
        assert result.exit_code == 0, result.output
        manifest = ws.load(dataset)
        manifest.frame["fold"] = [k % 2 for k in range(len(manifest.frame))]
        ws.save(manifest)
        folders[name] = ws.root
    return folders


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def run_in_sandbox(base: Path, inputs: dict[str, bytes], args: list[str]) -> None:
    """Copy ``base``, write ``inputs`` beside it, run ``ferdata ARGS`` ({ws} and {in} filled in),
    and check the four promises."""
    with tempfile.TemporaryDirectory(prefix="ferdata-fuzz-") as folder:
        sandbox = Path(folder)
        ws = shutil.copytree(base, sandbox / "ws")
        for name, data in inputs.items():
            _write(sandbox / "in" / name, data)
        before = user_files(ws)
        outside_before = {k for k in snapshot(sandbox) if not k.startswith("ws/")}

        argv = [a.replace("{ws}", str(ws)).replace("{in}", str(sandbox / "in")) for a in args]
        result = CliRunner().invoke(app, argv)

        assert result.exit_code in (0, 1), result.output
        # what the examples reached (shown by pytest --hypothesis-show-statistics)
        said = result.stderr.replace(str(sandbox), "").split()[1:7]
        event(f"exit {result.exit_code}" + (": " + " ".join(said) if result.exit_code else ""))
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        if result.exit_code == 1:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
            assert user_files(ws) == before
        assert {k for k in snapshot(sandbox) if not k.startswith("ws/")} == outside_before
        assert not any(p.is_symlink() for p in ws.rglob("*"))


# -- CSV rows -----------------------------------------------------------------------------------

GOOD_PIXELS = " ".join(["128"] * 2304)
header = st.one_of(
    st.just("emotion,pixels,Usage"),
    st.sampled_from(["emotion, Usage, pixels", "emotion,pixels", "pixels", "Usage,pixels,emotion", "a,b,c", ""]),
)
pixels = st.one_of(
    st.just(GOOD_PIXELS),
    st.just(""),
    st.integers(0, 2400).map(lambda n: " ".join(["7"] * n)),
    st.tuples(st.integers(0, 2303), st.one_of(st.integers(-10**20, 10**20).map(str), st.text(max_size=5))).map(
        lambda change: " ".join(["9"] * change[0] + [change[1]] + ["9"] * (2303 - change[0]))
    ),
)
emotion = st.one_of(st.sampled_from("0123456"), st.sampled_from(["7", "-1", "", '"', "a,b"]), st.text(max_size=4))
usage = st.one_of(st.sampled_from(["Training", "PublicTest", "PrivateTest"]), st.sampled_from(["", "x", '"']), st.text(max_size=8))
good_row = st.tuples(st.sampled_from("0123456"), st.sampled_from(["Training", "PublicTest", "PrivateTest"])).map(
    lambda r: f"{r[0]},{GOOD_PIXELS},{r[1]}".encode()
)
row = st.one_of(
    good_row,
    good_row,
    st.tuples(emotion, pixels, usage).map(lambda r: f"{r[0]},{r[1]},{r[2]}".encode("utf-8", "surrogatepass")),
    st.tuples(emotion, pixels, usage).map(lambda r: f'{r[0]},"{r[1]}",{r[2]}'.encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),  # bytes that may not be text at all
)


@SETTINGS
@given(
    head=header, rows=st.lists(row, max_size=8), bom=st.booleans(), eol=st.sampled_from([b"\n", b"\r\n"]),
    name=st.sampled_from(["fer2013.csv", "data.csv", "fer2013 (1).csv"]),
    options=st.lists(st.sampled_from([["--skip-unparsed"], ["--split", "train"], ["--prune"], ["--dataset", "fer2013"]]), max_size=3),
)
def test_any_csv_rows_end_in_exit_0_or_one_line(bases, head, rows, bom, eol, name, options) -> None:
    data = (b"\xef\xbb\xbf" if bom else b"") + eol.join([head.encode(), *rows]) + eol
    args = ["ingest", "{in}", "--no-align", "-w", "{ws}", *(flag for option in options for flag in option)]
    run_in_sandbox(bases["csv"], {name: data}, args)


# -- votes files --------------------------------------------------------------------------------

column = st.one_of(
    st.sampled_from(["image", "annotator", "vote"]),
    st.sampled_from(["file", "rater", "label", "Usage", "Image name", "neutral", "happiness", "NF"]),
    st.text(min_size=1, max_size=6),
)
cell = st.one_of(
    st.sampled_from(["MSD-E/001_0_dslr", "MSD-ME/001_3_dslr", "001_1_dslr.jpg", "happy", "sad", "ok", "flag", "nf", "", "3"]),
    st.text(max_size=10),
)


long_form = st.tuples(
    st.just(["image", "annotator", "vote"]),
    st.lists(st.tuples(st.sampled_from(["MSD-E/001_0_dslr", "MSD-ME/001_3_dslr"]), st.sampled_from(["a1", "a2"]),
                       st.sampled_from(["happy", "sad", "ok", "", "flag", "nf"])).map(list), min_size=1, max_size=4),
)


@SETTINGS
@given(
    form=st.one_of(long_form, st.tuples(st.lists(column, min_size=1, max_size=4), st.lists(st.lists(cell, max_size=5), max_size=5))),
    suffix=st.sampled_from([".csv", ".tsv"]), junk=st.one_of(st.just(b""), st.binary(max_size=8)),
    options=st.lists(st.sampled_from(["--skip-unmatched", "--dry-run"]), max_size=2),
)
def test_any_votes_file_ends_in_exit_0_or_one_line(bases, form, suffix, junk, options) -> None:
    columns, cells = form
    sep = "\t" if suffix == ".tsv" else ","
    text = "\n".join(sep.join(line) for line in [columns, *cells]) + "\n"
    data = text.encode("utf-8", "surrogatepass") + junk
    run_in_sandbox(bases["votes"], {f"votes{suffix}": data}, ["relabel", "-w", "{ws}", "--votes", f"{{in}}/votes{suffix}", *options])


# -- archive member names -----------------------------------------------------------------------

name_part = st.one_of(
    st.sampled_from(["..", ".", "", "C:", "/", "\\", "happy", "HAPPY", "ok.jpg", "a.jpg", "a\nb.jpg", "a\tb", "\x1b[2J", "\x00",
                     "x" * 256, "é" * 130]),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=6),
)
member = st.lists(name_part, min_size=1, max_size=3).map("/".join)


@SETTINGS
@given(names=st.lists(member, min_size=1, max_size=4), container=st.sampled_from(["zip", "tar"]))
def test_any_member_names_end_in_exit_0_or_one_line(bases, names, container) -> None:
    members = ["happy/ok.jpg", *names]
    ok = image_bytes(1)  # the image the workspace already holds: never dropped
    if container == "zip":
        with tempfile.TemporaryDirectory() as folder:
            path = af.zip_raw_names(Path(folder) / "n.zip", members[1:])
            with zipfile.ZipFile(path, "a") as archive:
                archive.writestr("happy/ok.jpg", ok)
            data = path.read_bytes()
    else:
        with tempfile.TemporaryDirectory() as folder:
            try:
                data = af.tar_members(
                    Path(folder) / "n.tar", [(af.tar_info(n), ok if n == "happy/ok.jpg" else b"payload") for n in members]
                ).read_bytes()
            except (ValueError, UnicodeError):  # tarfile cannot write some names (NUL): not ferdata's concern
                return
    run_in_sandbox(bases["names"], {"delivery.bin": data}, ["ingest", "{in}/delivery.bin", "--dataset", "imagefolder", "--no-align", "-w", "{ws}"])

"""The conventions a researcher expects from a command line (gh, uv, hf): --version, -h, shell
completion, exit 2 for a bad option value, --json on every command that reports a summary, output
that a pipe does not wrap, errors on stderr, -q and -v."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import msd_e_tree, write
from PIL import Image
from test_docs import COMMANDS
from typer.testing import CliRunner

import ferdata
from ferdata.cli import app

ANNOTATORS = [f"a{i}" for i in range(1, 8)]
RELABELLED = "MSD-ME/001_0_dslr"


def invoke(*args: str, **kwargs) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def said(text: str) -> str:
    """Text as one line: typer's usage-error box wraps its message on a pipe (help and usage
    errors are for a person at a terminal, unlike the commands' output)."""
    return " ".join(text.replace("│", " ").split())


# ----------------------------------------------------------------------------- version, -h, completion


def test_version_prints_the_package_version():
    for flag in ("--version", "-V"):
        result = invoke(flag)
        assert result.exit_code == 0, result.output
        assert result.stdout == f"ferdata {ferdata.__version__}\n" and result.stderr == ""


@pytest.mark.parametrize("path", ["", "tag", *[p for p, _ in COMMANDS]])
def test_short_help_is_the_long_help(path):
    words = path.split()
    short, long = invoke(*words, "-h"), invoke(*words, "--help")
    assert short.exit_code == long.exit_code == 0, short.output
    assert short.stdout == long.stdout and "Usage:" in short.stdout


def test_shell_completion_scripts_and_value_completion(monkeypatch):
    assert "--install-completion" in invoke("-h").stdout
    # typer makes --show-completion a flag that detects the running shell from the process tree
    # (shellingham), which depends on how the tests were started; named, the shell is the same anywhere
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    script = invoke("--show-completion", "bash", prog_name="ferdata")
    assert script.exit_code == 0, script.output
    assert "complete -o default -F _ferdata_completion ferdata" in script.stdout
    assert "_FERDATA_COMPLETE=complete_bash" in script.stdout

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        env = {"_FERDATA_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
        result = CliRunner().invoke(app, [], prog_name="ferdata", env=env)
        assert result.exit_code == 0, result.output
        return result.stdout.split()

    assert complete("ferdata train-") == ["train-baseline"]
    assert complete("ferdata train-baseline --subset ") == ["nm", "m", "mix", "pe"]  # the library's SUBSETS
    assert complete("ferdata publish --images o") == ["original"]
    assert complete("ferdata tag add --tag sun") == ["sunglasses"]


# ----------------------------------------------------------------------------- exit 2 for a bad value

BAD_VALUES = [
    (["train-baseline", "--subset", "xx"], "'xx' is not one of nm, m, mix, pe"),
    (["train-baseline", "--method", "svm"], "'svm' is not one of ce, cl, kd"),
    (["train-baseline", "--protocol", "loo"], "'loo' is not one of folds, split"),
    (["train-baseline", "--format", "eps"], "'eps' is not one of png, pdf, svg"),
    (["train-baseline", "--precision", "fp16"], "'fp16' is not one of auto, fp32, bf16"),
    (["train-baseline", "--feature", "map"], "'map' is not one of pool, pool-l2, map-l2"),
    (["ingest", "x.zip", "--dataset", "affectnet"], "'affectnet' is not one of msd-e, occlu-fer, fer2013, ferplus, ferv39k, imagefolder"),
    (["ingest", "x.zip", "--split", "dev"], "'dev' is not one of train, val, test"),
    (["align", "--device", "tpu"], "'tpu' is not one of auto, cpu, cuda"),
    (["align", "--detector", "mtcnn"], "'mtcnn' is not one of retinaface, scrfd"),
    (["align", "--face", "left"], "'left' is not one of largest, center"),
    (["publish", "--images", "raw", "--out", "x"], "'raw' is not one of aligned, original"),
    (["publish", "--config", "mix", "--config", "all", "--out", "x"], "'all' is not one of mix, nm, m, pe"),
    (["relabel", "--votes", "v.csv", "--scheme", "vote"], "'vote' is not one of"),
    (["folds", "--k", "5", "--within-split", "dev"], "'dev' is not one of train, val, test"),
    (["tag", "add", "--tag", "scarf", "--ids", "a"], "'scarf' is not one of mask, sunglasses"),
    (["tag", "import", "list.txt", "--list-tag", "scarf"], "'scarf' is not one of mask, sunglasses"),
    (["demo", "--device", "gpu"], "'gpu' is not one of auto, cpu, cuda"),
    (["train-baseline", "--epochs", "many"], "Invalid value for '--epochs'"),
]


@pytest.mark.parametrize("args,allowed", BAD_VALUES, ids=[" ".join(a[:2]) + " " + a[-1] for a, _ in BAD_VALUES])
def test_a_bad_option_value_is_usage_exit_2_listing_the_allowed_values(args, allowed, tmp_path):
    result = invoke(*args, "-w", tmp_path) if args[0] not in ("demo", "tag") else invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""  # usage errors go to stderr
    assert allowed in said(result.stderr)


def test_label_issues_filter_is_checked_too(tmp_path):
    result = invoke("label-issues", tmp_path, "--filter", "loss")
    assert result.exit_code == 2 and "'loss' is not one of prune_by_noise_rate, prune_by_class" in said(result.stderr)


# ----------------------------------------------------------------------------- --json on every summary command


def crop_png(image_id: str) -> bytes:
    seed = int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:4], "little")
    pixels = np.linspace(0, 200, 112)[None, :, None] + np.random.default_rng(seed).integers(0, 50, size=(112, 112, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Every summary command run once with --json on one small MSD-E workspace (3 subjects),
    in pipeline order; each entry is (the CliRunner result, the workspace)."""
    from ferdata.workspace import Workspace

    root = tmp_path_factory.mktemp("conventions")
    src = msd_e_tree(root / "src", subjects=3)
    ws = Workspace.resolve(root / "ws")
    w = ["-w", ws.root]
    done: dict = {}

    def run(name: str, *args) -> None:
        done[name] = invoke(*args, "--json")

    run("ingest", "ingest", src, "--dataset", "msd-e", "--no-align", *w)
    # aligned crops stand in for the detector's (the tiny test images hold no face)
    manifest = ws.load()
    frame = manifest.frame
    for i, image_id in enumerate(frame["image_id"]):
        crop = ws.aligned_dir("msd-e") / "112px" / f"{image_id.replace('/', '_')}.png"
        write(crop, crop_png(image_id))
        frame.loc[i, ["face_status", "aligned_path"]] = ["aligned", ws.relative(crop)]
    ws.save(manifest)
    votes = ["image,annotator,vote", *(f"{RELABELLED},{a},{'fear' if i < 6 else 'ok'}" for i, a in enumerate(ANNOTATORS))]
    write(root / "votes.csv", ("\n".join(votes) + "\n").encode())
    run("relabel --dry-run", "relabel", "--votes", root / "votes.csv", "--dry-run", *w)
    run("relabel", "relabel", "--votes", root / "votes.csv", *w)
    run("pairs", "pairs", *w)
    run("folds", "folds", "--k", "3", "--workers", "1", *w)
    run("check-leakage", "check-leakage", "--workers", "1", *w)
    run("align", "align", "--only-missing", "--device", "cpu", *w)
    run("tag add", "tag", "add", "--tag", "hat", "--ids", "MSD-E/001_0_dslr,MSD-E/001_1_dslr", *w)
    run("tag remove", "tag", "remove", "--tag", "mask", "--where", "subject_id == '001'", *w)
    write(root / "tags.csv", b"image,tag\nMSD-E/002_0_dslr,glasses\nnot-here,glasses\n")
    run("tag import", "tag", "import", root / "tags.csv", *w)
    run("tag list", "tag", "list", *w)
    run("tag auto", "tag", "auto", "--mask", *w)
    run("mask-synth", "mask-synth", "--limit", "2", *w)
    run("stats", "stats", *w)
    run("publish", "publish", "--out", root / "hf", *w)
    run("train-baseline", "train-baseline", *w, "--subset", "mix", "--epochs", "1", "--image-size", "32", "--batch-size", "16",
        "--device", "cpu", "--no-tsne", "--no-epoch-log", "--out", root / "run")
    run("label-issues", "label-issues", root / "run")
    return {"ws": ws, "root": root, **done}


SUMMARY_COMMANDS = ["ingest", "relabel --dry-run", "relabel", "pairs", "folds", "check-leakage", "align", "tag add", "tag remove",
                    "tag import", "tag list", "tag auto", "mask-synth", "stats", "publish", "train-baseline", "label-issues"]


@pytest.mark.parametrize("name", SUMMARY_COMMANDS)
def test_json_is_one_document_on_stdout(runs, name):
    result = runs[name]
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # the whole of stdout: nothing printed before or after
    assert isinstance(data, dict) and data
    assert "\x1b" not in result.stdout  # no colour codes


def test_json_holds_the_librarys_numbers(runs):
    """Each command's JSON against what the library wrote (not against the CLI's own printing)."""
    ws = runs["ws"]
    frame = ws.load().frame
    data = {name: json.loads(runs[name].stdout) for name in SUMMARY_COMMANDS}

    ingest = data["ingest"]
    assert (ingest["dataset"], ingest["rows"], ingest["manifest"]["images"]) == ("msd-e", 42, 42)
    dry, done = data["relabel --dry-run"], data["relabel"]
    assert dry["dry_run"] and not done["dry_run"] and "audit" not in done  # the audit is a file, listed in written
    assert [c["image_id"] for c in done["changes"]] == [RELABELLED] and done["changes"][0]["label_after"] == "fear"
    assert done["n_votes"] == 7 and any(p.endswith("relabel_audit.parquet") for p in done["written"])
    pairs = data["pairs"]
    assert pairs["n_pairs"] == frame["pair_id"].nunique() == 21 and pairs["n_in_pe"] == 20
    folds = data["folds"]
    assert folds["k"] == 3 and sorted(row["fold"] for row in folds["balance"]) == [0, 1, 2]
    assert folds["leakage"]["leaks"] == [] and data["check-leakage"]["rows_checked"] == folds["leakage"]["rows_checked"] > 0
    assert data["align"]["processed"] == 0 and data["align"]["dataset"] == "msd-e"  # --only-missing: every crop is there
    assert (data["tag add"]["changed"], data["tag add"]["selected"]) == (2, 2)
    assert data["tag remove"]["kept_source"] == 7 and data["tag remove"]["changed"] == 0  # source tags need --force
    assert data["tag import"]["changed"] == 1 and data["tag import"]["unmatched"] == ["not-here"]
    counts = {row["tag"]: row for row in data["tag list"]["counts"]}
    assert counts["hat"]["manual"] == 2 and counts["glasses"]["manual"] == 1 and counts["mask"]["source"] == 21
    assert data["tag auto"]["scored"] == int((frame["face_status"] == "aligned").sum())
    assert data["mask-synth"]["created"] == int((frame["occlusion"].map(lambda t: "synthetic_mask" in list(t))).sum())
    stats = data["stats"]
    assert stats["images"] == len(frame)
    published = data["publish"]
    assert sum(published["counts"]["mix"].values()) == int(frame["label"].notna().sum())
    assert all(Path(p).is_file() for p in published["files"])
    train = data["train-baseline"]
    results = json.loads((runs["root"] / "run" / "results.json").read_text())
    assert train["summary"]["mean"]["accuracy"] == pytest.approx(results["mean"]["accuracy"])
    assert train["config"]["subset"] == "mix" and train["protocol"] == "folds"
    issues = data["label-issues"]
    oof = pd.read_parquet(runs["root"] / "run" / "oof.parquet")
    assert issues["n_checked"] == len(oof) and len(issues["issues"]) == len(pd.read_csv(issues["table_path"]))


def test_warnings_go_to_stderr_and_quiet_silences_them(runs):
    ws = runs["ws"]
    warned = runs["tag remove"]
    assert "keep mask because it came from the source" in warned.stderr
    quiet = invoke("tag", "remove", "--tag", "mask", "--where", "subject_id == '001'", "-w", ws.root, "--json", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == "" and json.loads(quiet.stdout)["kept_source"] == 7
    also_first = invoke("-q", "tag", "remove", "--tag", "mask", "--where", "subject_id == '001'", "-w", ws.root)
    assert also_first.exit_code == 0 and also_first.stderr == "" and "mask removed from 0 of 14 selected images" in also_first.stdout


def test_verbose_adds_log_lines_on_stderr_only(runs):
    ws = runs["ws"]
    result = invoke("stats", "-w", ws.root, "--json", "-v")
    assert result.exit_code == 0 and json.loads(result.stdout)["images"] > 0
    assert "INFO ferdata: stats finished in" in result.stderr
    assert "INFO" not in invoke("stats", "-w", ws.root, "--json").stderr


def test_errors_stay_on_stderr_even_when_quiet(tmp_path):
    result = invoke("-q", "stats", "-w", tmp_path, "--json")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("error: workspace") and len(result.stderr.splitlines()) == 1


# ----------------------------------------------------------------------------- piped output


def test_piped_output_is_never_hard_wrapped(runs, tmp_path_factory):
    """Through a real pipe: a line longer than 80 columns stays one line, tables included."""
    ws = runs["ws"]
    deep = tmp_path_factory.mktemp("a-folder-name-long-enough-that-any-line-naming-it-passes-eighty-columns")
    sheet = deep / "contact-sheet-with-a-long-name.png"
    env = {"COLUMNS": "", "TERM": "dumb"}
    piped = subprocess.run([sys.executable, "-m", "ferdata", "stats", "-w", str(ws.root), "--contact-sheet", str(sheet)],
                           capture_output=True, text=True, env={**_environ(), **env}, check=False)
    assert piped.returncode == 0, piped.stderr
    assert f"contact sheet: {sheet}" in piped.stdout.splitlines()
    assert max(len(line) for line in piped.stdout.splitlines()) > 80
    as_json = subprocess.run([sys.executable, "-m", "ferdata", "stats", "-w", str(ws.root), "--json"],
                             capture_output=True, text=True, env=_environ(), check=False)
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["dataset"] == "msd-e" and as_json.stderr == ""


def test_a_rich_panel_printed_to_a_pipe_keeps_its_lines(capsys):
    """The demo prints each step in a panel; piped, each line of it stays whole (the commands it
    shows must survive copy and paste)."""
    from rich.panel import Panel

    from ferdata.cli.common import out, set_verbosity

    line = "ferdata train-baseline --data /a/rather/long/path/to/msd-e-dataset --subset mix --folds 10 --out runs/mix"
    set_verbosity()
    out.print(Panel(line, title="train-baseline", expand=False))
    printed = capsys.readouterr().out
    assert any(line in row for row in printed.splitlines())


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}

"""The CLI's option defaults are the library's: a command restates them (typer needs a literal
default to show in --help), so this test is what keeps the two from drifting apart."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
import typer.main

from ferdata.cli import app

# command -> the library callables whose parameters it passes on, and CLI names spelt otherwise
TARGETS: dict[str, tuple[list[str], dict[str, str]]] = {
    "ingest": (["ferdata.ingest:ingest", "ferdata.align:align_manifest", "ferdata.archives.limits:Limits"], {"face": "face_choice"}),
    "align": (["ferdata.align:align"], {"face": "face_choice"}),
    "relabel": (["ferdata.relabel:relabel"], {}),
    "pairs": (["ferdata.pairs:make_pairs"], {}),
    "folds": (["ferdata.folds:make_folds"], {}),
    "check-leakage": (["ferdata.leakage:check_leakage"], {}),
    "mask-synth": (["ferdata.masks.synth:synthesize_masks"], {"mask_image": "mask_images"}),
    "tag auto": (["ferdata.masks.tagging:auto_tag_masks"], {}),
    "publish": (["ferdata.publish.folder:publish"], {}),
    "train-baseline": (["ferdata.train.config:TrainConfig"], {}),
    "label-issues": (["ferdata.labelissues:label_issues"], {}),
    "demo": (["ferdata.demo:run_demo"], {}),
}
# CLI options that differ from the library on purpose, with the reason
DIFFERENT = {
    ("ingest", "max_total_gb"): "GiB on the command line, bytes in Limits.max_total_bytes (checked below)",
    ("demo", "out_dir"): "the library has no default folder; the CLI writes ./ferdata-demo",
}


def commands() -> dict[str, Any]:
    found = {}

    def walk(command: Any, prefix: str) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            found[prefix] = command

    walk(typer.main.get_command(app), "")
    return found


def library_defaults(target: str) -> dict[str, Any]:
    module, name = target.split(":")
    obj = getattr(importlib.import_module(module), name)
    if dataclasses.is_dataclass(obj):
        return {f.name: f.default for f in dataclasses.fields(obj) if f.default is not dataclasses.MISSING}
    return {p.name: p.default for p in inspect.signature(obj).parameters.values() if p.default is not inspect.Parameter.empty}


def plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value) if value else None
    if isinstance(value, Path):
        return str(value)
    return value


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_cli_defaults_are_the_librarys(name: str) -> None:
    command = commands()[name]
    targets, renamed = TARGETS[name]
    library: dict[str, Any] = {}
    for target in targets:
        library.update(library_defaults(target))
    compared = 0
    for param in command.params:
        if param.name in ("help",) or (name, param.name) in DIFFERENT:
            continue
        key = renamed.get(param.name, param.name)
        if key not in library:
            continue
        cli, lib = plain(param.default), plain(library[key])
        if param.multiple and cli in ((), None):
            cli = None
        assert cli == lib, f"ferdata {name} --{param.name.replace('_', '-')} defaults to {cli!r}, the library to {lib!r}"
        compared += 1
    assert compared >= 1, f"no option of ferdata {name} was compared with the library"


def test_the_documented_differences_hold() -> None:
    from ferdata.archives.limits import Limits

    ingest = commands()["ingest"]
    gib = next(p.default for p in ingest.params if p.name == "max_total_gb")
    assert int(gib * 2**30) == Limits().max_total_bytes


def test_library_messages_reach_the_user_with_the_flags_to_pass(tmp_path: Path) -> None:
    """The library names its arguments (``size=8``, ``label_map=...``, ``k=5``); each command
    prints the same line with its own flags."""
    from typer.testing import CliRunner

    from ferdata.schema import Manifest, new_frame
    from ferdata.workspace import Workspace

    runner = CliRunner()
    src = tmp_path / "src" / "train" / "Q7"
    src.mkdir(parents=True)
    (src / "a.jpg").write_bytes(b"not read")
    ws = tmp_path / "ws"
    result = runner.invoke(app, ["ingest", str(tmp_path / "src"), "-w", str(ws), "--dataset", "imagefolder", "--no-align"])
    assert result.exit_code == 1
    assert "map it with --label-map Q7=<label>" in result.output and "label_map=" not in result.output

    rows = [{"image_id": f"i{i}", "dataset": "imagefolder", "source": f"i{i}.png", "original_path": f"originals/i{i}.png",
             "sha256": f"{i:064x}", "label_original": "happy", "label": "happy", "label_status": "original",
             "subject_id": "s1", "width": 48, "height": 48} for i in range(4)]
    Workspace(ws).save(Manifest(dataset="imagefolder", frame=new_frame(rows), provenance={}))
    result = runner.invoke(app, ["align", "-w", str(ws), "--size", "8"])
    assert result.exit_code == 1 and "--size 8 is out of range" in result.output
    result = runner.invoke(app, ["folds", "-w", str(ws), "--k", "3"])
    assert result.exit_code == 1 and "--k 3 is larger than the number of identity groups (1)" in result.output
    result = runner.invoke(app, ["pairs", "-w", str(ws), "--dataset", "msd-e"])
    assert result.exit_code == 1 and "run ferdata ingest ... --dataset msd-e first" in result.output


def test_the_trainers_messages_name_the_folds_command_on_the_command_line() -> None:
    from ferdata.cli.train import _with_flags

    library = "folds=5: the data's fold column holds folds 0,1; make those folds first: make_folds(ws, 5)"
    assert _with_flags(library) == "--folds 5: the data's fold column holds folds 0,1; make those folds first: ferdata folds --k 5"

"""The votes side of `ferdata review`: the annotator's file (VoteBook) and `relabel --votes FOLDER`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ferdata.cli import app as cli
from ferdata.errors import UsageError, VotesError
from ferdata.review.votebook import VoteBook, check_annotator
from ferdata.schema import Manifest, new_frame
from ferdata.votes import read_votes, tally
from ferdata.workspace import Workspace


def frame() -> pd.DataFrame:
    rows = [
        dict(image_id=f"MSD-E/0{i}", dataset="msd-e", source=f"d/MSD-E/0{i}.jpg", sha256=f"{i:064x}",
             label_original=label, label=label, masked=False, original_path=f"originals/msd-e/0{i}.jpg",
             width=10, height=10)
        for i, label in enumerate(["happy", "sad", "fear", "neutral"])
    ]
    return new_frame(rows)


def rows_of(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


def test_votebook_keeps_one_row_per_image_the_last_decision_last(tmp_path):
    book = VoteBook(tmp_path / "votes", "alice")
    assert book.set("MSD-E/00", "sad") is None
    assert book.set("MSD-E/01", "not_face") is None
    assert book.set("MSD-E/00", "fear") == "sad"
    assert rows_of(book.path) == [["image", "annotator", "vote"], ["MSD-E/01", "alice", "not_face"], ["MSD-E/00", "alice", "fear"]]
    assert book.set("MSD-E/01", None) == "not_face"
    assert book.votes() == {"MSD-E/00": "fear"} and len(book) == 1
    assert book.set("MSD-E/03", None) is None  # withdrawing nothing writes nothing new
    assert [p.name for p in (tmp_path / "votes").iterdir()] == ["alice.csv"]


def test_votebook_reads_what_others_wrote_and_keeps_their_rows(tmp_path):
    path = tmp_path / "votes" / "alice.csv"
    path.parent.mkdir()
    # edited by hand: a repeated row (the later one wins) and a row of another annotator
    path.write_text("image,annotator,vote\nMSD-E/00,alice,sad\nMSD-E/00,bob,happy\nMSD-E/00,alice,fear\n")
    book = VoteBook(path.parent, "alice")
    assert book.get("MSD-E/00") == "fear"
    book.set("MSD-E/02", "angry")
    assert rows_of(path)[1:] == [["MSD-E/00", "bob", "happy"], ["MSD-E/00", "alice", "fear"], ["MSD-E/02", "alice", "angry"]]
    path.write_text("image,annotator,vote\nMSD-E/01,alice,neutral\n")  # replaced behind its back
    assert book.votes() == {"MSD-E/01": "neutral"}


@pytest.mark.parametrize("name", ["", "../x", ".hidden", "a/b", "a b", "x" * 65, "é"])
def test_annotator_names_must_make_a_plain_file_name(name):
    with pytest.raises(UsageError, match="cannot name a votes file"):
        check_annotator(name)


def test_relabel_reads_a_folder_of_long_and_wide_files(tmp_path):
    folder = tmp_path / "votes"
    folder.mkdir()
    (folder / "alice.csv").write_text("image,annotator,vote\nMSD-E/00,alice,sad\nMSD-E/01,alice,sad\n")
    (folder / "bob.csv").write_text("image,annotator,vote\nMSD-E/00,bob,sad\n")
    (folder / "panel.tsv").write_text("image\tcarol\tdan\nMSD-E/00\tok\tnf\n")
    (folder / ".tmp-alice.csv").write_text("half a fi")  # a writer's temporary: never read
    (folder / "notes.txt").write_text("not votes")
    raw = read_votes(folder)
    assert raw.form == "long+wide" and raw.path == folder and len(raw.table) == 5
    counted = tally(raw, frame())
    assert counted.endorsements.loc["MSD-E/00", ["happy", "sad", "not_face"]].tolist() == [1, 2, 1]
    assert read_votes(folder).sha256 == raw.sha256
    (folder / "bob.csv").write_text("image,annotator,vote\nMSD-E/00,bob,fear\n")
    assert read_votes(folder).sha256 != raw.sha256


def test_a_folder_refuses_what_cannot_be_combined(tmp_path):
    folder = tmp_path / "votes"
    folder.mkdir()
    with pytest.raises(VotesError, match="holds no votes files"):
        read_votes(folder)
    (folder / "a.csv").write_text("image,annotator,vote\nMSD-E/00,alice,sad\n")
    (folder / "b.csv").write_text("image,annotator,vote\nMSD-E/00,alice,fear\n")
    with pytest.raises(VotesError, match="several votes by the same annotator"):
        tally(read_votes(folder), frame())
    (folder / "b.csv").unlink()
    (folder / "fer2013new.csv").write_text(
        "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\nTraining,fer0.png,10,0,0,0,0,0,0,0,0,0\n"
    )
    with pytest.raises(VotesError, match="FER\\+ count matrix"):
        read_votes(folder)


def test_relabel_command_takes_the_votes_folder(tmp_path):
    ws = Workspace.resolve(tmp_path / "ws")
    ws.save(Manifest("msd-e", frame(), {}))
    folder = ws.root / "votes"
    folder.mkdir()
    (folder / "alice.csv").write_text("image,annotator,vote\nMSD-E/00,alice,sad\nMSD-E/01,alice,flag\nMSD-E/02,alice,fear\n")
    result = CliRunner().invoke(cli, ["relabel", "-w", str(ws.root), "--votes", "votes"])
    assert result.exit_code == 0, result.output
    out = ws.load("msd-e").frame.set_index("image_id")
    assert out["label_status"].to_dict() == {"MSD-E/00": "relabelled", "MSD-E/01": "removed", "MSD-E/02": "original", "MSD-E/03": "original"}
    assert out.at["MSD-E/00", "label"] == "sad"
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["relabel", "-w", str(ws.root), "--votes", str(empty)])
    assert result.exit_code == 1 and "holds no votes files" in result.output

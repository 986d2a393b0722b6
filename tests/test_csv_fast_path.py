"""The FER2013 CSV reader's fast path (blocks of lines parsed on threads, pixel strings parsed by
numpy) gives what the careful path gives: the same lines, the same pixels, the same manifest and
the same files."""

from __future__ import annotations

import dataclasses
import io
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builders import fer2013_csv, fer_rows, write
from ferdata.ingest import ingest
from ferdata.sources import fer2013
from ferdata.workspace import Workspace


def _careful_blocks(monkeypatch) -> None:
    """Make every block take the careful path: csv-module rows, pixels split by Python."""
    fast_blocks = fer2013._blocks

    def careful(text, longest):
        for block in fast_blocks(text, longest):
            yield dataclasses.replace(block, plain=False)

    monkeypatch.setattr(fer2013, "_blocks", careful)


def _ingested(root, ws: Workspace) -> tuple[pd.DataFrame, dict[str, bytes]]:
    frame = ingest(ws, root, align=False).manifest.frame
    files = {path: (ws.root / path).read_bytes() for path in frame["original_path"]}
    return frame, files


def test_the_fast_path_gives_the_same_manifest_and_files_as_the_careful_path(tmp_path, monkeypatch):
    lines = fer2013_csv(fer_rows(60)).decode().splitlines()
    lines.insert(9, "")  # a blank line keeps its row number
    data = ("\r\n".join(lines) + "\r\n").encode()  # Windows line ends, split across blocks
    write(tmp_path / "src" / "fer2013.csv", data)
    monkeypatch.setattr(fer2013, "_BLOCK_CHARS", 20_000)  # about two rows a block: many blocks, both threads busy

    fast_rows, fast_files = _ingested(tmp_path / "src", Workspace.resolve(tmp_path / "fast"))
    _careful_blocks(monkeypatch)
    careful_rows, careful_files = _ingested(tmp_path / "src", Workspace.resolve(tmp_path / "careful"))

    assert len(fast_rows) == 60
    pd.testing.assert_frame_equal(fast_rows, careful_rows)
    assert fast_files == careful_files
    tenth = fast_rows.iloc[9]
    assert tenth["image_id"] == "fer2013-0000010"  # row 9 is the blank line
    # and the pixels are the CSV's own
    from PIL import Image

    row = lines[1 + 10]  # header, then data row 10
    expected = np.array(row.split(",")[1].split(), dtype=np.uint8).reshape(48, 48)
    stored = np.asarray(Image.open(io.BytesIO(fast_files[tenth["original_path"]])))
    assert (stored == expected).all()


_NUMBER = st.integers(0, 300).map(str)
_TOKEN = st.one_of(
    _NUMBER, _NUMBER, _NUMBER, _NUMBER, _NUMBER,  # mostly numbers, so that many strings are all numbers
    st.sampled_from(["-1", "+2", "007", "1.5", "1e3", "x", "0x1", "nan", "99999999999999999999"]),
    st.text(alphabet="0123456789 -+x.e,\x00\x1c", max_size=4),
)


@st.composite
def _pixel_strings(draw) -> str:
    """Mostly four numbers (2×2 pixels), now and then a token or separator of another kind."""
    tokens = draw(st.lists(_TOKEN, min_size=0, max_size=5))
    text = ""
    for token in tokens:
        text += token + draw(st.sampled_from([" "] * 6 + ["  ", "\t", "\x0b", "\x1c"]))
    return draw(st.sampled_from(["", " "])) + text


@settings(max_examples=400, deadline=None)
@given(_pixel_strings())
def test_numpy_parses_a_pixel_string_only_when_the_careful_path_accepts_it_alike(text):
    fast = fer2013._fast_pixels(text, 2)
    careful = fer2013._checked_pixels(text, 2)
    if fast is not None:
        assert isinstance(careful, np.ndarray) and (fast == careful).all()


def test_well_formed_pixel_strings_take_the_fast_path():
    if not fer2013._STRICT_FROMSTRING:
        pytest.skip("numpy < 2.3 stops at a bad token with a warning: every row takes the careful path")
    assert fer2013._fast_pixels("0 255  7\t12", 2).tolist() == [[0, 255], [7, 12]]
    for bad in ("0 256 7 12", "0 -1 7 12", "0 1 7", "0 1 7 12 9", "0 1 7 x", "0 1 7 1.5", ""):
        assert fer2013._fast_pixels(bad, 2) is None, bad


def _lines_by_spec(text: str, longest: int) -> list[str | None]:
    """What the reader must see: lines split at \\r\\n, \\r or \\n; one of ``longest`` characters
    or more is None."""
    lines = re.split("\r\n|\r|\n", text)
    if lines[-1] == "":
        lines.pop()
    return [line if len(line) < longest else None for line in lines]


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet="ab,\"é\r\n", max_size=60),
    longest=st.integers(2, 12),
    block=st.integers(1, 9),
)
def test_blocks_split_lines_as_readline_does_at_any_block_size(text, longest, block):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fer2013, "_BLOCK_CHARS", block)
        blocks = list(fer2013._blocks(io.StringIO(text, newline=""), longest))
    lines: list[str | None] = []
    for b in blocks:
        assert b.first_row == len(lines)
        if b.plain:
            assert all(line is None or (line.isascii() and '"' not in line) for line in b.lines)
        lines += b.lines
    assert lines == _lines_by_spec(text, longest)

"""The promises of every user-facing error: one line, bounded, no memory addresses."""

from __future__ import annotations

import io

import pytest
from PIL import Image, UnidentifiedImageError

from ferdata.errors import MAX_MESSAGE, FerdataError, ImageUnreadable, one_line, shown


def test_a_huge_value_is_cut_in_the_middle_keeping_the_advice() -> None:
    message = FerdataError("unknown Usage " + "X" * 200_000 + ": fix the row")
    text = str(message)
    assert len(text) <= MAX_MESSAGE
    assert text.startswith("unknown Usage XXX") and text.endswith(": fix the row")
    assert "characters cut" in text


def test_line_breaks_become_spaces() -> None:
    assert str(FerdataError("first\nsecond\r\nthird")) == "first second third"


def test_object_addresses_are_dropped_so_two_runs_give_the_same_text() -> None:
    reasons = []
    for _ in range(2):
        try:
            Image.open(io.BytesIO(b"not an image"))
        except UnidentifiedImageError as exc:
            assert " at 0x" in str(exc)  # Pillow's own text holds the stream's address
            reasons.append(str(ImageUnreadable(f"image: {exc}")))
    assert reasons[0] == reasons[1] == "image: cannot identify image file"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Training", "'Training'"), ("X" * 100, "'" + "X" * 58 + "… (100 characters)")],
)
def test_shown_values_are_quoted_and_bounded(value: str, expected: str) -> None:
    assert shown(value) == expected


def test_short_messages_are_left_alone() -> None:
    assert one_line("cannot write x (No space left on device): free some disk space") == (
        "cannot write x (No space left on device): free some disk space"
    )

"""docs/python-api.md is one program: its ```python blocks run as written, top to bottom, in a
fresh folder, with no CLI and no lock handling (the page's promise)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


@pytest.mark.slow
def test_the_python_page_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    namespace: dict = {"__name__": "python_api_page"}
    code = blocks()
    assert len(code) >= 8
    for number, block in enumerate(code, start=1):
        exec(compile(block, f"{PAGE.name} block {number}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "wrong password" in printed
    assert "k=50 is larger than the number of identity groups" in printed
    ws = namespace["ws"]
    assert not (Path(ws) / ".ferdata" / "lock").exists()  # every step let go of its lock
    frame = namespace["frame"]
    assert frame["fold"].notna().any() and frame["pair_id"].notna().any()
    assert namespace["issues"].tagged == len(namespace["issues"].issues)
    mix, published = namespace["mix"], namespace["published"]
    assert sum(part.num_rows for part in mix.values()) == sum(published.counts["mix"].values())


def test_the_page_shows_no_lock_handling_and_no_cli() -> None:
    text = "\n".join(blocks())
    assert ".lock(" not in text
    assert "subprocess" not in text and "ferdata.cli" not in text

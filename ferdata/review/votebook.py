"""One annotator's votes, kept in ``votes/<annotator>.csv`` in the long form that
``ferdata relabel --votes`` reads (``image, annotator, vote``).

The file holds one row per decided image: a new decision on an image replaces the earlier one
(the last decision wins) and moves the row to the end, so the file lists decisions in the order
they were last made. Every change rewrites the file atomically (a temporary file, fsync, rename):
a crash leaves the previous file whole, and ``relabel`` never reads half a file.
"""

from __future__ import annotations

import csv
import io
import re
import threading
from pathlib import Path

from ..errors import UsageError
from ..fsutil import atomic_write_bytes

VOTES_FOLDER = "votes"
COLUMNS = ("image", "annotator", "vote")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_annotator(name: str) -> str:
    """``name`` if it can name a votes file: letters, digits, ``_ . -``, at most 64, no leading dot."""
    if not _NAME.match(name or ""):
        raise UsageError(
            f"annotator={name!r} cannot name a votes file: use letters, digits, '_', '.' or '-' "
            "(at most 64, starting with a letter or digit), e.g. annotator='alice'"
        )
    return name


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class VoteBook:
    """The votes in ``folder/<annotator>.csv``, in memory and on disk, safe across threads.

    Rows of other annotators found in the file are kept as they are.
    """

    def __init__(self, folder: Path, annotator: str):
        self.annotator = check_annotator(annotator)
        self.path = Path(folder) / f"{annotator}.csv"
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str], str] = {}  # (image, annotator) -> vote, in decision order
        self._seen: tuple[int, int, int] | None = None
        self.generation = 0  # bumped on every change, so that callers can drop cached selections
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        """Re-read the file if someone else changed it since we last read or wrote it."""
        stamp = _stamp(self.path)
        if stamp == self._seen:
            return
        rows: dict[tuple[str, str], str] = {}
        if stamp is not None:
            try:
                text = self.path.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(
                    f"cannot read votes file {self.path}: {exc}; move it away to start a new one"
                ) from None
            for record in csv.DictReader(io.StringIO(text)):
                image = (record.get("image") or "").strip()
                if image:
                    key = (image, (record.get("annotator") or self.annotator).strip())
                    rows.pop(key, None)  # a repeated row: the later one is the later decision
                    rows[key] = (record.get("vote") or "").strip()
        self._rows, self._seen = rows, stamp
        self.generation += 1

    def _write(self) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows((image, annotator, vote) for (image, annotator), vote in self._rows.items())
        atomic_write_bytes(self.path, buffer.getvalue().encode())
        self._seen = _stamp(self.path)
        self.generation += 1

    def votes(self) -> dict[str, str]:
        """This annotator's vote per image."""
        with self._lock:
            self._refresh()
            return {image: vote for (image, who), vote in self._rows.items() if who == self.annotator}

    def get(self, image_id: str) -> str | None:
        with self._lock:
            self._refresh()
            return self._rows.get((image_id, self.annotator))

    def set(self, image_id: str, vote: str | None) -> str | None:
        """Record ``vote`` (None withdraws the decision); returns the vote it replaced."""
        with self._lock:
            self._refresh()
            key = (image_id, self.annotator)
            previous = self._rows.pop(key, None)
            if vote is not None:
                self._rows[key] = vote
            if previous is not None or vote is not None:
                self._write()
            return previous

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return sum(1 for (_, who) in self._rows if who == self.annotator)


def votes_files(folder: Path) -> list[Path]:
    """The votes files directly in ``folder`` (hidden temporary files left out)."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in (".csv", ".tsv") and not p.name.startswith(".") and p.is_file()
    )


def stamp_of(paths: list[Path]) -> tuple:
    """What changes when any of ``paths`` changes (for caches)."""
    return tuple((p.name, _stamp(p)) for p in paths)


__all__ = ["COLUMNS", "VOTES_FOLDER", "VoteBook", "check_annotator", "votes_files", "stamp_of"]

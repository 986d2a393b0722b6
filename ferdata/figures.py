"""Figures as files: PNG for a quick look, PDF or SVG for a paper, the same bytes on every run.

The trainer's confusion matrices and t-SNE (:mod:`ferdata.train.report`) and the contact sheet
(:mod:`ferdata.vision.contact`) are matplotlib figures saved here. Vector formats keep text and
lines sharp at any size; images inside them (the contact sheet's faces) stay lossless PNG.

Saving is reproducible: no creation date in PDF or SVG, SVG element ids salted with a constant
rather than a random string, and the file replaced atomically. SVG keeps its text as ``<text>``
(editable in a vector editor, searchable) rather than glyph outlines. So a run written twice gives the
same files, whatever the format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UsageError
from .fsutil import atomic_path

FORMATS = ("png", "pdf", "svg")
DEFAULT_FORMAT = "png"
DEFAULT_DPI = 150
# without a date, and with a fixed salt for SVG ids, the same figure gives the same bytes
_METADATA = {"png": {}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}


def check_format(fmt: str, dpi: int | None = None) -> str:
    """``fmt`` if it is one of :data:`FORMATS` (any case) and ``dpi`` sensible, else a :class:`UsageError`."""
    if fmt.lower() not in FORMATS:
        raise UsageError(f"figure_format={fmt!r} is not one of {', '.join(FORMATS)}")
    if dpi is not None and not 10 <= dpi <= 2400:
        raise UsageError(f"dpi={dpi} must be between 10 and 2400")
    return fmt.lower()


def format_of(path: Path | str) -> str:
    """The format a file name asks for by its suffix (``sheet.pdf`` -> ``pdf``)."""
    suffix = Path(path).suffix.lower().removeprefix(".")
    if suffix not in FORMATS:
        names = [f".{f}" for f in FORMATS]
        raise UsageError(f"{path}: the file name must end in {', '.join(names[:-1])} or {names[-1]}")
    return suffix


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path, fmt: str = DEFAULT_FORMAT, dpi: int = DEFAULT_DPI) -> Path:
    """Write ``fig`` to ``path`` (atomically) as ``fmt``, then close it. ``dpi`` sets the PNG's
    pixels and the resolution of images inside a PDF or SVG."""
    import matplotlib

    fmt = check_format(fmt, dpi)
    path = Path(path)
    # SVG text stays text (editable, searchable) rather than glyph outlines
    with matplotlib.rc_context({"svg.hashsalt": "ferdata", "svg.fonttype": "none"}), atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, metadata=_METADATA[fmt])
    pyplot().close(fig)
    return path

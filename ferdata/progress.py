"""Progress reporting from the library without tying it to a terminal.

Long-running library functions take an optional ``progress`` callback and call it as
``progress(task, done, total)``; ``total`` is None when unknown. The CLI turns these calls into a
rich progress bar on a terminal and stays quiet when piped; tests and scripts pass nothing.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, int, "int | None"], None]


def null_progress(task: str, done: int, total: int | None) -> None:
    """The callback used when the caller passes none."""

"""What every command shares: the app, error translation, workspace options, progress bars.

Only the CLI layer imports typer and rich. Library imports happen inside the commands so that
``ferdata --help`` starts fast.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import FerdataError

app = typer.Typer(
    name="ferdata",
    help="Turn facial-expression-recognition datasets into clean, reproducible, research-ready data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold a password
    rich_markup_mode="markdown",
)

# soft_wrap: a line printed to a pipe or file stays one line (never hard-wrapped at 80 columns)
out = Console(soft_wrap=True)  # tables and results: stdout
err = Console(stderr=True, soft_wrap=True)  # progress, warnings and errors: stderr

# What a full or read-only disk looks like when a write that the library did not expect fails:
# the user's problem, not a bug, so one line too (the library translates the writes it knows).
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder (default: $FERDATA_WORKSPACE, else the current directory).",
        show_default=False,
    ),
]
DatasetOpt = Annotated[
    str | None,
    typer.Option("--dataset", "-d", help="Dataset in the workspace (optional when it holds only one)."),
]


def command(
    *args: Any, on: typer.Typer | None = None, flags: dict[str, str] | None = None, **kwargs: Any
) -> Callable:
    """``app.command`` (or ``on.command`` for a sub-app such as ``tag``) that turns a
    :class:`FerdataError` into one line on stderr and exit 1.

    Library messages name the library's arguments; ``flags`` maps each such spelling (a regular
    expression) to the command's option (``{r"\bprune=True": "--prune"}``), so that the user
    reads the flag to pass.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*a: Any, **k: Any) -> Any:
            try:
                return fn(*a, **k)
            except FerdataError as exc:
                fail(str(exc), flags)
            except Exception as exc:
                full = _disk_full(exc)
                if full is None:
                    raise  # a bug: its traceback is wanted
                # objects the failed write left half-open (a zip member) complain again when they are
                # collected at exit; their cause is the line below, so their tracebacks are not shown
                sys.unraisablehook = lambda unraisable: None
                where = f"cannot write {full.filename}" if full.filename else "a write failed"
                fail(
                    f"{where} ({os.strerror(full.errno)}): free some disk space or make the folder writable, "
                    "then run the same command again",
                    flags,
                )
            except KeyboardInterrupt:
                err.print("interrupted: nothing half-written was kept; run the same command again to resume")
                raise typer.Exit(130) from None

        return (on or app).command(*args, **kwargs)(run)

    return decorate


def _disk_full(exc: BaseException) -> OSError | None:
    """The full-disk OSError behind ``exc``, if any: libraries that clean up after a failed write
    (zipfile closing a half-written member) can raise a second error that hides the first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in _DISK_FULL:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


# Library arguments every command shares -> their flags (applied after the command's own map).
COMMON_FLAGS = {
    r"ingest it first \(dataset='([^']*)'\)": r"run ferdata ingest ... --dataset \1 first",
    r"ingest a dataset first, or choose the workspace= that holds one": (
        "run ferdata ingest first, or point --workspace/-w (or $FERDATA_WORKSPACE) at the right folder"
    ),
    r"\bdataset=NAME": "--dataset NAME",
    r"\bdataset=": "--dataset",
    r"\bworkspace=": "--workspace",
}


def fail(message: str, flags: dict[str, str] | None = None) -> NoReturn:
    """Print ``message`` as the command's one error line (library arguments renamed to flags), exit 1."""

    from ..errors import one_line

    for argument, flag in {**(flags or {}), **COMMON_FLAGS}.items():
        message = re.sub(argument, flag, message)
    # escaped: a message may quote brackets ("[1, 2]") that rich would read as markup
    err.print(f"[bold red]error:[/] {escape(one_line(message))}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int | None], None]]:
    """A ``progress(task, done, total)`` callback: a live bar on a terminal, silent when piped."""
    if not err.is_terminal:
        yield lambda task, done, total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    class Rate(TextColumn):
        def render(self, task):  # images per second, the number people watch
            speed = task.finished_speed or task.speed
            return super().render(task) if speed is None else f"{speed:,.0f}/s"

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        Rate(""),
        TimeRemainingColumn(),
    )
    tasks: dict[str, Any] = {}
    with Progress(*columns, console=err, transient=False) as bar:

        def update(task: str, done: int, total: int | None) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done, total=total)

        yield update


def elapsed(start: float) -> str:
    return f"{time.perf_counter() - start:.1f}s"

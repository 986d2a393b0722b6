"""What every command shares: the app, error translation, workspace options, progress bars.

Only the CLI layer imports typer and rich. Library imports happen inside the commands so that
``ferdata --help`` starts fast.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

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

out = Console()  # tables and results: stdout
err = Console(stderr=True)  # progress, warnings and errors: stderr

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


def command(*args: Any, on: typer.Typer | None = None, **kwargs: Any) -> Callable:
    """``app.command`` (or ``on.command`` for a sub-app such as ``tag``) that turns a
    :class:`FerdataError` into one line on stderr and exit 1."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*a: Any, **k: Any) -> Any:
            try:
                return fn(*a, **k)
            except FerdataError as exc:
                err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
            except KeyboardInterrupt:
                err.print("interrupted: nothing half-written was kept; run the same command again to resume")
                raise typer.Exit(130) from None

        return (on or app).command(*args, **kwargs)(run)

    return decorate


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

"""What every command shares: the app, its global options, error translation, workspace options,
JSON output, checked choices and progress bars.

Only the CLI layer imports typer and rich. Library imports happen inside the commands so that
``ferdata --help`` starts fast.

Where output goes (the conventions of gh, uv and hf):

- stdout carries the command's result: tables and lines on a terminal, or with ``--json`` one JSON
  document and nothing else;
- stderr carries progress, notices, warnings and errors;
- ``-q/--quiet`` silences progress, notices and warnings (errors and the result stay);
  ``-v/--verbose`` adds informational log lines (``-vv`` debug, with the traceback behind an
  error). :func:`set_verbosity` is the one place that sets both the consoles and Python logging;
- nothing is hard-wrapped when the output is not a terminal: a line piped to another program or
  a file is as long as it needs to be.
"""

from __future__ import annotations

import errno
import functools
import importlib
import inspect
import logging
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

# -h as well as --help, on the app and (inherited by every context) on each command
CONTEXT = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="ferdata",
    help="Turn facial-expression-recognition datasets into clean, reproducible, research-ready data.\n\n"
    "Every command takes -h/--help; -q/--quiet and -v/--verbose go before or after the command name; "
    "commands that report a summary take --json (one JSON document on stdout). Example: ferdata demo",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion
    pretty_exceptions_show_locals=False,  # locals may hold a password
    rich_markup_mode="markdown",
    context_settings=CONTEXT,
)

# soft_wrap: a line printed to a pipe or file stays one line (never hard-wrapped at 80 columns)
out = Console(soft_wrap=True)  # tables and results: stdout
err = Console(stderr=True, soft_wrap=True)  # progress, notices and warnings: stderr; silenced by --quiet
_errors = Console(stderr=True, soft_wrap=True)  # the error line: never silenced

# wide enough that a table or panel rendered for a pipe is as wide as its content, not 80 columns
_PIPE_WIDTH = 10_000

log = logging.getLogger("ferdata")

# What a full or read-only disk looks like when a write that the library did not expect fails:
# the user's problem, not a bug, so one line too (the library translates the writes it knows).
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


# ----------------------------------------------------------------------------- global options


class _StderrHandler(logging.StreamHandler):
    """Log records to whatever ``sys.stderr`` is when they are written (a test runner swaps it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def set_verbosity(quiet: bool = False, verbose: int = 0) -> None:
    """The output level, in one place: the stderr console and Python logging (ferdata's and the
    libraries' it uses, and Python warnings). quiet: errors only; default: warnings; -v: info;
    -vv: debug. Also fits the consoles' width to where they write (unlimited when piped)."""
    level = (
        logging.ERROR if quiet else logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    )
    err.quiet = quiet
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)
    handler.setLevel(level)
    logging.captureWarnings(True)  # warnings.warn from any library: shown by the same rule
    for console in (out, err, _errors):
        if not console.is_terminal:
            console.width = _PIPE_WIDTH


def verbosity() -> int:
    """-1 quiet, 0 default, 1 verbose, 2 debug (as :func:`set_verbosity` last set it)."""
    level = logging.getLogger().level
    return {logging.ERROR: -1, logging.INFO: 1, logging.DEBUG: 2}.get(level, 0)


QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Only errors and the result: no progress, notices or warnings.")
]
VerboseOpt = Annotated[
    int, typer.Option("--verbose", "-v", count=True, help="More detail on stderr: -v informational lines, -vv debug.")
]


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"ferdata {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """The options every command shares (the app's help text is the one shown)."""
    set_verbosity(quiet, verbose)


JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="Print the summary as one JSON document on stdout (progress and warnings stay on stderr)."
    ),
]


def print_json(result: Any) -> None:
    """The library's summary object, serialised (:mod:`ferdata.serialise`), as the only stdout output."""
    from ..serialise import to_json

    typer.echo(to_json(result))


# ----------------------------------------------------------------------------- checked choices


class Choice:
    """An option value that must be one of the library's names, checked at parse time: a wrong
    value is bad usage (exit 2) and the message lists the allowed values. The names are read from
    the library (``"ferdata.train.data:SUBSETS"``) only when needed, so ``--help`` stays fast.

    Pass ``callback=choice.check`` and ``autocompletion=choice.complete`` to ``typer.Option``.
    """

    def __init__(self, where: str) -> None:
        self.where = where

    @functools.cached_property
    def values(self) -> tuple[str, ...]:
        module, _, name = self.where.partition(":")
        return tuple(getattr(importlib.import_module(module), name))

    def check(self, value: Any) -> Any:
        for one in value if isinstance(value, list | tuple) else [value]:
            if one is not None and one not in self.values:
                raise typer.BadParameter(f"{one!r} is not one of {', '.join(self.values)}")
        return value

    def complete(self, incomplete: str) -> list[str]:
        return [v for v in self.values if v.startswith(incomplete)]


def choice_option(*names: str, where: str, help: str, **kwargs: Any) -> Any:
    """``typer.Option(*names, help=...)`` whose value must be one of ``where``'s names (see :class:`Choice`)."""
    allowed = Choice(where)
    return typer.Option(*names, help=help, callback=allowed.check, autocompletion=allowed.complete, **kwargs)


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


def command(*args: Any, on: typer.Typer | None = None, flags: dict[str, str] | None = None, **kwargs: Any) -> Callable:
    """``app.command`` (or ``on.command`` for a sub-app such as ``tag``) that turns a
    :class:`FerdataError` into one line on stderr and exit 1, and that takes ``-q/--quiet`` and
    ``-v/--verbose`` after the command name too (``ferdata stats -q`` as well as ``ferdata -q stats``).

    Library messages name the library's arguments; ``flags`` maps each such spelling (a regular
    expression) to the command's option (``{r"\bprune=True": "--prune"}``), so that the user
    reads the flag to pass.
    """

    def decorate(fn: Callable) -> Callable:
        name = args[0] if args else fn.__name__
        label = f"{on.info.name} {name}" if on is not None else name  # "tag add"

        @functools.wraps(fn)
        def run(*a: Any, quiet: bool = False, verbose: int = 0, **k: Any) -> Any:
            if quiet or verbose:
                set_verbosity(quiet or verbosity() < 0, max(verbose, verbosity()))
            start = time.perf_counter()
            try:
                result = fn(*a, **k)
            except FerdataError as exc:
                log.debug("the error's traceback", exc_info=True)
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
                    f"{where} ({os.strerror(full.errno or 0)}): free some disk space or make the folder writable, "
                    "then run the same command again",
                    flags,
                )
            except KeyboardInterrupt:
                _errors.print("interrupted: nothing half-written was kept; run the same command again to resume")
                raise typer.Exit(130) from None
            log.info("%s finished in %s", label, elapsed(start))
            return result

        # the signature typer reads: the command's own options, then -q and -v
        signature = inspect.signature(fn, eval_str=True)
        extra = [
            inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=QuietOpt),
            inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=0, annotation=VerboseOpt),
        ]
        run.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *extra])  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in run.__signature__.parameters.values()}  # type: ignore[attr-defined]
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
    _errors.print(f"[bold red]error:[/] {escape(one_line(message))}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int | None], None]]:
    """A ``progress(task, done, total)`` callback: a live bar on a terminal, silent when piped."""
    if not err.is_terminal or err.quiet:
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

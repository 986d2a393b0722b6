"""`ferdata review`: a local web page to look at flagged images and collect an annotator's votes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DatasetOpt, WorkspaceOpt, command, err, out


def _default_annotator() -> str:
    import getpass
    import re

    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        return "annotator"
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("._-")[:64]
    return name or "annotator"


@command("review")
def review_command(
    annotator: Annotated[
        str | None,
        typer.Option(
            "--annotator",
            "-a",
            help="Your name: votes go to WS/votes/NAME.csv (default: your login name).",
            show_default=False,
        ),
    ] = None,
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: a free one).")] = 0,
    scores: Annotated[
        Path | None,
        typer.Option(
            "--scores",
            help="A table with image_id and scores to sort by, e.g. RUN_DIR/label_issues.csv (read once at start; default: tables/DATASET/label_issues.csv if present).",
            show_default=False,
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
) -> None:
    """Open a local review page: filter and sort images, look at each one, vote with the keyboard.

    Serves on 127.0.0.1 only and prints the address with a random token (needed on every request).
    Votes go to WS/votes/ANNOTATOR.csv in the long form `ferdata relabel --votes WS/votes/` reads;
    toggling the mask tag changes the manifest (origin review) under the workspace lock.
    Stop it with Ctrl-C. Needs the review extra: pip install 'ferdata[review]'.

    Example: ferdata review -w ws --annotator alice --port 8765
    """
    from ..review.server import require_server, serve_review
    from ..review.votebook import check_annotator
    from ..workspace import Workspace

    require_server()
    name = check_annotator(annotator or _default_annotator())
    ws = Workspace.resolve(workspace)

    def ready(url: str, session) -> None:
        out.print(
            f"[bold]{session.dataset}[/]: reviewing as {session.annotator}; votes go to {ws.relative(session.votes.path)}",
            highlight=False,
        )
        out.print(f"open {url}", highlight=False, soft_wrap=True)
        err.print("Ctrl-C stops the server", highlight=False)

    serve_review(ws, dataset=dataset, annotator=name, port=port, scores=scores, on_ready=ready)
    out.print(
        f"stopped; apply the votes with: ferdata relabel -w {ws.root} --votes {ws.root / 'votes'}",
        highlight=False,
        soft_wrap=True,
    )

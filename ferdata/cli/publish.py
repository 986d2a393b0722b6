"""`ferdata publish`: a Hugging Face–style dataset folder (and optionally a Hub upload)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DatasetOpt, JsonOpt, WorkspaceOpt, choice_option, command, out, print_json

# the library's arguments, as its messages name them -> this command's options
PUBLISH_FLAGS = {
    r"^out_dir\b": "--out",
    r"\bimages='([^']*)'": r"--images \1",
    r"\binclude_removed=True": "--include-removed",
    r"\bshards=(-?\d+)": r"--shards \1",
    r"\bworkers=(-?\d+)": r"--workers \1",
    r"\bpush=REPO_ID": "--push REPO_ID",
    r"\bpublic=True": "--public",
}


@command("publish", flags=PUBLISH_FLAGS)
def publish_command(
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Folder to write: new, empty, or one an earlier publish wrote.", show_default=False
        ),
    ],
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    images: Annotated[
        str,
        choice_option(
            "--images",
            where="ferdata.publish.plan:IMAGE_MODES",
            help="aligned (the aligned crops) or original (the extracted files, unchanged).",
        ),
    ] = "aligned",
    include_removed: Annotated[
        bool,
        typer.Option(
            "--include-removed",
            help="Keep images removed by relabelling, with label empty and label_status removed (for audits).",
        ),
    ] = False,
    config: Annotated[
        list[str] | None,
        choice_option(
            "--config",
            where="ferdata.publish.layout:CONFIGS",
            show_default=False,
            help="Only this config (mix, nm, m, pe); repeat for several. Default: all that have rows.",
        ),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option(
            "--shards", help="Shards per config and split (default: one per 500 MB of images).", show_default=False
        ),
    ] = None,
    push: Annotated[
        str | None,
        typer.Option(
            "--push",
            help="Also upload to this Hub dataset repo (user/name), private unless --public.",
            show_default=False,
        ),
    ] = None,
    public: Annotated[
        bool,
        typer.Option(
            "--public",
            help="Make the Hub repo public: only if the dataset's terms (printed in the card) allow sharing.",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Threads reading images (default: 2 per core, at most 8).", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a Hugging Face dataset folder: README.md (dataset card) and Parquet shards.

    Configs mix (all kept images), nm (non-masked), m (masked) and pe (one row per MSD-PE pair)
    go to data/CONFIG/SPLIT-0000i-of-0000N.parquet, with the image embedded and the label as a
    ClassLabel; folds are a column. The card gives counts, curation steps, the dataset's terms
    and citation, and the Hub gating fields for gated datasets. Load it with
    datasets.load_dataset("DIR", "mix"). Removed images are left out unless --include-removed.

    Example: ferdata publish -w ws --dataset msd-e --out msd-e-hf --push my-lab/msd-e
    """
    from rich.table import Table

    from ..publish import publish
    from ..workspace import Workspace
    from .common import progress_bar

    ws = Workspace.resolve(workspace)
    with progress_bar() as progress:
        result = publish(
            ws,
            out_dir,
            dataset=dataset,
            images=images,
            include_removed=include_removed,
            push=push,
            public=public,
            shards=shards,
            configs=config,
            workers=workers,
            progress=progress,
        )
    if as_json:
        print_json(result)
        return

    table = Table(title=f"publish {result.dataset} ({result.images} images)")
    table.add_column("config")
    table.add_column("split")
    table.add_column("rows", justify="right")
    for name, splits in result.counts.items():
        for split, n in splits.items():
            table.add_row(name, split, f"{n:,}")
    out.print(table)
    for reason, n in result.left_out.items():
        out.print(f"left out: {reason}: {n:,}", highlight=False, soft_wrap=True)
    if result.folds:
        mean = sum(result.folds.values()) / len(result.folds)
        worst = max(abs(n / mean - 1) for n in result.folds.values())
        listed = ", ".join(f"{f}: {n:,}" for f, n in result.folds.items())
        out.print(
            f"mix images per fold: {listed} (largest deviation from the mean {worst:.1%})",
            highlight=False,
            soft_wrap=True,
        )
    out.print(
        f"{len(result.files)} files, {result.bytes_written / 2**20:,.1f} MiB in {result.out_dir} ({result.seconds:.1f} s)"
    )
    if result.gated:
        out.print(
            f"{result.dataset} is gated: keep this folder inside your lab (terms in {result.out_dir / 'README.md'})"
        )
    if result.pushed_to:
        out.print(f"pushed to {result.pushed_to}")

"""`ferdata folds` and `ferdata check-leakage`: identity-independent folds and the leakage check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DatasetOpt, WorkspaceOpt, command, out, progress_bar, warn

HammingOpt = Annotated[
    int, typer.Option("--hamming", help="Near duplicates: largest pHash distance in bits (0-32).", min=0, max=32)
]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Exit 1 when any leak is found (after writing the report).")]
IdentityOpt = Annotated[
    Path | None,
    typer.Option(
        "--identity-model",
        help="Face-recognition ONNX model (e.g. insightface's w600k_r50.onnx): also report the same person "
        "in two folds or splits.",
        exists=True,
        dir_okay=False,
    ),
]
IdentityThresholdOpt = Annotated[
    float, typer.Option("--identity-threshold", help="Cosine similarity from which two faces count as one person.")
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", help="Processes for the perceptual hashes (default: all cores).", min=1)
]


def _cell(value) -> str:
    import pandas as pd

    return "" if pd.isna(value) else str(value)


def _print_leaks(report) -> None:
    from rich import box
    from rich.table import Table

    if not report.found:
        out.print(f"leakage: none found in {report.rows_checked} labelled rows (hamming <= {report.hamming}); "
                  f"report: {report.report_path}")
    else:
        table = Table(title=f"{len(report.leaks)} leaks (report: {report.report_path})", box=box.SIMPLE_HEAD)
        for name in ("kind", "across", "image a", "image b", "folds", "splits", "distance"):
            table.add_column(name)
        for leak in report.leaks.head(10).itertuples(index=False):
            distance = f"{leak.distance:.3f}" if leak.kind == "identity" else f"{leak.distance:.0f} bits"
            table.add_row(
                leak.kind, leak.across, leak.image_id_a, leak.image_id_b,
                f"{_cell(leak.fold_a)}/{_cell(leak.fold_b)}", f"{_cell(leak.split_a)}/{_cell(leak.split_b)}", distance,
            )
        if len(report.leaks) > 10:
            table.caption = f"first 10 of {len(report.leaks)}"
        out.print(table)
    if report.not_hashed:
        warn(f"{report.not_hashed} images could not be read for perceptual hashing and were only checked by SHA-256")


_SHORT = {"deviation": "dev", "subjects": "subj", "surprise": "sur", "fear": "fea", "disgust": "dis",
          "happy": "hap", "angry": "ang", "neutral": "neu", "contempt": "con", "masked": "mask"}


def _print_balance(result) -> None:
    from rich import box
    from rich.table import Table

    balance = result.balance
    table = Table(title=f"{result.dataset}: {result.k} folds (seed {result.seed})", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in balance.columns:
        header = _SHORT.get(name, name)
        table.add_column(header, justify="right", min_width=len(header))
    for row in balance.itertuples(index=False):
        table.add_row(*[f"{v:+.1%}" if name == "deviation" else str(v) for name, v in zip(balance.columns, row, strict=True)])
    out.print(table)
    worst = int(balance["deviation"].abs().idxmax())
    groups = result.provenance["groups_from"]
    used = ", ".join(f"{n} rows by {name}" for name, n in groups.items() if n)
    out.print(
        f"largest deviation from the mean fold size: {result.max_deviation:.1%} (fold {balance['fold'][worst]}); "
        f"{result.provenance['groups']} groups ({used}); balance: {result.balance_path}"
    )


@command("folds")
def folds(
    k: Annotated[int, typer.Option("--k", help="Number of folds.")],
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed always gives the same folds.")] = 0,
    within_split: Annotated[
        str | None,
        typer.Option("--within-split", help="Fold only this source split (e.g. train); other rows get no fold."),
    ] = None,
    hamming: HammingOpt = 6,
    strict: StrictOpt = False,
    identity_model: IdentityOpt = None,
    identity_threshold: IdentityThresholdOpt = 0.5,
    workers: WorkersOpt = None,
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
) -> None:
    """Identity-independent, label-stratified folds, with a balance table and a leakage check.

    No subject, clip, masked/non-masked pair or duplicate cluster is ever split between two folds.
    Writes the `fold` column, tables/DATASET/folds_balance.csv and tables/DATASET/leakage.csv.

    Example: ferdata folds --k 10 --seed 0 -w ws
    """
    from ..errors import LeakageFound
    from ..folds import make_folds
    from ..workspace import Workspace

    ws = Workspace.resolve(workspace)
    with ws.lock("folds"), progress_bar() as progress:
        try:
            result = make_folds(
                ws, k, dataset=dataset, seed=seed, within_split=within_split, hamming=hamming,
                identity_model=identity_model, identity_threshold=identity_threshold, strict=strict,
                workers=workers, progress=progress,
            )
        except LeakageFound as exc:
            _print_leaks(exc.report)
            raise
    _print_balance(result)
    _print_leaks(result.leakage)


@command("check-leakage")
def check_leakage(
    hamming: HammingOpt = 6,
    strict: StrictOpt = False,
    identity_model: IdentityOpt = None,
    identity_threshold: IdentityThresholdOpt = 0.5,
    workers: WorkersOpt = None,
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
) -> None:
    """Find exact duplicates, near duplicates (pHash) and optionally the same person across folds and splits.

    Reads the manifest without changing it; writes tables/DATASET/leakage.csv (every leak: both
    image ids, their folds and splits, the distance) and caches hashes in tables/DATASET/phash.parquet.

    Example: ferdata check-leakage --strict --hamming 4 -w ws
    """
    from ..errors import LeakageFound
    from ..leakage import check_leakage as run_check
    from ..workspace import Workspace

    ws = Workspace.resolve(workspace)
    with ws.lock("check-leakage"), progress_bar() as progress:
        try:
            report = run_check(
                ws, dataset=dataset, hamming=hamming, identity_model=identity_model,
                identity_threshold=identity_threshold, strict=strict, workers=workers, progress=progress,
            )
        except LeakageFound as exc:
            _print_leaks(exc.report)
            raise
    _print_leaks(report)

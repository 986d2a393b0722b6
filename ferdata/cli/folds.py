"""`ferdata folds` and `ferdata check-leakage`: identity-independent folds and the leakage check."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from .common import DatasetOpt, JsonOpt, WorkspaceOpt, choice_option, command, out, print_json, progress_bar, warn

HammingOpt = Annotated[
    int,
    typer.Option(
        "--hamming", help="Candidates: largest pHash distance in bits (0-32), either orientation.", min=0, max=32
    ),
]
NeighboursOpt = Annotated[
    int, typer.Option("--neighbours", help="Candidates: nearest images per image by a low-frequency descriptor.", min=0)
]
SimilarityOpt = Annotated[
    float,
    typer.Option(
        "--similarity",
        help="Verification: gradient similarity from which a candidate is the same picture.",
        min=0.5,
        max=1.0,
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Exit 1 when a verified leak is found (after writing the report); undecidable pairs never count.",
    ),
]
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
    int | None, typer.Option("--workers", help="Processes for signatures and verification (default: all cores).", min=1)
]


def _cell(value) -> str:
    import pandas as pd

    return "-" if pd.isna(value) else str(value)


_SHOWN = 10


def _pair_rows(table, *, reason: bool) -> list[list[str]]:
    rows = []
    for pair in table.head(_SHOWN).itertuples(index=False):
        row = [
            pair.kind,
            pair.across,
            pair.image_id_a,
            pair.image_id_b,
            f"{_cell(pair.fold_a)}/{_cell(pair.fold_b)}",
            f"{_cell(pair.split_a)}/{_cell(pair.split_b)}",
            f"{pair.similarity:.3f}",
            pair.signature,
        ]
        rows.append([*row, pair.reason] if reason else row)
    return rows


def _print_pairs(title: str, table, *, reason: bool = False) -> None:
    """Both image ids in full: a table on a terminal (ids wrap, never cut), tab-separated lines when piped."""
    from rich import box
    from rich.table import Table

    header = ["kind", "across", "image a", "image b", "folds", "splits", "similarity", "signature"]
    header += ["reason"] if reason else []
    rows = _pair_rows(table, reason=reason)
    more = f" (first {_SHOWN} of {len(table)})" if len(table) > _SHOWN else ""
    if not out.is_terminal:
        out.print(f"{title}{more}", highlight=False, soft_wrap=True)
        for row in [header, *rows]:
            typer.echo("\t".join(row))  # plain tab-separated lines: nothing wrapped, cut or expanded
        return
    grid = Table(title=f"{title}{more}", box=box.SIMPLE_HEAD)
    for name in header:
        grid.add_column(name, overflow="fold", no_wrap=name not in ("image a", "image b"))
    for row in rows:
        grid.add_row(*row)
    out.print(grid)


@contextlib.contextmanager
def _leak_report_on_failure(as_json: bool) -> Iterator[None]:
    """With ``strict``, a leak raises :class:`LeakageFound`: show its report (JSON or tables) first;
    the error line on stderr and exit 1 follow from the command's handler."""
    from ..errors import LeakageFound

    try:
        yield
    except LeakageFound as exc:
        if as_json:
            print_json(exc.report)
        else:
            _print_leaks(exc.report)
        raise


def _print_leaks(report) -> None:
    if not report.found:
        out.print(
            f"leakage: no verified leak in {report.rows_checked} labelled rows ({report.candidates} candidate pairs "
            f"checked on pixels); report: {report.report_path}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        _print_pairs(f"{len(report.leaks)} verified leaks (report: {report.report_path})", report.leaks)
    if len(report.undecidable):
        reasons = ", ".join(f"{n} {r}" for r, n in report.undecidable_counts().items())
        _print_pairs(
            f"{len(report.undecidable)} undecidable pairs, not leaks: too little detail to tell ({reasons}; "
            f"report: {report.undecidable_path})",
            report.undecidable,
            reason=True,
        )
    if report.not_hashed:
        warn(f"{report.not_hashed} images could not be read for signatures and were only checked by SHA-256")


_SHORT = {
    "without_crop": "no crop",
    "deviation": "dev",
    "subjects": "subj",
    "surprise": "sur",
    "fear": "fea",
    "disgust": "dis",
    "happy": "hap",
    "angry": "ang",
    "neutral": "neu",
    "contempt": "con",
    "masked": "mask",
}


def _print_balance(result) -> None:
    from rich import box
    from rich.table import Table

    balance = result.balance
    table = Table(title=f"{result.dataset}: {result.k} folds (seed {result.seed})", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in balance.columns:
        header = _SHORT.get(name, name)
        table.add_column(header, justify="right", min_width=len(header))
    for row in balance.itertuples(index=False):
        table.add_row(
            *[f"{v:+.1%}" if name == "deviation" else str(v) for name, v in zip(balance.columns, row, strict=True)]
        )
    out.print(table)
    worst = int(balance["deviation"].abs().idxmax())
    groups = result.provenance["groups_from"]
    used = ", ".join(f"{n} rows by {name}" for name, n in groups.items() if n)
    prov = result.provenance
    out.print(
        f"balanced on {prov['balanced_on']}; largest deviation from the mean fold size: {result.max_deviation:.1%} "
        f"(fold {balance['fold'][worst]}); {prov['groups']} groups ({used}); balance: {result.balance_path}",
        highlight=False,
        soft_wrap=True,
    )
    if prov.get("rows_without_crop"):
        out.print(
            f"{prov['rows_without_crop']} rows without a face crop have a fold but are not counted above; "
            f"{prov['groups_placed_by_name']} groups without any crop were placed by their name (stable when align adds crops)",
            highlight=False,
            soft_wrap=True,
        )


@command("folds", flags={r"\bk=": "--k ", r"\bk must": "--k must"})
def folds(
    k: Annotated[int, typer.Option("--k", help="Number of folds.")],
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed always gives the same folds.")] = 0,
    within_split: Annotated[
        str | None,
        choice_option(
            "--within-split",
            where="ferdata.schema:SPLITS",
            help="Fold only this source split (e.g. train); other rows get no fold.",
        ),
    ] = None,
    hamming: HammingOpt = 6,
    neighbours: NeighboursOpt = 5,
    similarity: SimilarityOpt = 0.96,
    strict: StrictOpt = False,
    identity_model: IdentityOpt = None,
    identity_threshold: IdentityThresholdOpt = 0.5,
    workers: WorkersOpt = None,
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Identity-independent, label-stratified folds, with a balance table and a leakage check.

    No subject, clip, masked/non-masked pair or verified duplicate is ever split between two folds.
    Folds are balanced on the usable rows (label and face crop); rows without a crop get a fold
    too, fixed by their group's name. Writes the `fold` column, tables/DATASET/folds_balance.csv
    and the leakage reports.

    Example: ferdata folds --k 10 --seed 0 -w ws
    """
    from ..folds import make_folds
    from ..workspace import Workspace

    ws = Workspace.resolve(workspace)
    with progress_bar() as progress, _leak_report_on_failure(as_json):
        result = make_folds(
            ws,
            k,
            dataset=dataset,
            seed=seed,
            within_split=within_split,
            hamming=hamming,
            neighbours=neighbours,
            similarity=similarity,
            identity_model=identity_model,
            identity_threshold=identity_threshold,
            strict=strict,
            workers=workers,
            progress=progress,
        )
    if as_json:
        print_json(result)
        return
    _print_balance(result)
    _print_leaks(result.leakage)


@command("check-leakage")
def check_leakage(
    hamming: HammingOpt = 6,
    neighbours: NeighboursOpt = 5,
    similarity: SimilarityOpt = 0.96,
    strict: StrictOpt = False,
    identity_model: IdentityOpt = None,
    identity_threshold: IdentityThresholdOpt = 0.5,
    workers: WorkersOpt = None,
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find the same picture (exact or altered) and optionally the same person across folds and splits.

    Cheap signatures propose candidates; each is verified on the pixels before it is reported.
    Pairs with too little detail to decide (heavily blurred, flat or tiny images) are reported
    apart as undecidable and never fail --strict. Reads the manifest without changing it; writes
    tables/DATASET/leakage.csv (verified leaks: kind, both image ids, folds, splits, similarity,
    signature), tables/DATASET/leakage_undecidable.csv (with the reason) and caches signatures in
    tables/DATASET/signatures.parquet.

    Example: ferdata check-leakage --strict -w ws
    """
    from ..leakage import check_leakage as run_check
    from ..workspace import Workspace

    ws = Workspace.resolve(workspace)
    with progress_bar() as progress, _leak_report_on_failure(as_json):
        report = run_check(
            ws,
            dataset=dataset,
            hamming=hamming,
            neighbours=neighbours,
            similarity=similarity,
            identity_model=identity_model,
            identity_threshold=identity_threshold,
            strict=strict,
            workers=workers,
            progress=progress,
        )
    if as_json:
        print_json(report)
        return
    _print_leaks(report)

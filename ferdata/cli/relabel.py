"""`ferdata relabel`: apply annotator votes to a manifest (MSD-E rule or FER+ majority)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from .common import DatasetOpt, JsonOpt, WorkspaceOpt, command, out, print_json, warn


class Scheme(StrEnum):
    msd_e = "msd-e"
    ferplus_majority = "ferplus-majority"


class OtherRule(StrEnum):
    total = "total"
    per_class = "per-class"


_SHOWN_CHANGES = 20


# relabel's arguments in library messages -> its flags
RELABEL_FLAGS = {
    r"\bmin_agree=": "--min-agree ",
    r"\bmax_other=": "--max-other ",
    r"\bannotators=(?= |$)": "--annotators",
    r"\bannotators=": "--annotators ",
    r"\bskip_unmatched=True": "--skip-unmatched",
    r"check the path": "check the --votes path",
}


@command("relabel", flags=RELABEL_FLAGS)
def relabel_command(
    votes: Annotated[
        Path, typer.Option("--votes", help="Votes file: long, wide or the FER+ count matrix; CSV or Parquet.")
    ],
    scheme: Annotated[Scheme, typer.Option(help="Voting scheme.")] = Scheme.msd_e,
    min_agree: Annotated[
        float, typer.Option(help="msd-e: the winner needs at least this share of the N annotators.")
    ] = 0.5,
    max_other: Annotated[float, typer.Option(help="msd-e: other classes may hold at most this share of N.")] = 0.25,
    other_rule: Annotated[
        OtherRule,
        typer.Option(
            help="msd-e: 'another class' = all other classes together (total) or the largest one (per-class)."
        ),
    ] = OtherRule.total,
    annotators: Annotated[
        int | None,
        typer.Option(help="msd-e: N for every image (default: the annotators who voted on it).", show_default=False),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change; write nothing.")] = False,
    skip_unmatched: Annotated[
        bool, typer.Option("--skip-unmatched", help="Ignore votes for images that are not in the manifest.")
    ] = False,
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Relabel images from annotator votes, starting again from label_original.

    `msd-e` (default) is the MSD-E paper's rule (section 2.2): images nobody flags keep their
    label; a flagged image gets the most-endorsed class if at least --min-agree of the N
    annotators endorse it and at most --max-other endorse another class, else it is removed.
    `ferplus-majority` is FER+'s majority mode. Writes the manifest and
    tables/DATASET/relabel_audit.parquet (+ .csv) and relabel_summary.csv.

    Example: ferdata relabel -w ws --votes votes.csv --other-rule per-class --dry-run
    """
    from rich.table import Table

    from ..relabel import relabel
    from ..workspace import Workspace

    if scheme is Scheme.ferplus_majority and (annotators is not None or min_agree != 0.5 or max_other != 0.25):
        warn("--min-agree, --max-other and --annotators apply to --scheme msd-e only; they are ignored")
    ws = Workspace.resolve(workspace)
    result = relabel(
        ws,
        votes,
        dataset=dataset,
        scheme=scheme.value,
        min_agree=min_agree,
        max_other=max_other,
        other_rule=other_rule.value,
        annotators=annotators,
        dry_run=dry_run,
        skip_unmatched=skip_unmatched,
    )

    if result.skipped:
        warn(
            f"{len(result.skipped)} voted images are not in the manifest and were skipped (first: {result.skipped[0]})"
        )
    if as_json:
        print_json(result)
        return
    rule = ", ".join(f"{k}={v}" for k, v in result.parameters.items())
    matched = ", ".join(f"{n} by {how}" for how, n in result.matched_by.items()) or "none"
    out.print(f"[bold]{result.dataset}[/]: {result.n_votes:,} votes, images matched {matched}; {rule}")
    table = Table(title="dry run: nothing written" if dry_run else "relabel inventory")
    table.add_column("")
    for group in result.summary.index:
        table.add_column(str(group), justify="right")
    for name in ("images", "no_votes", "unflagged", "flagged", "kept_after_flag", "relabelled", "removed", "final"):
        table.add_row(name.replace("_", " "), *(f"{n:,}" for n in result.summary[name]))
    out.print(table)
    if dry_run:
        out.print(f"{len(result.changes):,} images would change")
        for change in result.changes.head(_SHOWN_CHANGES).itertuples():
            before = change.label_before or "—"
            after = change.label_after or "—"
            out.print(f"  {change.image_id}: {before} ({change.status_before}) → {after} ({change.status_after})")
        if len(result.changes) > _SHOWN_CHANGES:
            out.print(f"  … and {len(result.changes) - _SHOWN_CHANGES:,} more")
    else:
        out.print(f"{len(result.changes):,} images changed; audit: {ws.relative(result.written[0])}")

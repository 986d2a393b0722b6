"""`ferdata pairs`: link non-masked images to their masked twins and mark MSD-PE."""

from __future__ import annotations

from .common import DatasetOpt, JsonOpt, WorkspaceOpt, command, out, print_json

_SHOWN_UNPAIRED = 10


@command("pairs")
def pairs_command(workspace: WorkspaceOpt = None, dataset: DatasetOpt = None, as_json: JsonOpt = False) -> None:
    """Pair each non-masked image with its masked twin and mark the MSD-PE subset.

    Twins share pair_key (MSD-E: the same file name in MSD-E/ and MSD-ME/), else subject_id and
    label_original (and a take column when present). Both rows of a pair get the same pair_id;
    in_pe is true where both final labels agree. Writes the manifest and
    tables/DATASET/pairs.parquet (+ .csv) and unpaired.csv. A later ferdata relabel refreshes
    in_pe from the new labels.

    Example: ferdata pairs -w ws --dataset msd-e
    """
    from rich.table import Table

    from ..pairs import make_pairs
    from ..workspace import Workspace

    ws = Workspace.resolve(workspace)
    result = make_pairs(ws, dataset=dataset)
    if as_json:
        print_json(result)
        return

    table = Table(title=f"{result.dataset}: pairs")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("images", f"{result.n_images:,}")
    table.add_row("pairs", f"{result.n_pairs:,}")
    table.add_row("in MSD-PE", f"{result.n_in_pe:,}")
    for reason, n in result.removed_by_reason.items():
        table.add_row(f"pairs out of MSD-PE: {reason}", f"{n:,}")
    for reason, n in result.unpaired_by_reason.items():
        table.add_row(f"unpaired images: {reason}", f"{n:,}")
    out.print(table)
    if result.pe_per_label:
        out.print("MSD-PE pairs per label: " + ", ".join(f"{k} {v}" for k, v in result.pe_per_label.items()))
    for row in result.unpaired.head(_SHOWN_UNPAIRED).itertuples():
        out.print(f"  unpaired {row.image_id}: {row.reason}")
    if len(result.unpaired) > _SHOWN_UNPAIRED:
        out.print(f"  … and {len(result.unpaired) - _SHOWN_UNPAIRED:,} more (see {ws.relative(result.written[2])})")

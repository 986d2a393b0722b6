"""``ferdata stats``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .align import LabelIdsOpt, PerRowOpt
from .common import DatasetOpt, JsonOpt, WorkspaceOpt, command, err, out, print_json


def print_tables(data: dict) -> None:
    from rich.table import Table

    for name, frame in data["tables"].items():
        table = Table(title=f"{data['dataset']}: {name}", title_justify="left")
        table.add_column("label")
        for col in frame.columns:
            table.add_column(str(col), justify="right")
        for label, row in frame.iterrows():
            style = "bold" if label == "total" else None
            table.add_row(str(label), *(f"{int(v):,}" for v in row), style=style)
        out.print(table)
    facts = [f"{data['images']:,} images", f"{data['kept']:,} kept"]
    if data["counted"] == "usable":
        facts.append(f"{data['usable']:,} usable (label and face crop: the tables count these, as publish does)")
    else:
        facts.append("no face crop yet: the tables count every labelled image")
    if data["subjects"]:
        facts.append(f"{data['subjects']:,} subjects")
    if data["clips"]:
        facts.append(f"{data['clips']:,} clips")
    if data["pairs"]:
        facts.append(f"{data['pairs']:,} pairs ({data['pe_pairs']:,} in MSD-PE)")
    out.print(", ".join(facts))
    if data["fold_deviation"] is not None:
        out.print(f"folds: largest deviation from the mean fold size {data['fold_deviation']:.1%}")
    for reason, n in data["left_out"].items():
        out.print(f"left out: {reason}: {n:,}", highlight=False, soft_wrap=True)
    out.print("labels: " + ", ".join(f"{k} {v:,}" for k, v in data["label_status"].items()))
    out.print("faces: " + ", ".join(f"{k} {v:,}" for k, v in data["face_status"].items()))


@command("stats", flags={r"\bper_row=": "--per-row "})
def stats_command(
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    as_json: JsonOpt = False,
    contact_sheet: Annotated[
        Path | None,
        typer.Option(
            "--contact-sheet",
            help="Also write a grid of aligned faces by label and masked (failures shown as "
            "such): PNG, or PDF/SVG when the file name ends in .pdf/.svg.",
            show_default=False,
        ),
    ] = None,
    per_row: PerRowOpt = 10,
    label_ids: LabelIdsOpt = False,
) -> None:
    """Count images by label × masked × split (× fold once folds exist), like the paper's tables.

    The tables count the usable images (a label and a face crop), which is what publish and
    train-baseline use; removed images and images without a crop are counted apart, one line per
    reason. Before any face is aligned they count every labelled image.

    Example: ferdata stats -w ws --dataset msd-e --contact-sheet faces.pdf --label-ids
    """
    from ..stats import summary, to_json
    from ..workspace import Workspace

    ws = Workspace.resolve(workspace)
    manifest = ws.load(dataset)
    data = summary(manifest)
    if contact_sheet is not None:
        from ..vision.contact import write_contact_sheet

        write_contact_sheet(ws, manifest, contact_sheet, per_row=per_row, label_ids=label_ids)
    if as_json:
        print_json(to_json(data))
    else:
        print_tables(data)
    if contact_sheet is not None:
        (err if as_json else out).print(f"contact sheet: {contact_sheet}")

"""`ferdata align`: (re-)run face detection and alignment on a workspace's manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DatasetOpt, WorkspaceOpt, command, out

# Shared with `ferdata ingest`, which exposes the same options under the same names.
DetectorOpt = Annotated[
    str, typer.Option("--detector", help="retinaface (bundled, offline) or scrfd (insightface det_10g/det_500m from --model-dir).")
]
ModelDirOpt = Annotated[
    Path | None,
    typer.Option("--model-dir", help="Folder holding the detector's ONNX file (det_10g.onnx, det_500m.onnx or retinaface.onnx).", show_default=False),
]
SizeOpt = Annotated[int, typer.Option("--size", help="Side of the aligned square crop in pixels (112 standard, 224 for ImageNet-size models).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when onnxruntime-gpu offers it, else CPU), cpu or cuda.")]
FaceOpt = Annotated[str, typer.Option("--face", help="Which face when there are several: largest or center (closest to the image centre).")]
RegisteredOpt = Annotated[
    bool | None,
    typer.Option(
        "--registered/--not-registered",
        help="The images are registered face crops (FER2013 style): a row whose detection fails gets a crop "
        "warped with the dataset's mean landmark shape. Default: as manifests/DATASET.toml says.",
        show_default=False,
    ),
]

# The detector's arguments in library messages -> the flags of `ferdata align` and `ferdata ingest`.
DETECTOR_FLAGS = {
    r"\bmodel_dir=(?=\s)": "--model-dir",
    r"\bmodel_dir=": "--model-dir ",
    r"\bdetector=": "--detector ",
    r"\bdevice=": "--device ",
}


@command("align", flags=DETECTOR_FLAGS)
def align(
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    detector: DetectorOpt = "retinaface",
    model_dir: ModelDirOpt = None,
    size: SizeOpt = 112,
    device: DeviceOpt = "auto",
    face: FaceOpt = "largest",
    only_missing: Annotated[
        bool, typer.Option("--only-missing", help="Only rows not yet aligned (face_status not_run) or whose crop file is gone.")
    ] = False,
    registered: RegisteredOpt = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Detect every row again instead of resuming an interrupted run.")
    ] = False,
    contact_sheet: Annotated[
        Path | None, typer.Option("--contact-sheet", help="Also write a PNG grid of the crops by label and masked.", show_default=False)
    ] = None,
) -> None:
    """Detect the face in every image of a dataset and write aligned crops.

    Each row gets face_status (aligned, registered, no_face or unreadable), det_score, n_faces,
    bbox and landmarks in original pixels, and aligned_path: a PNG under aligned/DATASET/SIZEpx/.
    No row is dropped. A run that was killed or interrupted resumes where it stopped.

    Example: ferdata align -w ws --dataset msd-e --size 224 --device auto --contact-sheet sheet.png
    """
    from rich.table import Table

    from ..align import MIN_SHAPE_ROWS, align_manifest, discard_journal
    from ..workspace import Workspace
    from .common import progress_bar

    ws = Workspace.resolve(workspace)
    with ws.lock("align"):
        manifest = ws.load(dataset)
        with progress_bar() as progress:
            aligned, report = align_manifest(
                ws, manifest, detector=detector, model_dir=model_dir, size=size, device=device,
                face_choice=face, only_missing=only_missing, registered=registered, resume=not restart,
                progress=progress,
            )
        ws.save(aligned)
        discard_journal(ws, aligned.dataset)
        if contact_sheet is not None:
            from ..vision.contact import write_contact_sheet

            write_contact_sheet(ws, aligned, contact_sheet)

    table = Table(title=f"align {aligned.dataset}: {report.detector} on {report.provider}")
    table.add_column("face_status")
    table.add_column("rows", justify="right")
    for status, n in report.counts.items():
        table.add_row(status, str(n))
    table.add_row("[bold]processed[/]", f"[bold]{report.processed}[/]")
    out.print(table)
    if report.resumed:
        out.print(f"{report.resumed:,} rows resumed from an interrupted run (--restart detects them again)")
    if report.registered:
        where = f"{report.shape_rows:,} aligned rows" if report.shape_rows >= MIN_SHAPE_ROWS else "the default shape"
        out.print(f"registered source: rows without a usable detection warped with the mean landmark shape of {where}")
    out.print(f"{report.images_per_second:.1f} images/s; crops in {ws.relative(ws.aligned_dir(aligned.dataset))}/{size}px")
    if contact_sheet is not None:
        out.print(f"contact sheet: {contact_sheet}")

"""`ferdata align`: (re-)run face detection and alignment on a workspace's manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DatasetOpt, JsonOpt, WorkspaceOpt, choice_option, command, out, print_json

# Shared with `ferdata ingest`, which exposes the same options under the same names.
DetectorOpt = Annotated[
    str,
    choice_option(
        "--detector",
        where="ferdata.vision.detectors:DETECTORS",
        help="retinaface (bundled, offline) or scrfd (insightface det_10g/det_500m from --model-dir).",
    ),
]
ModelDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--model-dir",
        help="Folder holding the detector's ONNX file (det_10g.onnx, det_500m.onnx or retinaface.onnx).",
        show_default=False,
    ),
]
SizeOpt = Annotated[
    int,
    typer.Option(
        "--size", help="Side of the aligned square crop in pixels (112 standard, 224 for ImageNet-size models)."
    ),
]
DeviceOpt = Annotated[
    str,
    choice_option(
        "--device",
        where="ferdata.vision.detectors:DEVICES",
        help="auto (CUDA when onnxruntime-gpu offers it, else CPU), cpu or cuda.",
    ),
]
FaceOpt = Annotated[
    str,
    choice_option(
        "--face",
        where="ferdata.align:FACE_CHOICES",
        help="Which face when there are several: largest or center (closest to the image centre).",
    ),
]
RegisteredOpt = Annotated[
    bool | None,
    typer.Option(
        "--registered/--not-registered",
        help="The images are registered face crops (FER2013 style): a row whose detection fails gets a crop "
        "warped with the dataset's mean landmark shape. Default: as manifests/DATASET.toml says.",
        show_default=False,
    ),
]
EngineOpt = Annotated[
    str,
    choice_option(
        "--engine",
        where="ferdata.align:ENGINES",
        help="local (this machine) or ray (a Ray cluster: pip install 'ferdata[ray]', see docs/scale-out.md).",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="With --engine ray: the cluster, auto (started with `ray start` on this machine) or HOST:PORT. "
        "Default: a local Ray started for the run.",
        show_default=False,
    ),
]
RayActorsOpt = Annotated[
    int | None,
    typer.Option(
        "--ray-actors",
        help="With --engine ray: detector actors (default: one per GPU, else one per CPU; more than the GPUs share them).",
        show_default=False,
    ),
]

# The contact sheet's options, shared with `ferdata stats`.
PerRowOpt = Annotated[
    int, typer.Option("--per-row", help="Contact sheet: faces per row (one row per label and masked).")
]
LabelIdsOpt = Annotated[bool, typer.Option("--label-ids", help="Contact sheet: write each face's image_id under it.")]

# The detector's arguments in library messages -> the flags of `ferdata align` and `ferdata ingest`.
DETECTOR_FLAGS = {
    r"\bmodel_dir=(?=\s)": "--model-dir",
    r"\bmodel_dir=": "--model-dir ",
    r"\bdetector=": "--detector ",
    r"\bdevice=": "--device ",
    r"\bface_choice='([^']*)'": r"--face \1",
    r"\bsize=(\d+)": r"--size \1",
    r"\bper_row=": "--per-row ",
    r"\bengine='ray'": "--engine ray",
    r"\bray_address=(?=\s)": "--ray-address",
    r"\bray_address=": "--ray-address ",
    r"\bray_actors=": "--ray-actors ",
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
        bool,
        typer.Option(
            "--only-missing", help="Only rows not yet aligned (face_status not_run) or whose crop file is gone."
        ),
    ] = False,
    registered: RegisteredOpt = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Detect every row again instead of resuming an interrupted run.")
    ] = False,
    contact_sheet: Annotated[
        Path | None,
        typer.Option(
            "--contact-sheet",
            help="Also write a grid of the crops by label and masked: PNG, or PDF/SVG when the "
            "file name ends in .pdf/.svg.",
            show_default=False,
        ),
    ] = None,
    per_row: PerRowOpt = 10,
    label_ids: LabelIdsOpt = False,
    as_json: JsonOpt = False,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_actors: RayActorsOpt = None,
) -> None:
    """Detect the face in every image of a dataset and write aligned crops.

    Each row gets face_status (aligned, registered, no_face or unreadable), det_score, n_faces,
    bbox and landmarks in original pixels, and aligned_path: a PNG under aligned/DATASET/SIZEpx/.
    No row is dropped. A run that was killed or interrupted resumes where it stopped.

    Example: ferdata align -w ws --dataset msd-e --size 224 --device auto --contact-sheet sheet.png
    """
    from rich.table import Table

    from ..align import MIN_SHAPE_ROWS
    from ..align import align as run_align
    from ..workspace import Workspace
    from .common import progress_bar

    if contact_sheet is not None:
        from ..figures import format_of

        format_of(contact_sheet)  # a wrong suffix fails now, not after the alignment
    ws = Workspace.resolve(workspace)
    with progress_bar() as progress:
        report = run_align(
            ws,
            dataset=dataset,
            detector=detector,
            model_dir=model_dir,
            size=size,
            device=device,
            face_choice=face,
            only_missing=only_missing,
            registered=registered,
            restart=restart,
            engine=engine,
            ray_address=ray_address,
            ray_actors=ray_actors,
            progress=progress,
        )
    if contact_sheet is not None:
        from ..vision.contact import write_contact_sheet

        write_contact_sheet(ws, ws.load(report.dataset), contact_sheet, per_row=per_row, label_ids=label_ids)

    if as_json:
        print_json({**vars(report), "images_per_second": report.images_per_second, "contact_sheet": contact_sheet})
        return
    table = Table(title=f"align {report.dataset}: {report.detector} on {report.provider}")
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
    out.print(
        f"{report.images_per_second:.1f} images/s; crops in {ws.relative(ws.aligned_dir(report.dataset))}/{size}px"
    )
    if contact_sheet is not None:
        out.print(f"contact sheet: {contact_sheet}")

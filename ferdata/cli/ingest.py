"""``ferdata ingest``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .align import DETECTOR_FLAGS, DetectorOpt, DeviceOpt, FaceOpt, ModelDirOpt, RegisteredOpt, SizeOpt
from .common import WorkspaceOpt, command, err, out, progress_bar, warn


def parse_label_map(value: str | None) -> dict[str, str] | None:
    """``AN=angry,HA=happy`` or a file of ``folder,label`` lines."""
    from ..errors import UsageError
    from ..schema import LABELS

    if not value:
        return None
    path = Path(value)
    pairs = path.read_text().splitlines() if path.is_file() else value.split(",")
    mapping = {}
    for pair in filter(None, (p.strip() for p in pairs)):
        folder, sep, label = pair.replace(",", "=", 1).partition("=") if path.is_file() else pair.partition("=")
        if not sep or label.strip().lower() not in LABELS:
            raise UsageError(f"--label-map entry {pair!r} must be FOLDER=LABEL with LABEL one of {', '.join(LABELS)}")
        mapping[folder.strip()] = label.strip().lower()
    return mapping


# library arguments named in ingest's errors -> the options a user passes
INGEST_FLAGS = {
    r"\bprune=True": "--prune",
    r"\bskip_unparsed=True": "--skip-unparsed",
    r"\bsplit=NAME": "--split NAME",
    r"\bsplit='(\w+)'": r"--split \1",
    r"\bleave split out": "leave --split out",
}


def _check_split(value: str | None) -> str | None:
    from ..schema import SPLITS

    if value is not None and value not in SPLITS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(SPLITS)}")
    return value


@command("ingest", flags=INGEST_FLAGS | DETECTOR_FLAGS)
def ingest_command(
    path: Annotated[Path, typer.Argument(help="The archive (zip, 7z, tar, tar.gz/bz2/xz) or folder you received.")],
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help="msd-e, occlu-fer, fer2013, ferplus, ferv39k or imagefolder (detected when left out)."),
    ] = None,
    workspace: WorkspaceOpt = None,
    password_env: Annotated[str | None, typer.Option("--password-env", help="Name of the environment variable holding the archive password.")] = None,
    password_file: Annotated[Path | None, typer.Option("--password-file", help="File whose first line is the archive password.")] = None,
    align: Annotated[bool, typer.Option("--align/--no-align", help="Detect and align faces after extracting.")] = True,
    detector: DetectorOpt = "retinaface",
    model_dir: ModelDirOpt = None,
    size: SizeOpt = 112,
    device: DeviceOpt = "auto",
    face: FaceOpt = "largest",
    registered: RegisteredOpt = None,
    label_map: Annotated[str | None, typer.Option(help="imagefolder: FOLDER=LABEL pairs (AN=angry,HA=happy) or a file of folder,label lines.")] = None,
    skip_unparsed: Annotated[bool, typer.Option("--skip-unparsed", help="Ingest the rest when some files do not fit the layout (they are listed in tables/<dataset>/).")] = False,
    split: Annotated[
        str | None,
        typer.Option(
            "--split", callback=_check_split,
            help="train, val or test: the split of the rows of a FER2013-style CSV that has no Usage column.",
        ),
    ] = None,
    prune: Annotated[
        bool,
        typer.Option("--prune", help="Accept a re-ingest that drops rows holding work (relabelling, folds, pairs, tags, faces); they are kept in tables/<dataset>/pruned-<time>.parquet."),
    ] = False,
    max_ratio: Annotated[float, typer.Option(help="Largest compression ratio accepted for one member (zip-bomb guard).")] = 100.0,
    max_total_gb: Annotated[float, typer.Option(help="Most data read from the archive, in GiB (zip-bomb guard).")] = 512.0,
) -> None:
    """Read an archive or folder, extract the originals safely, write the Parquet manifest, align faces.

    The password is never taken as an option value: use --password-env, --password-file, or answer
    the hidden prompt. Running the same command again resumes an interrupted ingest and gives the
    same manifest.

    Example: MSDE_PW=... ferdata ingest msd-e.zip --dataset msd-e --password-env MSDE_PW -w ws
    """
    from ..archives import Limits, password_provider
    from ..ingest import ingest
    from ..workspace import Workspace

    ws = Workspace.resolve(workspace)
    limits = Limits(max_ratio=max_ratio, max_total_bytes=int(max_total_gb * 2**30))
    password = password_provider(env_var=password_env, file=password_file)
    align_options = {"detector": detector, "model_dir": model_dir, "size": size, "device": device, "face_choice": face, "registered": registered}
    with progress_bar() as progress:
        result = ingest(
            path, ws, dataset=dataset, password=password, limits=limits, label_map=parse_label_map(label_map),
            skip_unparsed=skip_unparsed, split=split, prune=prune, align=align, align_options=align_options,
            progress=progress,
        )
    from ..stats import summary
    from .stats import print_tables

    for notice in result.notices:
        err.print(notice, highlight=False)
    if result.unparsed:
        warn(f"{len(result.unparsed)} files or rows did not fit the layout and were skipped: see tables/{result.dataset}/unparsed-{result.dataset}.csv")
    if result.pruned_table:
        warn(f"{result.dropped:,} rows the source no longer has were dropped; they are kept in {result.pruned_table}")
    print_tables(summary(result.manifest))
    for message in result.warnings:
        warn(message)
    if result.align_report is not None:
        report = result.align_report
        if report.resumed:
            out.print(f"{report.resumed:,} rows resumed from an interrupted alignment")
        out.print(f"aligned by {report.detector} on {report.provider} at {report.images_per_second:.1f} images/s")
    out.print(
        f"{result.dataset}: {result.rows:,} images in {ws.manifest_path(result.dataset)} "
        f"({result.written:,} originals written, {result.kept:,} rows kept from the previous manifest) in {result.seconds:.1f}s"
    )

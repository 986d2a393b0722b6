"""``ferdata ingest``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .align import (
    DETECTOR_FLAGS,
    DetectorOpt,
    DeviceOpt,
    EngineOpt,
    FaceOpt,
    ModelDirOpt,
    RayActorsOpt,
    RayAddressOpt,
    RegisteredOpt,
    SizeOpt,
)
from .common import JsonOpt, WorkspaceOpt, choice_option, command, err, out, print_json, progress_bar, warn

if TYPE_CHECKING:
    from ..archives import Secret


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


# library arguments named in ingest's errors -> the options a user passes (applied in this order)
INGEST_FLAGS = {
    r"\blabel_map=\{'([^']*)': '([^']*)'\}": r"--label-map \1=\2",
    r"\bprune=True": "--prune",
    r"\bskip_unparsed=True": "--skip-unparsed",
    r"\bsplit=NAME": "--split NAME",
    r"\bsplit='(\w+)'": r"--split \1",
    r"\bleave split out": "leave --split out",
    # passwords: the library speaks of its password= argument
    r"\bwith password= \(a str, bytes or a function returning one\)": "with --password-env VAR or --password-file FILE",
    r"\bwith password=": "with --password-env or --password-file",
    # decompression-bomb limits: the two that have options
    r"\blimits=Limits\(max_ratio=\.\.\.\)": "--max-ratio",
    r"\blimits=Limits\(max_total_bytes=\.\.\.\)": "--max-total-gb",
    r"\barchive limit max_ratio\b": "--max-ratio",
    r"\barchive limit max_total_bytes must be positive, not -?\d+": "--max-total-gb must be above 0",
}


def password_source(
    env_var: str | None = None, file: Path | None = None, *, interactive: bool | None = None
) -> Callable[[], Secret | None]:
    """The ``password=`` that ``ferdata ingest`` passes: ``--password-env VAR``, ``--password-file
    FILE``, else a hidden prompt (getpass) when stdin is a terminal, else None (the library then
    says the archive is encrypted, and the flag mapping above names these options).

    Only the CLI talks to a terminal: the library calls this at most once, and only when it meets
    something encrypted. ``interactive=None`` means ``sys.stdin.isatty()``. An empty variable, a
    missing or empty file and an empty answer are a PasswordError naming the variable or file
    (never the value). File: its first line, the line ending stripped.
    """
    from ..errors import UsageError

    if env_var is not None and file is not None:
        raise UsageError("give either --password-env or --password-file, not both")
    remembered: list[Secret | None] = []

    def provide() -> Secret | None:
        if not remembered:
            remembered.append(_ask(env_var, file, interactive))
        return remembered[0]

    return provide


def _ask(env_var: str | None, file: Path | None, interactive: bool | None) -> Secret | None:
    import getpass
    import os
    import sys

    from ..archives import Secret
    from ..errors import PasswordError

    if env_var is not None:
        if not os.environ.get(env_var):
            raise PasswordError(
                f"environment variable {env_var} is not set or empty: export the archive's "
                f"password in it, or use --password-file FILE"
            )
        return Secret(os.environ[env_var])
    if file is not None:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PasswordError(
                f"password file {file} does not exist: check the path given to --password-file"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            raise PasswordError(f"password file {file} cannot be read ({reason}): check --password-file") from None
        first_line = text.partition("\n")[0].removesuffix("\r")
        if not first_line:
            raise PasswordError(f"password file {file} is empty: put the password on its first line")
        return Secret(first_line)
    if interactive is None:
        interactive = bool(sys.stdin is not None and sys.stdin.isatty())
    if not interactive:
        return None  # CI or a pipe: never wait for an answer that cannot come
    try:
        answer = getpass.getpass("Archive password (hidden): ")
    except (EOFError, KeyboardInterrupt):
        answer = ""
    if not answer:
        raise PasswordError(
            "no password entered: type it at the prompt, or use --password-env VAR / --password-file FILE"
        )
    return Secret(answer)


@command("ingest", flags=INGEST_FLAGS | DETECTOR_FLAGS)
def ingest_command(
    path: Annotated[Path, typer.Argument(help="The archive (zip, 7z, tar, tar.gz/bz2/xz) or folder you received.")],
    dataset: Annotated[
        str | None,
        choice_option(
            "--dataset",
            "-d",
            where="ferdata.sources:SOURCES",
            help="msd-e, occlu-fer, fer2013, ferplus, ferv39k or imagefolder (detected when left out).",
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    password_env: Annotated[
        str | None,
        typer.Option("--password-env", help="Name of the environment variable holding the archive password."),
    ] = None,
    password_file: Annotated[
        Path | None, typer.Option("--password-file", help="File whose first line is the archive password.")
    ] = None,
    align: Annotated[bool, typer.Option("--align/--no-align", help="Detect and align faces after extracting.")] = True,
    detector: DetectorOpt = "retinaface",
    model_dir: ModelDirOpt = None,
    size: SizeOpt = 112,
    device: DeviceOpt = "auto",
    face: FaceOpt = "largest",
    registered: RegisteredOpt = None,
    label_map: Annotated[
        str | None,
        typer.Option(help="imagefolder: FOLDER=LABEL pairs (AN=angry,HA=happy) or a file of folder,label lines."),
    ] = None,
    skip_unparsed: Annotated[
        bool,
        typer.Option(
            "--skip-unparsed",
            help="Ingest the rest when some files do not fit the layout (they are listed in tables/<dataset>/).",
        ),
    ] = False,
    split: Annotated[
        str | None,
        choice_option(
            "--split",
            where="ferdata.schema:SPLITS",
            help="train, val or test: the split of the rows of a FER2013-style CSV that has no Usage column.",
        ),
    ] = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Accept a re-ingest that drops rows holding work (relabelling, folds, pairs, tags, faces); they are kept in tables/<dataset>/pruned-<time>.parquet.",
        ),
    ] = False,
    max_ratio: Annotated[
        float, typer.Option(help="Largest compression ratio accepted for one member (zip-bomb guard).")
    ] = 100.0,
    max_total_gb: Annotated[
        float, typer.Option(help="Most data read from the archive, in GiB (zip-bomb guard).")
    ] = 512.0,
    as_json: JsonOpt = False,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_actors: RayActorsOpt = None,
) -> None:
    """Read an archive or folder, extract the originals safely, write the Parquet manifest, align faces.

    The password is never taken as an option value: use --password-env, --password-file, or answer
    the hidden prompt. Running the same command again resumes an interrupted ingest and gives the
    same manifest.

    Example: MSDE_PW=... ferdata ingest msd-e.zip --dataset msd-e --password-env MSDE_PW -w ws
    """
    from ..archives import Limits
    from ..ingest import ingest
    from ..workspace import Workspace

    ws = Workspace.resolve(workspace)
    limits = Limits(max_ratio=max_ratio, max_total_bytes=int(max_total_gb * 2**30))
    password = password_source(password_env, password_file)
    align_options = {
        "detector": detector,
        "model_dir": model_dir,
        "size": size,
        "device": device,
        "face_choice": face,
        "registered": registered,
        "engine": engine,
        "ray_address": ray_address,
        "ray_actors": ray_actors,
    }
    with progress_bar() as progress:
        result = ingest(
            ws,
            path,
            dataset=dataset,
            password=password,
            limits=limits,
            label_map=parse_label_map(label_map),
            skip_unparsed=skip_unparsed,
            split=split,
            prune=prune,
            align=align,
            align_options=align_options,
            progress=progress,
        )
    from ..stats import summary
    from .stats import print_tables

    for notice in result.notices:
        err.print(notice, highlight=False)
    if result.unparsed:
        warn(
            f"{len(result.unparsed)} files or rows did not fit the layout and were skipped: see tables/{result.dataset}/unparsed-{result.dataset}.csv"
        )
    if result.pruned_table:
        warn(f"{result.dropped:,} rows the source no longer has were dropped; they are kept in {result.pruned_table}")
    # result.warnings reach stderr once, through the library's log (as every command's do).
    if as_json:
        print_json(result)
        return
    print_tables(summary(result.manifest))
    if result.align_report is not None:
        report = result.align_report
        if report.resumed:
            out.print(f"{report.resumed:,} rows resumed from an interrupted alignment")
        out.print(f"aligned by {report.detector} on {report.provider} at {report.images_per_second:.1f} images/s")
    out.print(
        f"{result.dataset}: {result.rows:,} images in {ws.manifest_path(result.dataset)} "
        f"({result.written:,} originals written, {result.kept:,} rows kept from the previous manifest) in {result.seconds:.1f}s"
    )

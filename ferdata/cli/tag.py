"""`ferdata tag add|remove|import|list|auto` (occlusion tags) and `ferdata mask-synth`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from .common import (
    CONTEXT,
    DatasetOpt,
    JsonOpt,
    WorkspaceOpt,
    app,
    choice_option,
    command,
    out,
    print_json,
    progress_bar,
    warn,
)

tag_app = typer.Typer(
    name="tag",
    help="Add, remove, import and count occlusion tags; tag masks automatically. Example: ferdata tag list -w ws",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings=CONTEXT,
)
app.add_typer(tag_app, name="tag")

_SHOWN = 10

# The library's argument names in its messages -> these commands' flags.
TAG_FLAGS = {
    r"\bwhere=": "--where ",
    r"\bids=": "--ids ",
    r"\bthreshold=": "--threshold ",
    r"\blimit=": "--limit ",
    r"\bfit=True": "--fit",
    r"\bmodel= must be left out": "--model must be left out",
    r"\bkeep builtin=True or give mask_images": "leave out --no-builtin or pass --mask-image FILE",
}

TagOpt = Annotated[
    str,
    choice_option(
        "--tag",
        "-t",
        where="ferdata.schema:OCCLUSION_TAGS",
        help="Tag name: mask, sunglasses, glasses, hand, hair, hat, other, synthetic_mask, label_issue.",
    ),
]
WhereOpt = Annotated[
    str | None,
    typer.Option(
        "--where",
        help="Pandas expression over manifest columns, e.g. \"split == 'train' and label == 'happy'\".",
        show_default=False,
    ),
]
IdsOpt = Annotated[
    str | None,
    typer.Option(
        "--ids",
        help="Image ids (or file names) separated by commas, or @FILE for a file with one per line.",
        show_default=False,
    ),
]


def _subcommand(name: str) -> Callable:
    return command(name, on=tag_app, flags=TAG_FLAGS)


def _change(result, as_json: bool = False) -> None:
    if result.kept_source:
        warn(
            f"{result.kept_source:,} images keep {result.tag} because it came from the source (add --force to remove it)"
        )
    if result.unmatched:
        shown = ", ".join(result.unmatched[:_SHOWN])
        warn(
            f"{len(result.unmatched):,} listed images are not in the manifest: {shown}{' ...' if len(result.unmatched) > _SHOWN else ''}"
        )
    if as_json:
        print_json(result)
        return
    verb = {"add": "added to", "remove": "removed from", "import": "added to"}[result.action]
    out.print(
        f"{result.dataset}: {result.tag or 'tags'} {verb} {result.changed:,} of {result.selected:,} selected images"
    )


@_subcommand("add")
def add_command(
    tag: TagOpt,
    where: WhereOpt = None,
    ids: IdsOpt = None,
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add an occlusion tag to the images chosen by --where and/or --ids (origin: manual).

    Adding mask or synthetic_mask also sets masked=true where it was unknown.

    Example: ferdata tag add -w ws --tag sunglasses --where "subject_id == '017'"
    """
    from ..tags import tag_images
    from ..workspace import Workspace

    ws = Workspace.resolve(workspace)
    _change(tag_images(ws, tag, where=where, ids=ids, dataset=dataset), as_json)


@_subcommand("remove")
def remove_command(
    tag: TagOpt,
    where: WhereOpt = None,
    ids: IdsOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Also remove the tag where it came from the source (the dataset's own layout or lists)."
        ),
    ] = False,
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove an occlusion tag from the images chosen by --where and/or --ids.

    A tag goes whatever its origin (manual, auto_mask, label_issues, review), except that tags
    from the source (MSD-E's MSD-ME/ folder, Occlu-FER) stay unless --force.

    Example: ferdata tag remove -w ws --tag label_issue --ids @ok_after_review.txt
    """
    from ..tags import tag_images
    from ..workspace import Workspace

    ws = Workspace.resolve(workspace)
    _change(tag_images(ws, tag, remove=True, where=where, ids=ids, force=force, dataset=dataset), as_json)


@_subcommand("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV with columns image,tag; or an occlusion list with --list-tag.")],
    list_tag: Annotated[
        str | None,
        choice_option(
            "--list-tag",
            where="ferdata.schema:OCCLUSION_TAGS",
            show_default=False,
            help="FILE is an Occlusion-RAF-DB / Occlusion-FERPlus list: give every listed image this tag.",
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import tags from a CSV of image,tag (one tag per line), or from an occlusion list file.

    Images may be named by image_id or by their file name. Unknown tags are an error; images not
    in the manifest are listed and skipped.

    Example: ferdata tag import -w ws rafdb_occlusion_list.txt --list-tag other
    """
    from ..tags import import_tags
    from ..workspace import Workspace

    ws = Workspace.resolve(workspace)
    _change(import_tags(ws, file, list_tag=list_tag, dataset=dataset), as_json)


@_subcommand("list")
def list_command(
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Count images per tag, by origin (source, manual, auto_mask, label_issues, review), and per masked value.

    Example: ferdata tag list -w ws --dataset msd-e
    """
    from rich.table import Table

    from ..tags import ORIGINS, list_tags
    from ..workspace import Workspace

    result = list_tags(Workspace.resolve(workspace), dataset=dataset)
    counts = result.counts
    assert counts is not None  # list_tags always counts
    if as_json:
        print_json(result)
        return
    table = Table(title=f"{result.dataset}: {result.selected:,} images")
    for column in ("tag", *ORIGINS, "total"):
        table.add_column(column, justify="left" if column == "tag" else "right")
    for row in counts.itertuples(index=False):
        table.add_row(row.tag, *(f"{getattr(row, o):,}" for o in ORIGINS), f"{row.total:,}")
    out.print(table)


@_subcommand("auto")
def auto_command(
    mask: Annotated[
        bool,
        typer.Option(
            "--mask", help="Score every face crop (aligned or registered) for a mask (mask_score) and tag it."
        ),
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold", help="Tag at or above this mask_score (default: the model's, 0.5).", show_default=False
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", help="A mask model JSON written by --fit (default: the built-in model).", show_default=False
        ),
    ] = None,
    fit: Annotated[
        bool,
        typer.Option(
            "--fit",
            help="First fit a model on this dataset's images whose masked is known (saved to tables/DATASET/mask_model.json).",
        ),
    ] = False,
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tag masks automatically from the face crops (mask_score column, tag mask, origin auto_mask).

    Never changes tags or masked values that came from the source or a person; running it again
    with another threshold replaces only its own earlier decisions. Precision and recall of the
    built-in model are in docs/tag.md.

    Example: ferdata tag auto --mask -w ws --dataset occlu-fer --threshold 0.6
    """
    from ..masks.tagging import auto_tag_masks
    from ..workspace import Workspace

    if not mask:
        raise typer.BadParameter("say what to tag: --mask (the only automatic tag so far)")
    ws = Workspace.resolve(workspace)
    with progress_bar() as progress:
        result = auto_tag_masks(ws, dataset=dataset, threshold=threshold, model=model, fit=fit, progress=progress)
    if as_json:
        print_json(result)
        return
    out.print(
        f"{result.dataset}: {result.scored:,} faces scored with the {result.model} model; "
        f"{result.tagged:,} at or above {result.threshold:g}; {result.changed:,} mask tags changed"
    )
    if result.checked:
        out.print(
            f"on the {result.checked:,} faces whose masked is known: precision {result.precision:.3f}, recall {result.recall:.3f}"
        )


@command("mask-synth", flags=TAG_FLAGS)
def mask_synth_command(
    seed: Annotated[
        int, typer.Option("--seed", help="Chooses each face's mask shape, fabric and fit (same seed, same images).")
    ] = 0,
    where: WhereOpt = None,
    mask_image: Annotated[
        list[Path] | None,
        typer.Option(
            "--mask-image",
            help="Picture of a flat mask to use as a fabric (repeatable), e.g. insightface's data/images/mask_blue.jpg.",
            show_default=False,
        ),
    ] = None,
    no_builtin: Annotated[bool, typer.Option("--no-builtin", help="Use only the --mask-image fabrics.")] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", help="At most this many new images.", show_default=False)
    ] = None,
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Draw synthetic masks on non-masked face crops and add them as new, paired rows.

    Each eligible face (a crop, aligned or registered; not masked, not yet paired; narrowed by
    --where) gets a twin with a mask over nose, mouth and chin placed from its landmarks: a new
    row tagged synthetic_mask, masked=true, same label, subject and fold, sharing pair_id with its
    original.

    Example: ferdata mask-synth -w ws --dataset imagefolder --seed 7 --where "split == 'train'"
    """
    from rich.table import Table

    from ..masks.synth import synthesize_masks
    from ..workspace import Workspace

    ws = Workspace.resolve(workspace)
    with progress_bar() as progress:
        result = synthesize_masks(
            ws,
            dataset=dataset,
            seed=seed,
            where=where,
            mask_images=mask_image or (),
            builtin=not no_builtin,
            limit=limit,
            progress=progress,
        )
    if as_json:
        print_json(result)
        return
    table = Table(title=f"{result.dataset}: synthetic masks (seed {result.seed})")
    table.add_column("")
    table.add_column("images", justify="right")
    table.add_row("created", f"{result.created:,}")
    for shape, n in sorted(result.by_shape.items()):
        table.add_row(f"  shape {shape}", f"{n:,}")
    for texture, n in sorted(result.by_texture.items()):
        table.add_row(f"  fabric {texture}", f"{n:,}")
    for reason, n in sorted(result.skipped.items()):
        table.add_row(f"skipped: {reason}", f"{n:,}")
    out.print(table)

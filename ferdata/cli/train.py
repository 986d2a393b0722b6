"""`ferdata train-baseline` and `ferdata label-issues`: the bundled trainer and confident learning on its output."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import DatasetOpt, JsonOpt, WorkspaceOpt, choice_option, command, err, out, print_json, warn

_SUBSETS = "nm|m|mix|pe"


def _milestones(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated epoch numbers such as 8,14,20, got {text!r}") from None


def _round(name: int | str) -> str:
    return f"fold {name}" if isinstance(name, int) else str(name)


@contextmanager
def _live() -> Iterator[tuple[Callable[[str, int, int | None], None], Callable[[Any], None]]]:
    """``(progress, monitor)`` sharing one live display: decoding, then a bar per fold with loss,
    accuracy and images/s. When piped: quiet decoding, one line per epoch."""
    if not err.is_terminal or err.quiet:

        def line(step) -> None:
            if step.done == step.total:
                err.print(
                    f"{_round(step.fold)} {step.phase} epoch {step.epoch}/{step.epochs}: loss {step.loss:.4f} "
                    f"acc {100 * step.accuracy:.1f}% {step.images_per_s:,.0f} img/s",
                    highlight=False,
                )

        yield (lambda task, done, total: None), line
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    tasks: dict[Any, Any] = {}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err
    ) as bar:

        def progress(task: str, done: int, total: int | None) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done, total=total)

        def monitor(step) -> None:
            key = (step.fold, step.phase)
            if key not in tasks:
                tasks[key] = bar.add_task("", total=step.total * step.epochs)
            bar.update(
                tasks[key],
                completed=(step.epoch - 1) * step.total + step.done,
                description=f"{_round(step.fold)} {step.phase} epoch {step.epoch}/{step.epochs} loss {step.loss:.3f} "
                f"acc {100 * step.accuracy:.1f}% {step.images_per_s:,.0f} img/s",
            )

        yield progress, monitor


def _pct(mean: float | None, std: float | None = None) -> str:
    return "–" if mean is None else (f"{100 * mean:.2f}" if std is None else f"{100 * mean:.2f} ± {100 * std:.2f}")


# the library's argument names in its messages -> this command's flags
_FLAGS = {
    name: "--" + name.replace("_", "-")
    for name in (
        "teacher",
        "protocol",
        "memory_budget",
        "folds",
        "fold",
        "feature",
        "method",
        "subset",
        "epochs",
        "batch_size",
        "image_size",
        "milestones",
        "kd_p",
        "device",
        "dpi",
    )
} | {"run_dir": "--out", "figure_format": "--format"}


def _with_flags(message: str) -> str:
    message = re.sub(r"\bmake_folds\(ws, (\d+)\)", r"ferdata folds --k \1", message)
    return re.sub(
        r"\b(" + "|".join(_FLAGS) + r")=(\S*)", lambda m: f"{_FLAGS[m.group(1)]} {m.group(2)}".rstrip(), message
    )


def _size(nbytes: int | None) -> str:
    return "?" if nbytes is None else f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


@command("train-baseline")
def train_baseline_command(
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="A published dataset folder (ferdata publish --out DIR) instead of the workspace.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    protocol: Annotated[
        str | None,
        choice_option(
            "--protocol",
            where="ferdata.train.config:PROTOCOLS",
            help="folds (k-fold CV over the fold column, as MSD-E) or split (train on "
            "train, choose the epoch on val, report test); default folds where the data "
            "has folds and no official split, else split.",
        ),
    ] = None,
    subset: Annotated[
        str | None,
        choice_option(
            "--subset",
            where="ferdata.train.data:SUBSETS",
            help=f"{_SUBSETS}; default pe for cl/kd, else nm where the data holds masked faces, else mix.",
        ),
    ] = None,
    method: Annotated[
        str,
        choice_option(
            "--method",
            where="ferdata.train.config:METHODS",
            help="ce (plain cross-entropy), cl (contrastive) or kd (distillation).",
        ),
    ] = "ce",
    folds: Annotated[int | None, typer.Option(help="Expected number of folds in the fold column (checked).")] = None,
    fold: Annotated[int | None, typer.Option(help="Run only this validation fold.")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs per fold.")] = 25,
    batch_size: Annotated[int, typer.Option(help="Images per step (pairs for cl and kd).")] = 96,
    image_size: Annotated[
        int | None,
        typer.Option(
            help="Input side in pixels; faces are resized once, when loaded [default: 112; 224 with --init]",
            show_default=False,
        ),
    ] = None,
    lr_backbone: Annotated[float, typer.Option(help="Adam learning rate of the backbone.")] = 1e-4,
    lr_head: Annotated[float, typer.Option(help="Adam learning rate of the classifier.")] = 1e-3,
    milestones: Annotated[
        str, typer.Option(help="Epochs (counted from 0) where both rates are divided by 10.")
    ] = "8,14,20",
    seed: Annotated[int, typer.Option(help="Seed of initialisation, shuffling and augmentation.")] = 0,
    device: Annotated[
        str,
        choice_option(
            "--device", where="ferdata.train.config:DEVICES", help="auto|cpu|cuda (auto: CUDA when available)."
        ),
    ] = "auto",
    precision: Annotated[
        str,
        choice_option(
            "--precision",
            where="ferdata.train.config:PRECISIONS",
            help="auto|fp32|bf16: autocast of the network (auto: bf16/fp16 on CUDA, bf16 on CPUs with native bf16, else fp32).",
        ),
    ] = "auto",
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Run folder (default: WORKSPACE/runs/SUBSET-METHOD, split-SUBSET-METHOD under --protocol split).",
        ),
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(
            help="Face-recognition ResNet-18 state dict to start from, as the paper "
            "does (MS-Celeb-1M; see docs/train-baseline.md). Without it: random "
            "initialisation.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    teacher: Annotated[
        Path | None,
        typer.Option(
            help="KD teacher: the RUN_DIR of a --subset nm run on the same folds "
            "(checked), or a checkpoint file (not checkable).",
            exists=True,
        ),
    ] = None,
    feature: Annotated[
        str,
        choice_option(
            "--feature",
            where="ferdata.train.config:FEATURES",
            help="What CL and KD compare: map-l2 (layer-4 map, L2-normalised per "
            "position, as the authors' code), pool-l2, or pool (raw pooled features).",
        ),
    ] = "map-l2",
    cl_a: Annotated[float, typer.Option("--cl-a", help="CL: weight a of the feature MSE.")] = 0.2,
    cl_b: Annotated[float, typer.Option("--cl-b", help="CL: weight b of the two cross-entropies.")] = 1.0,
    kd_lambda: Annotated[float, typer.Option("--kd-lambda", help="KD: weight λ of the feature MSE.")] = 100.0,
    kd_p: Annotated[
        float, typer.Option("--kd-p", help="KD: probability that the student sees the non-masked image.")
    ] = 0.5,
    augment: Annotated[
        bool, typer.Option(help="Random flip and small affine jitter on the training faces (one draw per pair).")
    ] = True,
    tsne: Annotated[
        bool,
        typer.Option(
            help="Draw tsne.FORMAT: a t-SNE panel of each fold's out-of-fold features (or of "
            "the evaluated split), each with its legend."
        ),
    ] = True,
    figure_format: Annotated[
        str,
        choice_option(
            "--format",
            where="ferdata.figures:FORMATS",
            help="Format of the confusion matrices and the t-SNE: png, pdf or svg (vector, for papers).",
        ),
    ] = "png",
    dpi: Annotated[int, typer.Option("--dpi", help="Resolution of PNG figures (and of images inside PDF/SVG).")] = 150,
    epoch_log: Annotated[
        bool,
        typer.Option(help="Predict the evaluated images after every epoch (epochs.csv; a diagnostic under folds)."),
    ] = True,
    memory_budget: Annotated[
        str | None,
        typer.Option(
            help="Decoded faces above this size (e.g. 8GiB, 500MB, 0) go to a "
            "file in RUN_DIR/cache, read back a batch at a time [default: half the available memory]",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train ResNet-18 under a dataset's protocol: MSD-E's k-fold CV, or the official split.

    --protocol folds: each fold trains a fresh network on the other folds (Adam, backbone and
    head learning rates, both divided by 10 at the milestones) and predicts its own images; the
    last epoch is reported. --protocol split: one network trains on train, the epoch is chosen on
    val where there is also a test split, and test is reported (video: per clip too, WAR and
    UAR). Writes RUN_DIR/run.json, the rounds' folders (model.pt, history.json,
    predictions.parquet), oof.parquet or predictions.parquet, epochs.csv, results.json,
    results.md, the confusion matrices and the t-SNE (PNG, or --format pdf|svg). Running the
    same command again skips the rounds already finished. No weights are downloaded: without --init the networks start from
    random weights, and every report says so.

    Example: ferdata train-baseline -w ws --subset pe --method cl --folds 10 --out runs/pe-cl
    """
    from ..errors import FerdataError
    from ..train.loop import TrainConfig, train_baseline
    from ..workspace import Workspace

    try:
        config = TrainConfig(
            protocol=protocol,
            subset=subset,
            method=method,
            folds=folds,
            fold=fold,
            epochs=epochs,
            batch_size=batch_size,
            image_size=image_size,
            lr_backbone=lr_backbone,
            lr_head=lr_head,
            milestones=_milestones(milestones),
            seed=seed,
            device=device,
            precision=precision,
            init=str(init) if init else None,
            teacher=str(teacher) if teacher else None,
            feature=feature,
            cl_a=cl_a,
            cl_b=cl_b,
            kd_lambda=kd_lambda,
            kd_p=kd_p,
            augment=augment,
            tsne=tsne,
            figure_format=figure_format,
            dpi=dpi,
            epoch_log=epoch_log,
            memory_budget=memory_budget,
        ).resolved()
        source = data if data is not None else Workspace.resolve(workspace)
        with _live() as (progress, monitor):
            result = train_baseline(source, out_dir, config, dataset=dataset, progress=progress, monitor=monitor)
    except FerdataError as exc:
        raise type(exc)(_with_flags(str(exc))) from None

    if as_json:
        for warning in result.warnings:
            warn(_with_flags(warning))
        print_json(result)
        return
    summary = result.summary
    init_info = summary["initialisation"]
    if result.init:
        info = result.init
        out.print(
            f"--init {info['path']}: {info['loaded']} tensors loaded; not loaded: "
            f"{', '.join(info['missing'] + info['mismatched']) or 'none'}; {info['unused']} unused in the file"
        )
    else:
        out.print(
            f"initialisation: {init_info['label']} (the paper starts from MS-Celeb-1M face-recognition weights: "
            "pass them with --init)"
        )
    storage = result.storage
    out.print(
        f"faces: {storage.get('storage')} ({_size(storage.get('faces_bytes'))}; memory budget "
        f"{_size(storage.get('memory_budget'))})"
    )
    for reason, n in result.skipped.items():
        out.print(f"left out {n:,} images: {reason}")
    for warning in result.warnings:
        warn(_with_flags(warning))
    steps = summary["steps_per_epoch"]
    if steps.get("per_round"):
        line = f"optimiser steps per epoch: {steps['mean']:.1f} (batch {steps['batch_size']} {steps['unit']})"
        if steps["unit"] == "pairs":
            line += f"; CE on the same images: {steps['ce_on_the_same_images']:.1f}"
        out.print(line)
    if result.protocol == "folds":
        _print_folds(summary, result)
    else:
        _print_split(summary)
    baseline = summary.get("baseline")
    if baseline:
        out.print(
            "published: "
            + ", ".join(f"{k} {v['published']:.2f} (here {_pct(v['ours'])})" for k, v in baseline["compare"].items())
            + f" — {baseline['source']}"
        )
        if baseline["differences"]:
            out.print("differs: " + "; ".join(baseline["differences"]))
    out.print(f"results: {result.run_dir / 'results.md'}")


def _print_folds(summary: dict[str, Any], result) -> None:
    from rich.table import Table

    mean, std = summary["mean"], summary["std"]
    table = Table(title=f"{summary['experiment']}: {len(summary['folds_finished'])} folds, mean ± std (%)")
    for name in ("non-masked", "masked", "all", "mean per-class"):
        table.add_column(name, justify="right")
    table.add_row(*(_pct(mean[k], std[k] or 0) for k in ("accuracy_nm", "accuracy_m", "accuracy", "mean_per_class")))
    out.print(table)
    per_class = Table(title="per-class accuracy (mean diagonal of the normalised confusion matrix)")
    for name in summary["classes"]:
        per_class.add_column(name, justify="right")
    per_class.add_row(
        *("–" if mean["per_class"][c] is None else f"{mean['per_class'][c]:.2f}" for c in summary["classes"])
    )
    out.print(per_class)
    log = summary.get("epoch_log")
    if log:
        out.print(
            f"per-epoch validation log (diagnostic): last epoch {_pct(log['last'])}%, best epoch {log['best_epoch']} "
            f"{_pct(log['best'])}%, each fold's best {_pct(log['per_fold_best'])}% (epochs.csv)"
        )
    if result.folds_reused:
        out.print(f"folds finished earlier and kept: {', '.join(map(str, result.folds_reused))}")
    if summary["folds_missing"]:
        out.print(f"folds not run yet: {', '.join(map(str, summary['folds_missing']))}")


def _print_split(summary: dict[str, Any]) -> None:
    from rich.table import Table

    names = summary["split_names"]
    evaluated = names.get(summary["evaluated_split"], summary["evaluated_split"])
    selection = summary["selection"]
    chosen = (
        f"epoch {selection['epoch']} chosen on {names.get(selection['split'], selection['split'])}"
        if selection.get("split")
        else "last epoch"
    )
    table = Table(title=f"{summary['experiment']}: {evaluated}, {chosen} (%)")
    for name in ("", "WAR (accuracy)", "UAR (mean per-class recall)", "non-masked", "masked"):
        table.add_column(name, justify="right")
    if summary["clip"]:
        clip = summary["clip"]
        table.add_row(f"{clip['n_clips']:,} clips", _pct(clip["war"]), _pct(clip["uar"]), "–", "–")
    frame = summary["frame"]
    table.add_row(
        f"{frame['n']:,} {'frames' if summary['clip'] else 'images'}",
        _pct(frame["war"]),
        _pct(frame["uar"]),
        _pct(frame["accuracy_nm"]),
        _pct(frame["accuracy_m"]),
    )
    out.print(table)


@command("label-issues", flags={r"\bfilter_by=": "--filter ", r"\bws=": "-w"})
def label_issues_command(
    run_dir: Annotated[
        Path, typer.Argument(help="A train-baseline run folder (holds oof.parquet).", exists=True, file_okay=False)
    ],
    tag: Annotated[bool, typer.Option("--tag", help="Tag the flagged images label_issue in the workspace.")] = False,
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    filter_by: Annotated[
        str, choice_option("--filter", where="ferdata.labelissues:FILTERS", help="cleanlab's filter_by method.")
    ] = "prune_by_noise_rate",
    show: Annotated[int, typer.Option(help="How many of the ranked images to print.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Rank likely label errors of a run with cleanlab, from its out-of-fold probabilities.

    Writes RUN_DIR/label_issues.csv (rank, image_id, fold, masked, label, predicted,
    label_quality). With --tag, adds the tag label_issue to those images' occlusion tags in the
    workspace the run was trained on (or -w), for the next review round; labels are not changed.

    Example: ferdata label-issues ws/runs/nm-ce --tag
    """
    from rich.table import Table

    from ..errors import UsageError
    from ..labelissues import label_issues, run_origin
    from ..workspace import Workspace

    ws = Workspace.resolve(workspace) if workspace is not None else None
    if tag:
        if ws is None:
            origin = run_origin(run_dir)
            if origin.get("kind") != "workspace":
                raise UsageError(f"{run_dir} was not trained on a workspace: name the one to tag with -w")
            ws = Workspace.resolve(origin["path"])
        result = label_issues(run_dir, tag=True, ws=ws, dataset=dataset, filter_by=filter_by)
    else:
        result = label_issues(run_dir, filter_by=filter_by)
    if as_json:
        print_json(result)
        return

    table = Table(
        title=f"{len(result.issues):,} likely label errors among {result.n_checked:,} images ({result.filter_by})"
    )
    for name in ("rank", "image_id", "fold", "label", "predicted", "label quality"):
        table.add_column(name)
    for row in result.issues.head(show).itertuples(index=False):
        table.add_row(
            str(row.rank),
            str(row.image_id),
            str(row.fold),
            str(row.label),
            str(row.predicted),
            f"{row.label_quality:.3f}",
        )
    out.print(table)
    if result.per_label:
        out.print("flagged per label: " + ", ".join(f"{k} {v}" for k, v in result.per_label.items()))
    out.print(f"table: {result.table_path}")
    if tag:
        out.print(f"tagged {result.tagged:,} more images label_issue in {result.workspace} ({result.dataset})")

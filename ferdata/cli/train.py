"""`ferdata train-baseline` and `ferdata label-issues`: the bundled trainer and confident learning on its output."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import DatasetOpt, WorkspaceOpt, command, err, out

_SUBSETS = "nm|m|mix|pe"


def _milestones(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated epoch numbers such as 8,14,20, got {text!r}") from None


@contextmanager
def _live() -> Iterator[tuple[Callable[[str, int, int | None], None], Callable[[Any], None]]]:
    """``(progress, monitor)`` sharing one live display: decoding, then a bar per fold with loss,
    accuracy and images/s. When piped: quiet decoding, one line per epoch."""
    if not err.is_terminal:

        def line(step) -> None:
            if step.done == step.total:
                err.print(
                    f"fold {step.fold} {step.phase} epoch {step.epoch}/{step.epochs}: loss {step.loss:.4f} "
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
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err) as bar:

        def progress(task: str, done: int, total: int | None) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done, total=total)

        def monitor(step) -> None:
            key = (step.fold, step.phase)
            if key not in tasks:
                tasks[key] = bar.add_task("", total=step.total * step.epochs)
            bar.update(
                tasks[key], completed=(step.epoch - 1) * step.total + step.done,
                description=f"fold {step.fold} {step.phase} epoch {step.epoch}/{step.epochs} loss {step.loss:.3f} "
                f"acc {100 * step.accuracy:.1f}% {step.images_per_s:,.0f} img/s",
            )

        yield progress, monitor


def _pct(mean: float | None, std: float | None) -> str:
    return "–" if mean is None else f"{100 * mean:.2f} ± {100 * (std or 0):.2f}"


@command("train-baseline")
def train_baseline_command(
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    data: Annotated[Path | None, typer.Option("--data", help="A published dataset folder (ferdata publish --out DIR) "
                                              "instead of the workspace.", exists=True, file_okay=False)] = None,
    subset: Annotated[str | None, typer.Option(help=f"{_SUBSETS}; default pe for cl/kd, else nm.")] = None,
    method: Annotated[str, typer.Option(help="ce (plain cross-entropy), cl (contrastive) or kd (distillation).")] = "ce",
    folds: Annotated[int | None, typer.Option(help="Expected number of folds in the fold column (checked).")] = None,
    fold: Annotated[int | None, typer.Option(help="Run only this validation fold.")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs per fold.")] = 25,
    batch_size: Annotated[int, typer.Option(help="Images per step (pairs for cl and kd).")] = 96,
    image_size: Annotated[int, typer.Option(help="Input side in pixels; faces are resized once, when loaded.")] = 112,
    lr_backbone: Annotated[float, typer.Option(help="Adam learning rate of the backbone.")] = 1e-4,
    lr_head: Annotated[float, typer.Option(help="Adam learning rate of the classifier.")] = 1e-3,
    milestones: Annotated[str, typer.Option(help="Epochs (counted from 0) where both rates are divided by 10.")] = "8,14,20",
    seed: Annotated[int, typer.Option(help="Seed of initialisation, shuffling and augmentation.")] = 0,
    device: Annotated[str, typer.Option(help="auto|cpu|cuda (auto: CUDA when available).")] = "auto",
    precision: Annotated[
        str,
        typer.Option(help="auto|fp32|bf16: autocast of the network (auto: bf16/fp16 on CUDA, bf16 on CPUs with native bf16, else fp32)."),
    ] = "auto",
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run folder (default: WORKSPACE/runs/SUBSET-METHOD).")] = None,
    init: Annotated[Path | None, typer.Option(help="Face-recognition ResNet-18 state dict to start from "
                                              "(e.g. MS-Celeb-1M).", exists=True, dir_okay=False)] = None,
    teacher: Annotated[Path | None, typer.Option(help="KD teacher: a checkpoint, or the RUN_DIR of a --subset nm "
                                                 "run (its model of each fold).", exists=True)] = None,
    cl_a: Annotated[float, typer.Option("--cl-a", help="CL: weight a of the feature MSE.")] = 0.2,
    cl_b: Annotated[float, typer.Option("--cl-b", help="CL: weight b of the two cross-entropies.")] = 1.0,
    kd_lambda: Annotated[float, typer.Option("--kd-lambda", help="KD: weight λ of the feature MSE.")] = 100.0,
    kd_p: Annotated[float, typer.Option("--kd-p", help="KD: probability that the student sees the non-masked image.")] = 0.5,
    augment: Annotated[bool, typer.Option(help="Random flip and small affine jitter on the training faces.")] = True,
    tsne: Annotated[bool, typer.Option(help="Draw tsne.png from one fold's validation features.")] = True,
) -> None:
    """Train ResNet-18 under the MSD-E protocol: k-fold cross-validation on the manifest's folds.

    Each fold trains a fresh network on the other folds (Adam, backbone and head learning rates,
    both divided by 10 at the milestones) and predicts its own images. Writes RUN_DIR/run.json,
    folds/fold-i/ (model.pt, history.json, predictions.parquet), oof.parquet, results.json,
    results.md, confusion-matrix PNGs and tsne.png. Running the same command again skips the
    folds already finished. No weights are downloaded: pass --init for face-recognition weights.

    Example: ferdata train-baseline -w ws --subset pe --method cl --folds 10 --out runs/pe-cl
    """
    from rich.table import Table

    from ..train.loop import TrainConfig, train_baseline
    from ..workspace import Workspace

    config = TrainConfig(
        subset=subset, method=method, folds=folds, fold=fold, epochs=epochs, batch_size=batch_size,
        image_size=image_size, lr_backbone=lr_backbone, lr_head=lr_head, milestones=_milestones(milestones),
        seed=seed, device=device, precision=precision, init=str(init) if init else None, teacher=str(teacher) if teacher else None,
        cl_a=cl_a, cl_b=cl_b, kd_lambda=kd_lambda, kd_p=kd_p, augment=augment, tsne=tsne,
    ).resolved()
    ws = None if data is not None else Workspace.resolve(workspace)
    run_dir = out_dir if out_dir is not None else (ws.root if ws else Path.cwd()) / "runs" / f"{config.subset}-{config.method}"
    with _live() as (progress, monitor):
        result = train_baseline(data if data is not None else ws, run_dir, config, dataset=dataset, progress=progress,
                                monitor=monitor)

    if result.init:
        info = result.init
        out.print(f"--init {info['path']}: {info['loaded']} tensors loaded; not loaded: "
                  f"{', '.join(info['missing'] + info['mismatched']) or 'none'}; {info['unused']} unused in the file")
    for reason, n in result.skipped.items():
        out.print(f"skipped {n:,} images: {reason}")
    summary = result.summary
    mean, std = summary["mean"], summary["std"]
    table = Table(title=f"{summary['experiment']}: {len(summary['folds_finished'])} folds, mean ± std (%)")
    for name in ("non-masked", "masked", "all", "mean per-class"):
        table.add_column(name, justify="right")
    table.add_row(*(_pct(mean[k], std[k]) for k in ("accuracy_nm", "accuracy_m", "accuracy", "mean_per_class")))
    out.print(table)
    per_class = Table(title="per-class accuracy (mean diagonal of the normalised confusion matrix)")
    for name in summary["classes"]:
        per_class.add_column(name, justify="right")
    per_class.add_row(*("–" if mean["per_class"][c] is None else f"{mean['per_class'][c]:.2f}" for c in summary["classes"]))
    out.print(per_class)
    if result.folds_reused:
        out.print(f"folds finished earlier and kept: {', '.join(map(str, result.folds_reused))}")
    if summary["folds_missing"]:
        out.print(f"folds not run yet: {', '.join(map(str, summary['folds_missing']))}")
    out.print(f"results: {run_dir / 'results.md'}")


@command("label-issues")
def label_issues_command(
    run_dir: Annotated[Path, typer.Argument(help="A train-baseline run folder (holds oof.parquet).", exists=True,
                                            file_okay=False)],
    tag: Annotated[bool, typer.Option("--tag", help="Tag the flagged images label_issue in the workspace.")] = False,
    workspace: WorkspaceOpt = None,
    dataset: DatasetOpt = None,
    filter_by: Annotated[str, typer.Option("--filter", help="cleanlab's filter_by method.")] = "prune_by_noise_rate",
    show: Annotated[int, typer.Option(help="How many of the ranked images to print.")] = 20,
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
        with ws.lock("label-issues"):
            result = label_issues(run_dir, tag=True, ws=ws, dataset=dataset, filter_by=filter_by)
    else:
        result = label_issues(run_dir, filter_by=filter_by)

    table = Table(title=f"{len(result.issues):,} likely label errors among {result.n_checked:,} images ({result.filter_by})")
    for name in ("rank", "image_id", "fold", "label", "predicted", "label quality"):
        table.add_column(name)
    for row in result.issues.head(show).itertuples(index=False):
        table.add_row(str(row.rank), str(row.image_id), str(row.fold), str(row.label), str(row.predicted),
                      f"{row.label_quality:.3f}")
    out.print(table)
    if result.per_label:
        out.print("flagged per label: " + ", ".join(f"{k} {v}" for k, v in result.per_label.items()))
    out.print(f"table: {result.table_path}")
    if tag:
        out.print(f"tagged {result.tagged:,} more images label_issue in {result.workspace} ({result.dataset})")

"""Results of a run, computed from its predictions (``oof.parquet`` or ``predictions.parquet``)
and its rounds' logs, so they can always be recomputed.

Protocol ``folds`` (MSD-E): per fold, accuracy over all validation images, over the non-masked
and over the masked ones, the confusion matrix, and the per-class accuracy = the diagonal of the
row-normalised confusion matrix (the paper's Table 6), with its mean; over folds, the mean and the
standard deviation (n-1) of each number, the paper's headline being the mean (section 3.1).

Protocol ``split``: the same numbers once, on the evaluated split; for video, also per clip
(:func:`clip_metrics`: the mean of the frames' softmax per ``clip_id``), as WAR (weighted average
recall = accuracy) and UAR (unweighted average recall = mean per-class recall).

Both: how the networks started (random or ``--init`` weights), optimiser steps per epoch, the
per-epoch validation log (``epochs.csv``; under ``folds`` a diagnostic that shows how far a
best-epoch report would sit from the last-epoch one), rows left out by reason, and the dataset's
published baseline beside ours (``[baselines]`` of ``manifests/<dataset>.toml``) with what differs.

Files: ``results.json``, ``results.md`` (tables shaped like the paper's Tables 3-6),
``epochs.csv``, ``confusion.FORMAT`` (+ ``confusion-nm.FORMAT`` and ``confusion-m.FORMAT`` when
both kinds of image were evaluated), titled with their n and accuracy, and ``tsne.FORMAT``: the
pooled features of every round's evaluated images, one panel per round with its own legend,
non-masked and masked told apart by the marker (paper, Figure 5). FORMAT is the config's
``figure_format`` (png, pdf or svg, at ``dpi``; :mod:`ferdata.figures`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..fsutil import atomic_path, atomic_write_bytes
from ..schema import DATASETS

HEADLINE = ("accuracy", "accuracy_nm", "accuracy_m", "mean_per_class")
SPLIT_NAMES = {"train": "train", "val": "val", "test": "test"}


def confusion(truth: np.ndarray, predicted: np.ndarray, n: int) -> np.ndarray:
    """Counts: rows are the true class, columns the predicted one."""
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """The diagonal of the row-normalised confusion matrix; NaN for a class with no image."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / totals, np.nan)


def _codes(oof: pd.DataFrame, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    index = {c: i for i, c in enumerate(classes)}
    return oof["label"].map(index).to_numpy(dtype=np.int64), oof["predicted"].map(index).to_numpy(dtype=np.int64)


def _number(value: float) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def clip_metrics(predictions: pd.DataFrame, classes: tuple[str, ...]) -> dict[str, Any] | None:
    """Video evaluation: each clip's prediction is the argmax of the mean of its frames' softmax.

    WAR is the share of clips predicted right (weighted average recall = accuracy); UAR the mean
    over the classes that have clips of the share of their clips predicted right. A clip takes the
    label its frames carry (the most frequent one, should they disagree). None without clips.
    """
    frames = predictions[predictions["clip_id"].notna()] if "clip_id" in predictions else predictions.iloc[:0]
    if frames.empty:
        return None
    probs = frames[[f"p_{c}" for c in classes]].astype("float64")
    mean = probs.groupby(frames["clip_id"].to_numpy(), sort=True).mean()
    label = frames.groupby("clip_id", sort=True)["label"].agg(lambda s: s.value_counts().index[0])
    index = {c: i for i, c in enumerate(classes)}
    truth = label.map(index).to_numpy(dtype=np.int64)
    predicted = mean.to_numpy().argmax(axis=1)
    matrix = confusion(truth, predicted, len(classes))
    per_class = per_class_accuracy(matrix)
    return {
        "n_clips": len(mean),
        "n_frames": len(frames),
        "war": _number((truth == predicted).mean()),
        "uar": _number(np.nanmean(per_class) if np.isfinite(per_class).any() else np.nan),
        "per_class": {c: _number(v) for c, v in zip(classes, per_class, strict=True)},
        "confusion": matrix.tolist(),
    }


def epoch_metrics(predictions: pd.DataFrame, classes: tuple[str, ...]) -> dict[str, Any]:
    """The per-epoch log's numbers of one round; ``score`` is what a selection would maximise
    (clip WAR for video, else accuracy)."""
    m = fold_metrics(predictions, classes)
    out = {k: m[k] for k in ("n", *HEADLINE)}
    clips = clip_metrics(predictions, classes)
    if clips:
        out.update(clip_war=clips["war"], clip_uar=clips["uar"], n_clips=clips["n_clips"])
    out["score"] = out["clip_war"] if clips else (out["accuracy"] or 0.0)
    return out


def fold_metrics(oof: pd.DataFrame, classes: tuple[str, ...]) -> dict[str, Any]:
    """The numbers of one validation fold (or of any set of predictions)."""
    truth, predicted = _codes(oof, classes)
    right = truth == predicted
    masked = oof["masked"].astype("boolean")
    nm, m = (masked == False).fillna(False).to_numpy(bool), (masked == True).fillna(False).to_numpy(bool)
    matrix = confusion(truth, predicted, len(classes))
    per_class = per_class_accuracy(matrix)
    return {
        "n": len(oof),
        "n_nm": int(nm.sum()),
        "n_m": int(m.sum()),
        "accuracy": _number(right.mean() if len(right) else np.nan),
        "accuracy_nm": _number(right[nm].mean() if nm.any() else np.nan),
        "accuracy_m": _number(right[m].mean() if m.any() else np.nan),
        "mean_per_class": _number(np.nanmean(per_class) if np.isfinite(per_class).any() else np.nan),
        "per_class": {c: _number(v) for c, v in zip(classes, per_class, strict=True)},
        "per_class_nm": {
            c: _number(v)
            for c, v in zip(classes, per_class_accuracy(confusion(truth[nm], predicted[nm], len(classes))), strict=True)
        },
        "per_class_m": {
            c: _number(v)
            for c, v in zip(classes, per_class_accuracy(confusion(truth[m], predicted[m], len(classes))), strict=True)
        },
        "confusion": matrix.tolist(),
    }


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    present = np.array([v for v in values if v is not None], dtype=float)
    if not len(present):
        return None, None
    return float(present.mean()), float(present.std(ddof=1)) if len(present) > 1 else 0.0


def summarize(oof: pd.DataFrame, classes: tuple[str, ...], folds_expected: list[int] | None = None) -> dict[str, Any]:
    """Per-fold metrics and their mean and standard deviation over folds."""
    per_fold = {int(f): fold_metrics(part, classes) for f, part in oof.groupby("fold", sort=True)}
    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    for key in HEADLINE:
        mean[key], std[key] = _mean_std([m[key] for m in per_fold.values()])
    for group in ("per_class", "per_class_nm", "per_class_m"):
        mean[group], std[group] = {}, {}
        for c in classes:
            mean[group][c], std[group][c] = _mean_std([m[group][c] for m in per_fold.values()])
    done = sorted(per_fold)
    return {
        "classes": list(classes),
        "folds_finished": done,
        "folds_missing": sorted(set(folds_expected or done) - set(done)),
        "per_fold": {str(f): m for f, m in per_fold.items()},
        "mean": mean,
        "std": std,
        "confusion_total": confusion(*_codes(oof, classes), len(classes)).tolist(),
    }


# ----------------------------------------------------------------------------- split protocol


def summarize_split(predictions: pd.DataFrame, classes: tuple[str, ...]) -> dict[str, Any]:
    """The evaluated split's numbers: per image (``frame``), and per clip for video (``clip``)."""
    frame = fold_metrics(predictions, classes)
    frame["war"], frame["uar"] = frame["accuracy"], frame["mean_per_class"]
    return {
        "classes": list(classes),
        "frame": frame,
        "clip": clip_metrics(predictions, classes),
        "confusion_total": frame["confusion"],
    }


# ----------------------------------------------------------------------------- logs and context


def epoch_log(rounds: dict[Any, dict[str, Any]]) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """Every round's per-epoch numbers as one table, and how far the best epoch sits from the last.

    Under ``folds`` this is a diagnostic only: ``best_epoch`` maximises the mean over folds of the
    validation accuracy, ``per_fold_best`` averages each fold's own best epoch (what a report that
    picks the best epoch per fold would claim); the reported number stays the last epoch's.
    """
    rows = []
    for name, logged in rounds.items():
        for epoch in logged["history"]:
            row = {
                "round": str(name),
                "epoch": epoch["epoch"],
                "lr_backbone": epoch["lr_backbone"],
                "lr_head": epoch["lr_head"],
                "train_loss": epoch["loss"],
                "train_accuracy": epoch["accuracy"],
            }
            for key, value in (epoch.get("val") or {}).items():
                if key != "score":
                    row[f"val_{key}"] = value
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty or "val_accuracy" not in table or table["val_accuracy"].isna().any():
        return table, None
    key = "val_clip_war" if "val_clip_war" in table else "val_accuracy"
    per_epoch = table.groupby("epoch")[key].mean()
    last = int(per_epoch.index.max())
    best = int(per_epoch.idxmax())
    per_fold_best = table.groupby("round")[key].max().mean()
    return table, {
        "metric": key.removeprefix("val_"),
        "rounds": len(rounds),
        "per_epoch_mean": {int(e): float(v) for e, v in per_epoch.items()},
        "last_epoch": last,
        "last": float(per_epoch[last]),
        "best_epoch": best,
        "best": float(per_epoch[best]),
        "per_fold_best": float(per_fold_best),
    }


def steps_summary(config, rounds: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    """Optimiser steps per epoch: per round, and what CE would take on the same images, since CL
    and KD step once per ``batch_size`` pairs (twice the images of a CE step)."""
    per_round = {str(name): logged["info"].get("steps_per_epoch") for name, logged in rounds.items()}
    images = [logged["info"].get("n_train_images") for logged in rounds.values()]
    out: dict[str, Any] = {
        "batch_size": config.batch_size,
        "unit": "pairs" if config.method in ("cl", "kd") else "images",
        "per_round": per_round,
    }
    if per_round:
        out["mean"] = float(np.mean([v for v in per_round.values() if v is not None]))
        out["ce_on_the_same_images"] = float(np.mean([math.ceil(n / config.batch_size) for n in images if n]))
    teacher = [logged["info"].get("teacher_steps_per_epoch") for logged in rounds.values()]
    if any(t is not None for t in teacher):
        out["teacher_mean"] = float(np.mean([t for t in teacher if t is not None]))
    return out


def published_baseline(dataset: str | None, protocol: str, subset: str, method: str) -> dict[str, Any] | None:
    """The published numbers matching this experiment, from ``[baselines]`` of the dataset's facts."""
    from ..errors import FerdataError
    from ..resources import load_toml

    if not dataset:
        return None
    try:
        facts = load_toml(dataset).get("baselines")
    except FerdataError:
        return None
    if not facts:
        return None
    for result in facts.get("results", []):
        if (result.get("protocol"), result.get("subset"), result.get("method")) == (protocol, subset, method):
            common = {k: v for k, v in facts.items() if k != "results"}
            return {**common, **result}
    return None


def _differences(baseline: dict[str, Any], config, initialisation: dict[str, Any]) -> list[str]:
    """What this run does otherwise than the published one (epochs, image size, initialisation)."""
    out = []
    if baseline.get("epochs") and baseline["epochs"] != config.epochs:
        out.append(f"{config.epochs} epochs here, {baseline['epochs']} there")
    if baseline.get("image_size") and baseline["image_size"] != config.image_size:
        note = f" ({baseline['image_size_note']})" if baseline.get("image_size_note") else ""
        out.append(f"{config.image_size}-pixel inputs here, {baseline['image_size']} there{note}")
    if baseline.get("init"):
        out.append(f"{initialisation.get('label', 'random initialisation')} here; there: {baseline['init']}")
    return out


# ----------------------------------------------------------------------------- files


def _pct(mean: float | None, std: float | None) -> str:
    return "–" if mean is None else f"{100 * mean:.2f} ± {100 * (std or 0):.2f}"


_METRIC_NAMES = {
    "accuracy": "accuracy",
    "accuracy_nm": "non-masked",
    "accuracy_m": "masked",
    "mean_per_class": "mean per-class",
    "clip_war": "clip WAR",
    "clip_uar": "clip UAR",
}


def _pct1(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _names(classes: list[str]) -> tuple[str, str]:
    return "| images | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)


def _common_lines(summary: dict[str, Any]) -> list[str]:
    """Initialisation, steps, left-out rows, warnings, the epoch log and the published baseline."""
    lines = [""]
    init = summary["initialisation"]
    if init["kind"] == "random":
        lines.append(
            "**Initialisation: random** (no `--init`). The MSD-E paper starts ResNet-18 from MS-Celeb-1M "
            "face-recognition weights; docs/train-baseline.md says how to obtain and pass them."
        )
    else:
        lines.append(f"**Initialisation:** {init['label']} ({init.get('loaded', '?')} tensors loaded).")
    steps = summary["steps_per_epoch"]
    if steps.get("per_round"):
        text = (
            f"Optimiser steps per epoch: {steps['mean']:.1f} on average over rounds "
            f"(batch {steps['batch_size']} {steps['unit']})"
        )
        if steps["unit"] == "pairs":
            text += (
                f"; CE on the same images at batch {steps['batch_size']} would take {steps['ce_on_the_same_images']:.1f}, "
                "so this method updates the network about half as often per epoch"
            )
        if steps.get("teacher_mean"):
            text += f"; the teacher took {steps['teacher_mean']:.1f}"
        lines.append(text + ".")
    if summary["left_out"]:
        lines.append("Left out: " + "; ".join(f"{reason}: {n:,}" for reason, n in summary["left_out"].items()) + ".")
    for warning in summary["warnings"]:
        lines.append(f"Warning: {warning}.")
    log = summary.get("epoch_log")
    if log and summary["protocol"] == "folds":
        metric = _METRIC_NAMES.get(log["metric"], log["metric"])
        lines += [
            "",
            (
                f"Per-epoch validation log (`epochs.csv`, a diagnostic: the reported number is the last epoch's): "
                f"mean {metric} over folds {_pct1(log['last'])}% at the last epoch ({log['last_epoch']}), "
                f"{_pct1(log['best'])}% at the best epoch ({log['best_epoch']}); "
                f"each fold's own best epoch would average {_pct1(log['per_fold_best'])}%."
            ),
        ]
    baseline = summary.get("baseline")
    if baseline:
        lines += [
            "",
            f"Published baseline ({baseline['source']}; {baseline.get('where', '')}), {baseline['metric']}:",
            "",
        ]
        lines += [
            "| | " + " | ".join(_METRIC_NAMES.get(k, k) for k in baseline["compare"]) + " |",
            "|---|" + "---|" * len(baseline["compare"]),
        ]
        lines.append(
            "| published | "
            + " | ".join(f"{baseline['compare'][k]['published']:.2f}" for k in baseline["compare"])
            + " |"
        )
        lines.append(
            "| this run | " + " | ".join(_pct1(baseline["compare"][k]["ours"]) for k in baseline["compare"]) + " |"
        )
        if baseline["differences"]:
            lines += ["", "What differs: " + "; ".join(baseline["differences"]) + "."]
    elif summary.get("dataset") in DATASETS:
        lines += ["", f"No published baseline for this experiment is recorded in manifests/{summary['dataset']}.toml."]
    return lines


def markdown(summary: dict[str, Any], experiment: str) -> str:
    if summary.get("protocol") == "split":
        return _markdown_split(summary, experiment)
    mean, std, classes = summary["mean"], summary["std"], summary["classes"]
    n = len(summary["folds_finished"])
    lines = [
        f"# {experiment}",
        "",
        f"Mean ± standard deviation over {n} validation folds (accuracy, %), as in the paper's Tables 3-5.",
    ]
    if summary["folds_missing"]:
        lines.append(f"Folds not run yet: {', '.join(map(str, summary['folds_missing']))}.")
    lines += [
        "",
        "| experiment | non-masked | masked | all | mean per-class |",
        "|---|---|---|---|---|",
        (
            f"| {experiment} | {_pct(mean['accuracy_nm'], std['accuracy_nm'])} | {_pct(mean['accuracy_m'], std['accuracy_m'])} "
            f"| {_pct(mean['accuracy'], std['accuracy'])} | {_pct(mean['mean_per_class'], std['mean_per_class'])} |"
        ),
        "",
        "Per-class accuracy: mean diagonal of the normalised confusion matrix over folds (the paper's Table 6).",
        "",
        *_names(classes),
    ]
    for group, name in (("per_class", "all"), ("per_class_nm", "non-masked"), ("per_class_m", "masked")):
        values = mean[group]
        if any(v is not None for v in values.values()):
            lines.append(
                f"| {name} | " + " | ".join("–" if values[c] is None else f"{values[c]:.2f}" for c in classes) + " |"
            )
    lines += ["", "| fold | images | non-masked | masked | all | mean per-class |", "|---|---|---|---|---|---|"]
    for fold, m in summary["per_fold"].items():
        cells = [_pct(m[k], 0).split(" ±")[0] for k in ("accuracy_nm", "accuracy_m", "accuracy", "mean_per_class")]
        lines.append(f"| {fold} | {m['n']} | " + " | ".join(cells) + " |")
    lines += _common_lines(summary)
    return "\n".join(lines) + "\n"


def _markdown_split(summary: dict[str, Any], experiment: str) -> str:
    frame, clip, classes = summary["frame"], summary["clip"], summary["classes"]
    names = summary["split_names"]
    selection = summary["selection"]
    evaluated = summary["evaluated_split"]
    chosen = (
        f"epoch chosen on {names.get(selection['split'], selection['split'])}: {selection['epoch']} of {summary['epochs']}"
        if selection.get("split")
        else f"the last epoch ({summary['epochs']}) reported"
    )
    counted = f"{frame['n']:,} images" + (f", {clip['n_clips']:,} clips" if clip else "")
    lines = [
        f"# {experiment}",
        "",
        f"Trained on {names['train']}, {chosen}, evaluated on {names.get(evaluated, evaluated)} ({counted}).",
        "",
        "| evaluated on | WAR (accuracy, %) | UAR (mean per-class recall, %) | non-masked | masked |",
        "|---|---|---|---|---|",
    ]
    if clip:
        lines.append(
            f"| {names.get(evaluated, evaluated)}, clips (mean softmax per clip) | {_pct1(clip['war'])} | "
            f"{_pct1(clip['uar'])} | – | – |"
        )
    lines.append(
        f"| {names.get(evaluated, evaluated)}, {'frames' if clip else 'images'} | {_pct1(frame['war'])} | "
        f"{_pct1(frame['uar'])} | {_pct1(frame['accuracy_nm'])} | {_pct1(frame['accuracy_m'])} |"
    )
    lines += [
        "",
        "Per-class recall (diagonal of the normalised confusion matrix):",
        "",
        "| " + ("evaluated" if clip else "images") + " | " + " | ".join(classes) + " |",
        "|---|" + "---|" * len(classes),
    ]
    if clip:
        lines.append(
            "| clips | "
            + " | ".join("–" if clip["per_class"][c] is None else f"{clip['per_class'][c]:.2f}" for c in classes)
            + " |"
        )
    lines.append(
        f"| {'frames' if clip else 'images'} | "
        + " | ".join("–" if frame["per_class"][c] is None else f"{frame['per_class'][c]:.2f}" for c in classes)
        + " |"
    )
    log = summary.get("epoch_log")
    if log:
        metric = _METRIC_NAMES.get(log["metric"], log["metric"])
        where = names.get(summary["watched_split"], summary["watched_split"])
        lines += [
            "",
            (
                f"Per-epoch log on {where} (`epochs.csv`): {metric} {_pct1(log['last'])}% at the last epoch, "
                f"{_pct1(log['best'])}% at its best epoch ({log['best_epoch']})"
                + (
                    "; that epoch's network is the one evaluated."
                    if selection.get("split")
                    else "; a diagnostic only, the last epoch is reported."
                )
            ),
        ]
    lines += _common_lines(summary)
    return "\n".join(lines) + "\n"


def figure_title(experiment: str, what: str, matrix: np.ndarray) -> str:
    """``experiment`` over a line with what the figure counts, its n and its accuracy."""
    matrix = np.asarray(matrix)
    n = int(matrix.sum())
    accuracy = f"accuracy {np.trace(matrix) / n:.1%}" if n else "no images"
    return f"{experiment}\n{what}: n = {n:,}, {accuracy}"


def plot_confusion(
    matrix: np.ndarray, classes: list[str], path: Path, title: str, *, figure_format: str = "png", dpi: int = 150
) -> Path:
    """Row-normalised confusion matrix with the counts in each cell, written atomically as
    ``figure_format`` (png, pdf or svg). ``title`` is the figure's title as given
    (:func:`figure_title` adds n and accuracy)."""
    from ..figures import pyplot, save

    plt = pyplot()
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, float), where=totals > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(classes), 1.2 + 0.8 * len(classes)))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{share[i, j]:.2f}\n{matrix[i, j]}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if share[i, j] > 0.5 else "black",
            )
    fig.tight_layout()
    return save(fig, path, figure_format, dpi)


# non-masked and masked images share a panel, told apart by the marker (paper, Figure 5: by panel)
_KIND_MARKERS = (("non-masked", False, "o"), ("masked", True, "^"))
TSNE_COLUMNS = 5  # panels per row of the t-SNE figure


def tsne_points(features: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """2-D t-SNE of one network's features (None for fewer than 5 images)."""
    from sklearn.manifold import TSNE

    if len(features) < 5:
        return None
    perplexity = float(min(30.0, (len(features) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        features.astype(np.float32)
    )


def plot_tsne(
    rounds: list[tuple[str, np.ndarray, pd.DataFrame]],
    classes: list[str],
    path: Path,
    title: str,
    *,
    seed: int = 0,
    figure_format: str = "png",
    dpi: int = 150,
) -> Path | None:
    """t-SNE of each round's evaluated features: one panel per round (a fold's out-of-fold images,
    or the evaluated split), each with its legend; colour is the label, the marker non-masked or
    masked. Each fold's network has its own feature space, so folds get panels of their own
    rather than one embedding of features that no single network produced.

    ``rounds``: (panel name, features, the round's predictions in the features' row order:
    ``label``, ``predicted``, ``masked``). None when no round has 5 images or more.
    """
    from ..figures import pyplot, save

    panels = [
        (name, points, part) for name, features, part in rounds if (points := tsne_points(features, seed)) is not None
    ]
    if not panels:
        return None
    plt = pyplot()
    from matplotlib.lines import Line2D

    columns = min(TSNE_COLUMNS, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.4 * rows + 0.5), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (name, points, part) in zip(axes.flat, panels, strict=False):
        labels = part["label"].to_numpy(object)
        masked = (
            part["masked"].astype("boolean").fillna(False).to_numpy(bool)
            if "masked" in part
            else np.zeros(len(part), bool)
        )
        kinds = [(kind, value, marker) for kind, value, marker in _KIND_MARKERS if (masked == value).any()]
        for _kind, value, marker in kinds:
            for i, c in enumerate(classes):
                chosen = (masked == value) & (labels == c)
                if chosen.any():
                    ax.scatter(
                        points[chosen, 0],
                        points[chosen, 1],
                        s=12,
                        color=colours(i % 10),
                        marker=marker,
                        edgecolors="none",
                        alpha=0.85,
                    )
        right = int((part["label"] == part["predicted"]).sum())
        ax.set_title(f"{name}: n = {len(part):,}, accuracy {right / len(part):.1%}", fontsize=9)
        handles = [
            Line2D([], [], color=colours(i % 10), marker="o", linestyle="", label=c)
            for i, c in enumerate(classes)
            if (labels == c).any()
        ]
        if len(kinds) > 1:
            handles += [
                Line2D([], [], color="grey", marker=marker, linestyle="", label=kind) for kind, _, marker in kinds
            ]
        ax.legend(handles=handles, loc="best", fontsize=7, framealpha=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path, figure_format, dpi)


def experiment_name(config, initialisation: dict[str, Any] | None = None) -> str:
    names = {"nm": "NM", "m": "M", "mix": "Mix", "pe": "MSD-PE"}
    method = {"ce": "baseline", "cl": "CL", "kd": "KD"}[config.method]
    label = (initialisation or {}).get(
        "label", "initialised from " + Path(config.init).name if config.init else "random initialisation"
    )
    where = "" if config.protocol != "split" else ", official split"
    return f"ResNet-18 {method} on {names[config.subset]}{where} ({label})"


def split_names(dataset: str | None) -> dict[str, str]:
    """How the dataset itself calls its splits (FER2013 and FER+: Training, PublicTest, PrivateTest)."""
    from ..errors import FerdataError
    from ..resources import load_toml

    names = dict(SPLIT_NAMES)
    for name in (dataset, "fer2013") if dataset == "ferplus" else (dataset,):
        try:
            usage = load_toml(name).get("layout", {}).get("usage", {}) if name else {}
        except FerdataError:
            usage = {}
        for theirs, ours in usage.items():
            names[ours] = f"{ours} ({theirs})"
    return names


def write_reports(
    run_dir: Path,
    predictions: pd.DataFrame,
    classes: tuple[str, ...],
    *,
    config,
    folds_expected: list,
    context: dict[str, Any],
    tsne: bool = True,
) -> tuple[dict[str, Any], list[Path]]:
    """Write results.json, results.md, epochs.csv and the figures; return the summary and the files written.

    ``context["rounds"]`` maps each finished round to its ``info`` (fold.json), ``history``
    (history.json) and ``folder`` (its features.npy is the t-SNE's input): the run folder's
    layout is the loop's to know, not this module's."""
    run_dir = Path(run_dir)
    protocol = context["protocol"]
    rounds = context["rounds"]
    if protocol == "folds":
        summary = summarize(predictions, classes, folds_expected)
    else:
        summary = summarize_split(predictions, classes)
        logged = next(iter(rounds.values()))["info"] if rounds else {}
        summary.update(
            evaluated_split=logged.get("evaluated_split"),
            watched_split=logged.get("watched_split"),
            selection=logged.get("selection", {}),
            epochs=config.epochs,
            split_names=split_names(context.get("dataset")),
        )
    experiment = experiment_name(config, context["initialisation"])
    table, log = epoch_log(rounds)
    summary.update(
        experiment=experiment,
        protocol=protocol,
        dataset=context.get("dataset"),
        options=config.fingerprint(),
        initialisation=context["initialisation"],
        steps_per_epoch=steps_summary(config, rounds),
        left_out=context["left_out"],
        warnings=context["warnings"],
        epoch_log=log,
    )
    baseline = published_baseline(context.get("dataset"), protocol, config.subset, config.method)
    if baseline:
        ours = _ours(summary)
        compare = {k: {"published": float(v), "ours": ours.get(k)} for k, v in baseline.items() if k in ours}
        summary["baseline"] = {
            **{k: v for k, v in baseline.items() if k not in ours},
            "compare": compare,
            "differences": _differences(baseline, config, context["initialisation"]),
        }
    files = [run_dir / "results.json", run_dir / "results.md"]
    atomic_write_bytes(files[0], (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    atomic_write_bytes(files[1], markdown(summary, experiment).encode())
    if not table.empty:
        with atomic_path(run_dir / "epochs.csv") as tmp:
            table.to_csv(tmp, index=False)
        files.append(run_dir / "epochs.csv")
    fmt, dpi = config.figure_format, config.dpi
    evaluated = "all folds, out-of-fold" if protocol == "folds" else "evaluated split"
    total = np.asarray(summary["confusion_total"])
    matrices = [("", total, evaluated)]  # file suffix, confusion matrix, what it counts
    masked = predictions["masked"].astype("boolean")
    if (masked == True).any() and (masked == False).any():
        for kind, rows in (("nm", masked == False), ("m", masked == True)):
            part = predictions[rows.fillna(False).to_numpy(bool)]
            matrix = confusion(*_codes(part, classes), len(classes))
            matrices.append((f"-{kind}", matrix, f"{'non-masked' if kind == 'nm' else 'masked'} images, {evaluated}"))
    for suffix, matrix, what in matrices:
        files.append(
            plot_confusion(
                matrix,
                list(classes),
                run_dir / f"confusion{suffix}.{fmt}",
                figure_title(experiment, what, matrix),
                figure_format=fmt,
                dpi=dpi,
            )
        )
    if tsne and rounds:
        panels = []
        for name, logged in rounds.items():
            part = predictions[predictions["fold"] == name] if protocol == "folds" else predictions
            features = np.load(Path(logged["folder"]) / "features.npy")
            panels.append((f"fold {name}" if protocol == "folds" else "evaluated split", features, part))
        what = "a panel per fold, its out-of-fold images" if protocol == "folds" else "the evaluated split"
        written = plot_tsne(
            panels,
            list(classes),
            run_dir / f"tsne.{fmt}",
            f"{experiment}\nt-SNE of the penultimate features: {what}",
            seed=config.seed,
            figure_format=fmt,
            dpi=dpi,
        )
        if written is not None:
            files.append(written)
    return summary, files


def _ours(summary: dict[str, Any]) -> dict[str, float | None]:
    """This run's numbers under the names ``[baselines]`` uses."""
    if summary["protocol"] == "folds":
        return {k: summary["mean"][k] for k in HEADLINE}
    ours = {
        "accuracy": summary["frame"]["accuracy"],
        "mean_per_class": summary["frame"]["mean_per_class"],
        "accuracy_nm": summary["frame"]["accuracy_nm"],
        "accuracy_m": summary["frame"]["accuracy_m"],
    }
    if summary["clip"]:
        ours.update(clip_war=summary["clip"]["war"], clip_uar=summary["clip"]["uar"])
    return ours

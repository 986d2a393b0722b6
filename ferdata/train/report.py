"""Results of a run, computed from ``oof.parquet`` alone, so they can always be recomputed.

Per fold: accuracy over all validation images, over the non-masked and over the masked ones, the
confusion matrix, and the per-class accuracy = the diagonal of the row-normalised confusion matrix
(the paper's Table 6), with its mean. Over folds: the mean and the standard deviation (n-1) of
each number, the paper's headline being the mean (section 3.1).

Files: ``results.json``, ``results.md`` (tables shaped like the paper's Tables 3-6),
``confusion.png`` (+ ``confusion-nm.png`` and ``confusion-m.png`` when both kinds of image were
validated) summed over folds, and ``tsne.png``: the penultimate features of one fold's
validation images, non-masked and masked side by side (paper, Figure 5).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..fsutil import atomic_path, atomic_write_bytes

HEADLINE = ("accuracy", "accuracy_nm", "accuracy_m", "mean_per_class")


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
        "per_class": {c: _number(v) for c, v in zip(classes, per_class)},
        "per_class_nm": {c: _number(v) for c, v in zip(classes, per_class_accuracy(confusion(truth[nm], predicted[nm], len(classes))))},
        "per_class_m": {c: _number(v) for c, v in zip(classes, per_class_accuracy(confusion(truth[m], predicted[m], len(classes))))},
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
    mean, std = {}, {}
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


# ----------------------------------------------------------------------------- files


def _pct(mean: float | None, std: float | None) -> str:
    return "–" if mean is None else f"{100 * mean:.2f} ± {100 * (std or 0):.2f}"


def markdown(summary: dict[str, Any], experiment: str) -> str:
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
        (f"| {experiment} | {_pct(mean['accuracy_nm'], std['accuracy_nm'])} | {_pct(mean['accuracy_m'], std['accuracy_m'])} "
        f"| {_pct(mean['accuracy'], std['accuracy'])} | {_pct(mean['mean_per_class'], std['mean_per_class'])} |"),
        "",
        "Per-class accuracy: mean diagonal of the normalised confusion matrix over folds (the paper's Table 6).",
        "",
        "| images | " + " | ".join(classes) + " |",
        "|---|" + "---|" * len(classes),
    ]
    for group, name in (("per_class", "all"), ("per_class_nm", "non-masked"), ("per_class_m", "masked")):
        values = mean[group]
        if any(v is not None for v in values.values()):
            lines.append(f"| {name} | " + " | ".join("–" if values[c] is None else f"{values[c]:.2f}" for c in classes) + " |")
    lines += ["", "| fold | images | non-masked | masked | all | mean per-class |", "|---|---|---|---|---|---|"]
    for fold, m in summary["per_fold"].items():
        cells = [_pct(m[k], 0).split(" ±")[0] for k in ("accuracy_nm", "accuracy_m", "accuracy", "mean_per_class")]
        lines.append(f"| {fold} | {m['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix with the counts in each cell, written atomically as PNG."""
    plt = _figure()
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, float), where=totals > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(classes), 0.8 + 0.8 * len(classes)))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{share[i, j]:.2f}\n{matrix[i, j]}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_tsne(features: np.ndarray, labels: np.ndarray, masked: np.ndarray, classes: list[str], path: Path,
              title: str, seed: int = 0) -> Path | None:
    """2-D t-SNE of the penultimate features, one panel per kind of image (paper, Figure 5)."""
    from sklearn.manifold import TSNE

    if len(features) < 5:
        return None
    perplexity = float(min(30.0, (len(features) - 1) / 3))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        features.astype(np.float32)
    )
    plt = _figure()
    panels = [(name, masked == value) for name, value in (("non-masked", False), ("masked", True)) if (masked == value).any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (name, rows) in zip(axes[0], panels):
        for i, c in enumerate(classes):
            chosen = rows & (labels == c)
            if chosen.any():
                ax.scatter(points[chosen, 0], points[chosen, 1], s=10, color=colours(i), label=c)
        ax.set_title(f"{title}: {name}")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def experiment_name(config) -> str:
    names = {"nm": "NM", "m": "M", "mix": "Mix", "pe": "MSD-PE"}
    method = {"ce": "baseline", "cl": "CL", "kd": "KD"}[config.method]
    return f"ResNet-18 {method} on {names[config.subset]}"


def write_reports(run_dir: Path, oof: pd.DataFrame, classes: tuple[str, ...], *, config, folds_expected: list[int],
                  tsne: bool = True) -> tuple[dict[str, Any], list[Path]]:
    """Write results.json, results.md and the figures; return the summary and the files written."""
    from .loop import fold_dir

    run_dir = Path(run_dir)
    summary = summarize(oof, classes, folds_expected)
    experiment = experiment_name(config)
    summary["experiment"] = experiment
    summary["options"] = config.fingerprint()
    files = [run_dir / "results.json", run_dir / "results.md"]
    atomic_write_bytes(files[0], (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    atomic_write_bytes(files[1], markdown(summary, experiment).encode())
    files.append(plot_confusion(summary["confusion_total"], list(classes), run_dir / "confusion.png", experiment))
    masked = oof["masked"].astype("boolean")
    if (masked == True).any() and (masked == False).any():
        for kind, rows in (("nm", masked == False), ("m", masked == True)):
            part = oof[rows.fillna(False).to_numpy(bool)]
            matrix = confusion(*_codes(part, classes), len(classes))
            files.append(plot_confusion(matrix, list(classes), run_dir / f"confusion-{kind}.png",
                                        f"{experiment}, {'non-masked' if kind == 'nm' else 'masked'}"))
    if tsne and summary["folds_finished"]:
        fold = summary["folds_finished"][0]
        features = np.load(fold_dir(run_dir, fold) / "features.npy")
        part = oof[oof["fold"] == fold]
        written = plot_tsne(features, part["label"].to_numpy(object), part["masked"].astype("boolean").fillna(False).to_numpy(bool)
                            if part["masked"].notna().any() else np.zeros(len(part), bool), list(classes),
                            run_dir / "tsne.png", f"{experiment}, fold {fold}")
        if written is not None:
            files.append(written)
    return summary, files

"""Likely label errors from a training run's held-out probabilities (``ferdata label-issues``).

Every image in ``RUN_DIR/oof.parquet`` (protocol folds: out-of-fold predictions of every image)
or ``RUN_DIR/predictions.parquet`` (protocol split: the evaluated split only) was predicted by a
network that never trained on it, which is what confident learning needs: cleanlab's ``find_label_issues`` estimates, per class, how
often the given label disagrees with a confident prediction, and flags the images whose label is
most likely wrong. They are ranked by cleanlab's self-confidence label-quality score (the
probability the network gives to the image's own label, lowest first).

With ``tag`` the flagged images get the tag ``label_issue`` in their ``occlusion`` list in the
workspace, with the origin ``label_issues`` (so ``ferdata tag list`` counts them apart from the
dataset's own tags and ``ferdata tag remove`` takes them away without ``--force``), so that the
next review round (a new vote, ``ferdata relabel``) can start from them. Tagging never changes a
label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import UsageError
from .workspace import Workspace, WorkspaceLike, writes_workspace

TAG = "label_issue"
TABLE = "label_issues.csv"
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")
PREDICTION_FILES = ("oof.parquet", "predictions.parquet")  # protocol folds, protocol split
ISSUE_COLUMNS = ("rank", "image_id", "fold", "masked", "label", "predicted", "label_quality", "p_predicted")


@dataclass
class LabelIssuesResult:
    run_dir: Path
    n_checked: int
    issues: pd.DataFrame  # ISSUE_COLUMNS, best candidates first
    table_path: Path
    filter_by: str
    tagged: int = 0
    workspace: str | None = None
    dataset: str | None = None
    per_label: dict[str, int] = field(default_factory=dict)


def _classes(oof: pd.DataFrame) -> list[str]:
    return [c[2:] for c in oof.columns if c.startswith("p_")]


def rank_label_issues(oof: pd.DataFrame, *, filter_by: str = "prune_by_noise_rate") -> pd.DataFrame:
    """The rows of ``oof`` whose label is likely wrong, ranked (pure: data in, table out)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    if filter_by not in FILTERS:
        raise UsageError(f"unknown filter_by={filter_by!r}: choose one of {', '.join(FILTERS)}")
    classes = _classes(oof)
    if not classes:
        raise UsageError("the predictions have no p_<class> columns: were they written by ferdata train-baseline?")
    index = {c: i for i, c in enumerate(classes)}
    labels = oof["label"].map(index).to_numpy(dtype=np.int64)
    probs = oof[[f"p_{c}" for c in classes]].to_numpy(dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    # cleanlab estimates per-class noise rates: a class no image carries would be a zero row
    present = np.unique(labels)
    if len(present) < 2:
        raise UsageError("the run's predictions cover fewer than 2 labels: nothing to compare")
    remap = {c: i for i, c in enumerate(present)}
    sub_probs = probs[:, present]
    sub_probs = sub_probs / sub_probs.sum(axis=1, keepdims=True)
    sub_labels = np.array([remap[v] for v in labels], dtype=np.int64)
    ranked = find_label_issues(sub_labels, sub_probs, filter_by=filter_by, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(sub_labels, sub_probs, method="self_confidence")
    chosen = oof.iloc[ranked]
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(ranked) + 1),
            "image_id": chosen["image_id"].to_numpy(dtype=object),
            "fold": chosen["fold"].to_numpy(),
            "masked": chosen["masked"].to_numpy() if "masked" in chosen else None,
            "label": chosen["label"].to_numpy(dtype=object),
            "predicted": np.asarray(classes, dtype=object)[probs[ranked].argmax(axis=1)] if len(ranked) else [],
            "label_quality": quality[ranked],
            "p_predicted": probs[ranked].max(axis=1) if len(ranked) else [],
        },
        columns=list(ISSUE_COLUMNS),
    )


@writes_workspace("label-issues")
def tag_label_issues(
    ws: WorkspaceLike, image_ids: list[str], *, dataset: str | None = None, run: str | None = None
) -> int:
    """Add ``label_issue`` (origin ``label_issues``) to these images' tags; returns how many rows gained it.

    An image that holds the tag already keeps it with its origin. Takes the workspace lock.
    Unknown ids are an error: the run came from another data.
    """
    from .tags import LABEL_ISSUES, add_tag

    ws = Workspace.of(ws)
    manifest = ws.load(dataset)
    frame = manifest.frame
    wanted = set(image_ids)
    unknown = wanted - set(frame["image_id"])
    if unknown:
        raise UsageError(
            f"{len(unknown)} flagged images are not in {ws.root}'s {manifest.dataset} manifest "
            f"(e.g. {min(unknown)}): pass the workspace the run was trained on with -w"
        )
    change = add_tag(frame, TAG, frame["image_id"].isin(wanted), origin=LABEL_ISSUES)
    manifest.frame = change.frame
    manifest.provenance["label_issues"] = {
        "run": run,
        "flagged": len(wanted),
        "newly_tagged": change.changed,
        "tag": TAG,
        "origin": LABEL_ISSUES,
    }
    ws.save(manifest)
    return change.changed


def run_origin(run_dir: Path) -> dict[str, Any]:
    """What ``run.json`` says about the data the run was trained on."""
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()).get("data", {}) if path.exists() else {}


def label_issues(
    run_dir: Path | str,
    *,
    tag: bool = False,
    ws: WorkspaceLike | None = None,
    dataset: str | None = None,
    filter_by: str = "prune_by_noise_rate",
) -> LabelIssuesResult:
    """Rank the run's likely label errors, write ``RUN_DIR/label_issues.csv``, and tag them when asked.

    ``ws`` defaults to the workspace recorded in the run's ``run.json``; tagging a run trained on a
    published folder needs it. The lock of ``ws`` is held while tagging.
    """
    ws = Workspace.of(ws) if ws is not None else None
    from .fsutil import atomic_path

    run_dir = Path(run_dir)
    found = [run_dir / name for name in PREDICTION_FILES if (run_dir / name).exists()]
    if not found:
        raise UsageError(
            f"{run_dir} holds no {' or '.join(PREDICTION_FILES)}: run ferdata train-baseline --out {run_dir} first"
        )
    oof = pd.read_parquet(found[0])
    issues = rank_label_issues(oof, filter_by=filter_by)
    table_path = run_dir / TABLE
    with atomic_path(table_path) as tmp:
        issues.to_csv(tmp, index=False)
    counts = issues["label"].value_counts()
    result = LabelIssuesResult(
        run_dir=run_dir,
        n_checked=len(oof),
        issues=issues,
        table_path=table_path,
        filter_by=filter_by,
        per_label={str(k): int(v) for k, v in counts.items()},
    )
    if tag:
        origin = run_origin(run_dir)
        if ws is None:
            if origin.get("kind") != "workspace":
                raise UsageError(f"{run_dir} was trained on a published folder: name the workspace to tag with ws=")
            ws = Workspace.resolve(origin["path"])
        dataset = dataset or (origin.get("dataset") if origin.get("kind") == "workspace" else None)
        result.tagged = tag_label_issues(ws, issues["image_id"].tolist(), dataset=dataset, run=str(run_dir))
        result.workspace, result.dataset = str(ws.root), ws.dataset_name(dataset)
    return result

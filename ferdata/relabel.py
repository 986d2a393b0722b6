"""Relabelling from annotator votes: the MSD-E rule and FER+'s majority mode.

The core is pure and vectorised: :func:`decide` turns a manifest frame and an endorsement table
(see :mod:`ferdata.votes`) into the *audit table* — one row per image with its endorsement
counts, the winning class, the action (``original``, ``relabelled``, ``removed``) and the reason
in words. :func:`apply_decisions` writes those decisions into a manifest frame, always starting
from ``label_original`` so that applying the same votes twice gives the same manifest.
:func:`summarize` gives the inventory of the MSD-E paper's section 2.2 per masked group.

Schemes
-------
``msd-e`` (paper, section 2.2)
    N annotators inspect each image; one who does not flag it endorses its original label, one
    who flags it may name a new class (a flag without a class endorses nothing). Images nobody
    flags keep their label. For a flagged image the class with the most endorsements wins if at
    least ``min_agree`` × N annotators endorse it and no more than ``max_other`` × N endorse
    "another class": all other classes together (``other_rule="total"``) or the largest single
    other class (``"per-class"``). Otherwise the image is removed, as it is when two classes tie
    for the most endorsements. N is the number of annotators who voted on the image, or
    ``annotators`` when given (annotators with no vote on an image then count as not flagging it).
``ferplus-majority`` (microsoft/FERPlus, ``src/ferplus.py``)
    every count of 1 or less is set to 0; the top category wins if it holds more than half of what
    remains; images whose result is no majority, ``unknown`` or ``not_face`` are removed.

The entry point :func:`relabel` loads a workspace's manifest, applies one scheme and writes the
audit table and the manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import UsageError, VotesError
from .schema import LABELS
from .votes import CATEGORIES, NOT_FACE, UNKNOWN, read_votes, tally
from .workspace import Workspace, WorkspaceLike, writes_workspace

SCHEMES = ("msd-e", "ferplus-majority")
OTHER_RULES = ("total", "per-class")
ACTIONS = ("original", "relabelled", "removed")

AUDIT_NAME = "relabel_audit"
SUMMARY_NAME = "relabel_summary.csv"

# Integer counts are compared with float thresholds such as 0.3 × 10 = 3.0000000000000004.
_EPS = 1e-9
_N_LABELS = len(LABELS)
_MASKED_GROUPS = {False: "non-masked", True: "masked"}

AUDIT_COLUMNS = (
    "image_id",
    "label_original",
    "masked",
    "n_annotators",
    "n_votes",
    "n_flagged",
    *CATEGORIES,
    "winner",
    "winner_votes",
    "other_votes",
    "action",
    "label",
    "reason",
)


def check_parameters(scheme: str, min_agree: float, max_other: float, other_rule: str, annotators: int | None) -> None:
    """Raise a one-line error for a scheme, rule or threshold that cannot be used."""
    if scheme not in SCHEMES:
        raise UsageError(f"unknown scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
    if other_rule not in OTHER_RULES:
        raise UsageError(f"unknown other rule {other_rule!r}: use one of {', '.join(OTHER_RULES)}")
    for name, value in (("min_agree", min_agree), ("max_other", max_other)):
        if not (isinstance(value, int | float) and 0.0 <= float(value) <= 1.0):
            raise VotesError(f"{name}={value} is outside [0, 1]: give a fraction of the annotators, e.g. 0.5")
    if annotators is not None and (not isinstance(annotators, int | np.integer) or annotators < 1):
        raise VotesError(f"annotators={annotators} must be a whole number of at least 1")


# ----------------------------------------------------------------------------- the schemes


def _fmt(values: np.ndarray) -> np.ndarray:
    """Numbers as short text (3.5, 4, 1.75), formatted once per distinct value."""
    distinct, inverse = np.unique(np.asarray(values), return_inverse=True)
    return np.array([f"{v:g}" for v in distinct], dtype=object)[inverse.reshape(-1)]


def _reasons(cases: np.ndarray, templates: dict[str, Any]) -> np.ndarray:
    """The reason of every row: ``templates[case](rows)`` builds the text for that case's rows only."""
    reason = np.empty(len(cases), dtype=object)
    for case, template in templates.items():
        rows = np.flatnonzero(cases == case)
        if len(rows):
            reason[rows] = template(rows)
    return reason


def _msd_e(
    counts: np.ndarray,
    original: np.ndarray,
    has_votes: np.ndarray,
    *,
    min_agree: float,
    max_other: float,
    other_rule: str,
    annotators: int | None,
) -> dict[str, Any]:
    rows = np.arange(len(counts))
    n_votes = counts.sum(axis=1)
    endorse = counts[:, :_N_LABELS].copy()  # unknown / not_face endorse no class
    n_flagged = n_votes - counts[rows, original]
    if annotators is None:
        n = n_votes
    else:
        n = np.full(len(counts), annotators, dtype=np.int64)
        # Annotators who left no vote did not flag the image: they endorse its original label.
        endorse[rows, original] += np.where(has_votes, n - n_votes, 0)
    top = endorse.max(axis=1)
    winner = endorse.argmax(axis=1)
    tie = (endorse == top[:, None]).sum(axis=1) > 1
    if other_rule == "total":
        other = endorse.sum(axis=1) - top
    else:
        other = np.sort(endorse, axis=1)[:, -2]
    need = min_agree * n
    allow = max_other * n
    cases = np.select(
        [
            ~has_votes,
            n_flagged == 0,
            top == 0,
            tie,
            top < need - _EPS,
            other > allow + _EPS,
            winner == original,
        ],
        ["no_votes", "unflagged", "no_class", "tie", "too_few", "too_many_others", "confirmed"],
        default="relabelled",
    )
    w = np.asarray(LABELS, dtype=object)[winner]
    n_txt, f_txt, top_txt, other_txt = _fmt(n), _fmt(n_flagged), _fmt(top), _fmt(other)
    others_are = "other classes together have " if other_rule == "total" else "the largest other class has "

    def flagged(r):
        return "flagged by " + f_txt[r] + " of " + n_txt[r] + "; "

    def share(r):
        return w[r] + " has " + top_txt[r] + "/" + n_txt[r]

    def others(r):
        return others_are + other_txt[r] + "/" + n_txt[r]

    def tie_text(r):  # rare: name the tied classes
        return [
            flagged(np.array([i]))[0]
            + " and ".join(LABELS[k] for k in np.flatnonzero(endorse[i] == top[i]))
            + f" tie with {top[i]}/{n[i]} each: removed"
            for i in r
        ]

    reason = _reasons(
        cases,
        {
            "no_votes": lambda r: "no votes for this image: label kept",
            "unflagged": lambda r: "not flagged by any of the " + n_txt[r] + " annotators: label kept",
            "no_class": lambda r: flagged(r) + "no annotator named a class: removed",
            "tie": tie_text,
            "too_few": lambda r: (
                flagged(r)
                + share(r)
                + ", fewer than the "
                + _fmt(need[r])
                + f" needed (min-agree {min_agree:g}): removed"
            ),
            "too_many_others": lambda r: (
                flagged(r)
                + share(r)
                + " but "
                + others(r)
                + ", more than the "
                + _fmt(allow[r])
                + f" allowed (max-other {max_other:g}, {other_rule}): removed"
            ),
            "confirmed": lambda r: flagged(r) + "the original " + share(r) + " and " + others(r) + ": label kept",
            "relabelled": lambda r: flagged(r) + share(r) + " and " + others(r) + ": relabelled to " + w[r],
        },
    )
    removed = np.isin(cases, ("no_class", "tie", "too_few", "too_many_others"))
    relabelled = cases == "relabelled"
    return {
        "n_annotators": n,
        "n_votes": n_votes,
        "n_flagged": n_flagged,
        "winner": np.where((top > 0) & ~tie, w, None),
        "winner_votes": top,
        "other_votes": other,
        "removed": removed,
        "relabelled": relabelled,
        "new_label": winner,
        "reason": reason,
    }


def _ferplus_majority(counts: np.ndarray, original: np.ndarray, has_votes: np.ndarray) -> dict[str, Any]:
    rows = np.arange(len(counts))
    n_votes = counts.sum(axis=1)
    kept = np.where(counts <= 1, 0, counts)  # FER+ drops single votes as outliers
    remaining = kept.sum(axis=1)
    top = kept.max(axis=1)
    winner = kept.argmax(axis=1)
    majority = 2 * top > remaining
    unknown, not_face = CATEGORIES.index(UNKNOWN), CATEGORIES.index(NOT_FACE)
    cases = np.select(
        [~has_votes, ~majority, winner == unknown, winner == not_face, winner == original],
        ["no_votes", "no_majority", "unknown", "not_face", "confirmed"],
        default="relabelled",
    )
    w = np.asarray(CATEGORIES, dtype=object)[winner]
    top_txt, left_txt = _fmt(top), _fmt(remaining)

    def votes(r):
        return top_txt[r] + " of the " + left_txt[r] + " votes left after dropping single votes"

    reason = _reasons(
        cases,
        {
            "no_votes": lambda r: "no votes for this image: label kept",
            "no_majority": lambda r: (
                "no category holds more than half of the "
                + left_txt[r]
                + " votes left after dropping single votes: removed"
            ),
            "unknown": lambda r: "the majority (" + votes(r) + ") says unknown: removed",
            "not_face": lambda r: "the majority (" + votes(r) + ") says not a face: removed",
            "confirmed": lambda r: "the majority " + w[r] + " (" + votes(r) + ") is the original label: label kept",
            "relabelled": lambda r: "the majority " + w[r] + " (" + votes(r) + "): relabelled to " + w[r],
        },
    )
    return {
        "n_annotators": n_votes,
        "n_votes": n_votes,
        "n_flagged": n_votes - counts[rows, original],
        "winner": np.where(majority, w, None),
        "winner_votes": top,
        "other_votes": remaining - top,
        "removed": np.isin(cases, ("no_majority", "unknown", "not_face")),
        "relabelled": cases == "relabelled",
        "new_label": winner,
        "reason": reason,
    }


def decide(
    frame: pd.DataFrame,
    endorsements: pd.DataFrame,
    *,
    scheme: str = "msd-e",
    min_agree: float = 0.5,
    max_other: float = 0.25,
    other_rule: str = "total",
    annotators: int | None = None,
) -> pd.DataFrame:
    """The audit table: one row per image of ``frame``, in its order, with the scheme's decision.

    ``endorsements`` is indexed by ``image_id`` with one count column per category in
    :data:`ferdata.votes.CATEGORIES`; images it does not list have no votes and keep their label.
    """
    check_parameters(scheme, min_agree, max_other, other_rule, annotators)
    ids = frame["image_id"].to_numpy(dtype=object)
    table = endorsements.reindex(columns=list(CATEGORIES), fill_value=0).reindex(pd.Index(ids))
    has_votes = table.notna().all(axis=1).to_numpy() & (table.fillna(0).to_numpy().sum(axis=1) > 0)
    counts = table.fillna(0).to_numpy(dtype=np.int64)
    original = pd.Categorical(frame["label_original"], categories=CATEGORIES).codes.astype(np.int64)
    if (original < 0).any():
        raise VotesError("the manifest has images without a valid label_original: run ferdata ingest again")
    if annotators is not None:
        over = counts.sum(axis=1) > annotators
        if over.any() and scheme == "msd-e":
            shown = [f"{i} ({n} votes)" for i, n in zip(ids[over][:5], counts.sum(axis=1)[over][:5], strict=True)]
            more = int(over.sum()) - len(shown)
            raise VotesError(
                f"{int(over.sum())} images have more votes than annotators={annotators}: "
                + ", ".join(shown)
                + (f" and {more} more" if more > 0 else "")
                + "; raise annotators= or leave it out"
            )
    if scheme == "msd-e":
        result = _msd_e(
            counts,
            original,
            has_votes,
            min_agree=min_agree,
            max_other=max_other,
            other_rule=other_rule,
            annotators=annotators,
        )
    else:
        result = _ferplus_majority(counts, original, has_votes)

    labels_or_more = np.asarray(CATEGORIES, dtype=object)
    original_names = frame["label_original"].to_numpy(dtype=object)
    new_names = np.where(result["relabelled"], labels_or_more[result["new_label"]], original_names)
    action = np.where(result["removed"], "removed", np.where(result["relabelled"], "relabelled", "original"))
    masked = (
        frame["masked"].astype("boolean") if "masked" in frame else pd.Series(pd.NA, index=frame.index, dtype="boolean")
    )
    audit = pd.DataFrame(
        {
            "image_id": ids,
            "label_original": original_names,
            "masked": masked.to_numpy(),
            "n_annotators": result["n_annotators"].astype(np.int64),
            "n_votes": result["n_votes"].astype(np.int64),
            "n_flagged": result["n_flagged"].astype(np.int64),
            **{c: counts[:, k] for k, c in enumerate(CATEGORIES)},
            "winner": result["winner"],
            "winner_votes": result["winner_votes"].astype(np.int64),
            "other_votes": result["other_votes"].astype(np.int64),
            "action": action.astype(object),
            # numpy's stubs take the None for a missing x argument (the one-argument overload)
            "label": np.where(result["removed"], None, new_names).astype(object),  # type: ignore[attr-defined]
            "reason": result["reason"],
        }
    )
    audit["masked"] = audit["masked"].astype("boolean")
    return audit


def apply_decisions(frame: pd.DataFrame, audit: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with ``label`` and ``label_status`` set from the audit table.

    Every image starts again from ``label_original``; images the audit does not cover keep it.
    """
    decided = audit.set_index("image_id").reindex(frame["image_id"].to_numpy())
    undecided = decided["action"].isna().to_numpy()
    action = decided["action"].fillna("original").to_numpy(dtype=object)
    label = np.where(undecided, frame["label_original"].to_numpy(dtype=object), decided["label"].to_numpy(dtype=object))
    out = frame.copy()
    out["label_status"] = pd.Series(action, index=out.index, dtype=object)
    label = pd.Series(label, index=out.index, dtype=object)
    out["label"] = label.where(label.notna(), None)
    return out


def summarize(audit: pd.DataFrame) -> pd.DataFrame:
    """The inventory per masked group, like the paper's section 2.2 and Table 2.

    Columns: images, no_votes, unflagged, flagged, kept_after_flag, relabelled, removed, final
    (images left), then the final count per label. Rows: non-masked, masked, unknown (only when
    some image has no masked value), total.
    """
    no_votes = audit["n_votes"] == 0
    flagged = (audit["n_flagged"] > 0) & ~no_votes
    group = (
        audit["masked"].map(_MASKED_GROUPS, na_action="ignore").astype(object).where(audit["masked"].notna(), "unknown")
    )
    parts = pd.DataFrame(
        {
            "group": group,
            "images": 1,
            "no_votes": no_votes.astype(int),
            "unflagged": (~flagged & ~no_votes).astype(int),
            "flagged": flagged.astype(int),
            "kept_after_flag": (flagged & (audit["action"] == "original")).astype(int),
            "relabelled": (audit["action"] == "relabelled").astype(int),
            "removed": (audit["action"] == "removed").astype(int),
            "final": (audit["action"] != "removed").astype(int),
        }
    )
    for label in LABELS:
        parts[label] = (audit["label"] == label).astype(int)
    summary = parts.groupby("group", sort=False).sum()
    order = [g for g in ("non-masked", "masked", "unknown") if g in summary.index]
    summary = summary.reindex(order)
    summary.loc["total"] = summary.sum()
    summary.index.name = "group"
    return summary.astype(np.int64)


def changes(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Rows whose label or label_status differs: image_id, label/status before and after."""
    old_label = before["label"].astype(object).where(before["label"].notna(), None)
    new_label = after["label"].astype(object).where(after["label"].notna(), None)
    differs = (old_label.fillna("\0") != new_label.fillna("\0")) | (before["label_status"] != after["label_status"])
    return pd.DataFrame(
        {
            "image_id": before.loc[differs, "image_id"],
            "label_before": old_label[differs],
            "status_before": before.loc[differs, "label_status"],
            "label_after": new_label[differs],
            "status_after": after.loc[differs, "label_status"],
        }
    ).reset_index(drop=True)


# ----------------------------------------------------------------------------- workspace entry point


@dataclass
class RelabelResult:
    """What :func:`relabel` did (or would do, with ``dry_run``)."""

    dataset: str
    scheme: str
    parameters: dict[str, Any]
    audit: pd.DataFrame = field(metadata={"json": False})  # one row per voted image: in the audit file, not in --json
    summary: pd.DataFrame
    changes: pd.DataFrame
    n_votes: int
    matched_by: dict[str, int]
    skipped: list[str]
    dry_run: bool
    written: list[Path] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.summary.loc["total"].items()}


def _locate_votes(ws: Workspace, votes_path: Path | str) -> Path:
    path = Path(votes_path).expanduser()
    if not path.is_absolute() and not path.exists() and (ws.root / path).exists():
        return ws.root / path  # e.g. tables/ferplus/fer2013new.csv kept by ingest
    return path


def _write_tables(ws: Workspace, dataset: str, audit: pd.DataFrame, summary: pd.DataFrame) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .fsutil import atomic_path

    folder = ws.tables_dir(dataset)
    parquet = folder / f"{AUDIT_NAME}.parquet"
    csv = folder / f"{AUDIT_NAME}.csv"
    summary_csv = folder / SUMMARY_NAME
    with atomic_path(parquet) as tmp:
        pq.write_table(pa.Table.from_pandas(audit, preserve_index=False), tmp, compression="zstd")
    with atomic_path(csv) as tmp:
        audit.to_csv(tmp, index=False)
    with atomic_path(summary_csv) as tmp:
        summary.to_csv(tmp)
    return [parquet, csv, summary_csv]


@writes_workspace("relabel", when=lambda call: not call["dry_run"])
def relabel(
    ws: WorkspaceLike,
    votes_path: Path | str,
    *,
    dataset: str | None = None,
    scheme: str = "msd-e",
    min_agree: float = 0.5,
    max_other: float = 0.25,
    other_rule: str = "total",
    annotators: int | None = None,
    dry_run: bool = False,
    skip_unmatched: bool = False,
) -> RelabelResult:
    """Apply a voting scheme to a workspace's manifest and record it.

    Writes ``tables/<dataset>/relabel_audit.parquet`` (and ``.csv``), ``relabel_summary.csv`` and
    the manifest, each atomically, unless ``dry_run``; records ``provenance["relabel"]``. Where
    the manifest already has pairs, ``in_pe`` is refreshed from the new labels.
    """
    ws = Workspace.of(ws)
    from .pairs import refresh_in_pe
    from .schema import Manifest

    check_parameters(scheme, min_agree, max_other, other_rule, annotators)
    name = ws.dataset_name(dataset)
    manifest = ws.load(name)
    raw = read_votes(_locate_votes(ws, votes_path))
    counted = tally(raw, manifest.frame, skip_unmatched=skip_unmatched)
    audit = decide(
        manifest.frame,
        counted.endorsements,
        scheme=scheme,
        min_agree=min_agree,
        max_other=max_other,
        other_rule=other_rule,
        annotators=annotators,
    )
    frame = refresh_in_pe(apply_decisions(manifest.frame, audit))
    parameters: dict[str, Any] = {"scheme": scheme}
    if scheme == "msd-e":
        parameters |= {
            "min_agree": float(min_agree),
            "max_other": float(max_other),
            "other_rule": other_rule,
            "annotators": int(annotators) if annotators is not None else "per image (annotators who voted)",
        }
    summary = summarize(audit)
    result = RelabelResult(
        dataset=name,
        scheme=scheme,
        parameters=parameters,
        audit=audit,
        summary=summary,
        changes=changes(manifest.frame, frame),
        n_votes=counted.n_votes,
        matched_by=counted.matched_by,
        skipped=counted.skipped,
        dry_run=dry_run,
    )
    if dry_run:
        return result
    result.written = _write_tables(ws, name, audit, summary)
    votes_file = raw.path.resolve()
    try:
        votes_ref = ws.relative(votes_file)
    except ValueError:
        votes_ref = votes_file.name
    manifest.provenance["relabel"] = {
        **parameters,
        "votes_file": votes_ref,
        "votes_sha256": raw.sha256,
        "votes_form": raw.form,
        "matched_by": counted.matched_by,
        "skipped_votes_for_unknown_images": len(counted.skipped),
        "audit": ws.relative(result.written[0]),
        "counts": json.loads(json.dumps(result.counts)),
    }
    ws.save(Manifest(dataset=name, frame=frame, provenance=manifest.provenance))
    return result

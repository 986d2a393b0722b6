"""Identity-independent, label-stratified folds (pure functions on manifest frames).

The MSD-E protocol (paper, section 3.1) is 10-fold cross-validation in which no subject appears in
two folds. The authors' own fold code cut the image list at fixed offsets, so a subject whose
images straddled a boundary landed in two validation folds. Here folds are built from *groups*
that are never cut:

- a row's base group is its ``subject_id``; else its ``clip_id`` (video frames); else the
  duplicate/identity cluster the caller passes (``clusters``, computed by :mod:`ferdata.leakage`);
  else the image alone;
- groups that share a ``clip_id``, a ``pair_id`` (an image and its masked twin) or a ``sha256``
  (exact duplicates) are merged, so a clip, a pair or a duplicate is always in one fold.

Groups are then placed by a greedy balanced assignment: largest group first, each into the fold
where it lowers a weighted squared deviation from the per-fold targets the most (images per fold,
and images per label × masked stratum). Groups of one image are dealt out last by water-filling
each stratum, which is exact and vectorised; a few rounds of group swaps between folds then
polish small problems. The comparison with scikit-learn's ``StratifiedGroupKFold`` that chose
this method is in ``docs/folds.md``.

Only rows with a label take part: removed rows (``label_status == 'removed'``) get no fold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import UsageError
from .graph import connected_components, key_edges
from .leakage import DEFAULT_HAMMING, DEFAULT_IDENTITY_THRESHOLD, DEFAULT_NEIGHBOURS, DEFAULT_SIMILARITY, LeakageReport
from .progress import ProgressFn
from .schema import LABELS, labelled_rows, usable_rows
from .workspace import Workspace, WorkspaceLike, writes_workspace

METHOD = "greedy-balanced-v2"  # v2: balanced on usable rows; groups without a crop placed by name

# Weight of the image-count term against the stratum terms (which are normalised by their own
# targets, chi-square style). Fold size is what people see first, so it weighs as much as all
# strata together.
_SIZE_WEIGHT_FACTOR = 1.0
# Group swaps are O(groups^2) per round: polish only problems small enough to do it quickly.
_POLISH_MAX_GROUPS = 1000
_POLISH_ROUNDS = 30


# ----------------------------------------------------------------------------- groups


def _codes(values: pd.Series) -> np.ndarray:
    """Integer codes for a column's non-null values, -1 for null."""
    codes, _ = pd.factorize(values, use_na_sentinel=True)
    return codes.astype(np.int64)


@dataclass(frozen=True)
class Groups:
    """The unbreakable groups of the eligible rows."""

    index: pd.Index  # the eligible rows, in frame order
    group: np.ndarray  # group number per eligible row, 0..n_groups-1
    n_groups: int
    base_counts: dict[str, int]  # eligible rows whose base group came from each source
    merged: int  # base groups absorbed by pair / duplicate merges
    keys: np.ndarray  # per group: a stable name (its smallest base key, e.g. "s:<subject_id>")


def eligible_rows(frame: pd.DataFrame, within_split: str | None = None) -> pd.Series:
    """Rows that get a fold: labelled (not removed), and in ``within_split`` when given."""
    mask = labelled_rows(frame)
    if within_split is not None:
        mask &= (frame["split"] == within_split).fillna(False).astype(bool)
    return mask


def fold_groups(frame: pd.DataFrame, *, within_split: str | None = None, clusters: pd.Series | None = None) -> Groups:
    """Group the eligible rows of ``frame`` so that no group may be split between folds."""
    rows = frame.loc[eligible_rows(frame, within_split)]
    n = len(rows)
    subject = rows["subject_id"]
    clip = rows["clip_id"]
    base = pd.Series(["i:" + str(x) for x in rows["image_id"]], index=rows.index, dtype=object)
    source = pd.Series("image", index=rows.index, dtype=object)
    if clusters is not None:
        cl = clusters.reindex(rows.index)
        use = cl.notna()
        base[use] = "d:" + cl[use].astype(str)
        source[use] = "duplicate_cluster"
    use = clip.notna() & subject.isna()
    base[use] = "c:" + clip[use].astype(str)
    source[use] = "clip_id"
    use = subject.notna()
    base[use] = "s:" + subject[use].astype(str)
    source[use] = "subject_id"

    base_codes = _codes(base)
    # a clip is never cut even where its frames carry subject ids
    edges = [key_edges(base_codes), key_edges(_codes(clip))]
    edges += [key_edges(_codes(rows["pair_id"])), key_edges(_codes(rows["sha256"]))]
    labels = connected_components(n, np.concatenate([e[0] for e in edges]), np.concatenate([e[1] for e in edges]))
    group, _ = pd.factorize(labels)
    n_groups = int(group.max()) + 1 if n else 0
    n_base = int(base_codes.max()) + 1 if n else 0
    counts = source.value_counts()
    keys = pd.Series(base.to_numpy(), dtype=object).groupby(group).min().to_numpy() if n else np.zeros(0, dtype=object)
    return Groups(
        index=rows.index,
        group=group.astype(np.int64),
        n_groups=n_groups,
        base_counts={
            name: int(counts.get(name, 0)) for name in ("subject_id", "clip_id", "duplicate_cluster", "image")
        },
        merged=n_base - n_groups,
        keys=keys,
    )


def strata(frame: pd.DataFrame) -> pd.Series:
    """The stratum of each row: its label, and masked/unmasked where the rows hold both."""
    label = frame["label"].astype(object)
    masked = frame["masked"]
    if masked.notna().any() and (masked == True).any() and (masked == False).any():
        suffix = masked.map({True: "/masked", False: "/unmasked"}).astype(object).fillna("/unknown")
        return label + suffix
    return label


# ----------------------------------------------------------------------------- assignment


def _objective(F: np.ndarray, target: np.ndarray, w: np.ndarray) -> float:
    return float((((F - target) ** 2) * w).sum())


def _greedy(X: np.ndarray, k: int, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Place groups (rows of feature matrix ``X``) largest first into the best fold."""
    G = X.shape[0]
    size = X[:, -1]
    order = np.lexsort((rng.permutation(G), -size))  # largest first, random among equals
    target = X.sum(axis=0) / k
    F = np.zeros((k, X.shape[1]))
    fold = np.empty(G, dtype=np.int64)
    fold_order = rng.permutation(k)  # ties between folds break in a seeded order
    for step, g in enumerate(order):
        if step < k:  # the k largest groups open the k folds, so no fold stays empty
            f = int(fold_order[step])
        else:
            # increase of sum_j w_j (F_fj - T_j)^2 when adding x to fold f, up to a constant
            delta = (F[fold_order] - target) @ (w * X[g])
            f = int(fold_order[int(np.argmin(delta))])
        fold[g] = f
        F[f] += X[g]
    return fold


def _water_fill(level: np.ndarray, units: int, tiebreak: np.ndarray) -> np.ndarray:
    """Add ``units`` to the lowest entries of ``level`` (integer counts), raising the minimum evenly.

    Returns the units each entry gets. The few units left when the water line cannot rise by a
    whole unit everywhere go to the entries at the line with the smallest ``tiebreak``.
    """
    k = len(level)
    add = np.zeros(k, dtype=np.int64)
    if units <= 0:
        return add
    order = np.argsort(level, kind="stable")
    s = level[order]
    # cost of raising the i+1 lowest entries to s[i]
    cost = np.arange(1, k + 1) * s - np.cumsum(s)
    i = int(np.searchsorted(cost, units, side="right")) - 1
    line = s[i] + (units - cost[i]) // (i + 1)
    add = np.maximum(0, line - level).astype(np.int64)
    rest = units - int(add.sum())
    if rest > 0:
        at_line = np.flatnonzero(level + add == line)
        pick = at_line[np.argsort(tiebreak[at_line], kind="stable")][:rest]
        add[pick] += 1
    return add


def _polish(X: np.ndarray, fold: np.ndarray, k: int, w: np.ndarray) -> np.ndarray:
    """Improve the assignment by group moves and swaps between pairs of folds until none helps."""
    fold = fold.copy()
    F = np.zeros((k, X.shape[1]))
    np.add.at(F, fold, X)
    for _ in range(_POLISH_ROUNDS):
        improved = False
        for a in range(k):
            for b in range(a + 1, k):
                A_idx, B_idx = np.flatnonzero(fold == a), np.flatnonzero(fold == b)
                A, B = X[A_idx], X[B_idx]
                diff = F[a] - F[b]
                # change of sum_j w_j (F_fj - T_j)^2 when a gains d and b loses it: 2d(F_a - F_b) + 2d^2
                options = []
                if len(A_idx) > 1:  # move one group of a into b; a keeps at least one group
                    gain = (-2 * A * diff + 2 * A * A) @ w
                    i = int(np.argmin(gain))
                    options.append((gain[i], "a->b", i, -1))
                if len(B_idx) > 1:
                    gain = (2 * B * diff + 2 * B * B) @ w
                    j = int(np.argmin(gain))
                    options.append((gain[j], "b->a", -1, j))
                d = B[None, :, :] - A[:, None, :]
                gain = (2 * d * diff + 2 * d * d) @ w
                i, j = map(int, np.unravel_index(int(np.argmin(gain)), gain.shape))
                options.append((gain[i, j], "swap", i, j))
                value, kind, i, j = min(options, key=lambda o: o[0])
                if value >= -1e-9:
                    continue
                improved = True
                if kind in ("a->b", "swap"):
                    fold[A_idx[i]] = b
                    F[a] -= A[i]
                    F[b] += A[i]
                if kind in ("b->a", "swap"):
                    fold[B_idx[j]] = a
                    F[b] -= B[j]
                    F[a] += B[j]
        if not improved:
            break
    return fold


def _place(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold per group for the feature matrix ``X`` (strata one-hot counts, then size)."""
    rng = np.random.default_rng(seed)
    target = X.sum(axis=0) / k
    w = np.where(target > 0, 1.0 / np.maximum(target, 1e-12), 0.0)
    w[-1] = _SIZE_WEIGHT_FACTOR * (X.shape[1] - 1) / max(target[-1], 1e-12)
    size = X[:, -1]
    single = size == 1
    G = X.shape[0]
    fold = np.full(G, -1, dtype=np.int64)
    big = np.flatnonzero(~single)
    small = np.flatnonzero(single)
    if len(big) >= k or len(small) == 0:
        fold[big] = _greedy(X[big], k, w, rng) if len(big) else fold[big]
    else:
        # too few large groups to open every fold: let the greedy place some singletons too
        take = np.concatenate([big, rng.permutation(small)[: k - len(big)]])
        fold[take] = _greedy(X[take], k, w, rng)
        small = np.setdiff1d(small, take)
    if len(small):
        F = np.zeros((k, X.shape[1]))
        placed = fold >= 0
        np.add.at(F, fold[placed], X[placed])
        stratum_of = np.argmax(X[small, :-1], axis=1)
        sizes = F[:, -1].copy()
        # deal the biggest strata first; the size tie-break then evens out the remainders
        for s in np.argsort(-np.bincount(stratum_of, minlength=X.shape[1] - 1), kind="stable"):
            members = small[stratum_of == s]
            if not len(members):
                continue
            add = _water_fill(F[:, s], len(members), sizes + rng.random(k) * 1e-3)
            fold[rng.permutation(members)] = np.repeat(np.arange(k), add)
            F[:, s] += add
            sizes += add
    if G <= _POLISH_MAX_GROUPS:
        fold = _polish(X, fold, k, w)
    return fold


def assign_folds(
    frame: pd.DataFrame,
    k: int,
    *,
    seed: int = 0,
    within_split: str | None = None,
    clusters: pd.Series | None = None,
) -> pd.Series:
    """Fold per row (``Int64``), NA for rows without a label or outside ``within_split``.

    Pure: the same frame, ``k`` and ``seed`` always give the same folds. ``clusters`` (a series on
    ``frame.index``, e.g. near-duplicate or identity clusters from :mod:`ferdata.leakage`) groups
    rows that have neither ``subject_id`` nor ``clip_id``.
    """
    groups = fold_groups(frame, within_split=within_split, clusters=clusters)
    return _assign(frame, groups, k, seed=seed, within_split=within_split)


def _check_k(groups: Groups, k: int, within_split: str | None) -> None:
    if k < 2:
        raise UsageError(f"k must be 2 or more (got {k}): cross-validation needs at least two folds")
    if groups.n_groups == 0:
        where = f" in split {within_split!r}" if within_split else ""
        raise UsageError(
            f"no labelled rows{where} to fold: every image is removed or unlabelled; "
            "run ferdata ingest (and ferdata relabel) first, or choose another --within-split"
        )
    if k > groups.n_groups:
        raise UsageError(
            f"k={k} is larger than the number of identity groups ({groups.n_groups}): "
            f"choose k={groups.n_groups} or fewer"
        )


def hashed_fold(keys: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A fold per group name that depends on nothing but the name, ``k`` and ``seed``."""
    import hashlib

    return np.array(
        [int.from_bytes(hashlib.sha256(f"{seed}/{key}".encode()).digest()[:8], "big") % k for key in keys],
        dtype=np.int64,
    )


def _assign(frame: pd.DataFrame, groups: Groups, k: int, *, seed: int, within_split: str | None) -> pd.Series:
    """Balance the groups holding usable rows on those rows; place the others by their name.

    Groups with at least one usable row (label and face crop) are placed by :func:`_place` on
    their usable rows only, so the folds are even in what is trained on and published, and adding
    or removing rows without a crop never moves them. Groups without any usable row get
    :func:`hashed_fold` of their name: a later ``align`` that gives them crops does not reshuffle
    anything. When no row has a crop yet (alignment not run), every labelled row counts.
    """
    _check_k(groups, k, within_split)
    rows = frame.loc[groups.index]
    usable = usable_rows(rows).to_numpy()
    counted = usable if usable.any() else np.ones(len(rows), dtype=bool)
    with_rows = np.bincount(groups.group[counted], minlength=groups.n_groups) > 0
    if with_rows.sum() < k:
        raise UsageError(
            f"k={k} is larger than the number of identity groups with a face crop ({int(with_rows.sum())}): "
            f"choose k={int(with_rows.sum())} or fewer, or align more images (ferdata align)"
        )
    balanced = np.flatnonzero(with_rows)
    position = np.full(groups.n_groups, -1, dtype=np.int64)
    position[balanced] = np.arange(len(balanced))
    stratum = _codes(strata(rows[counted]))
    n_strata = int(stratum.max()) + 1
    X = np.zeros((len(balanced), n_strata + 1))
    np.add.at(X, (position[groups.group[counted]], stratum), 1.0)
    X[:, -1] = X[:, :-1].sum(axis=1)
    per_group = hashed_fold(groups.keys, k, seed)
    per_group[balanced] = _place(X, k, seed)
    fold = pd.Series(pd.NA, index=frame.index, dtype="Int64")
    fold.loc[groups.index] = per_group[groups.group]
    return fold


# ----------------------------------------------------------------------------- balance


def balance_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per fold: images, its deviation from the mean fold size, subjects, images per label, masked.

    The images counted are the usable ones (label and face crop: what is trained on and
    published), with ``without_crop`` the fold's other rows; when no row has a crop yet, every
    labelled row counts and there is no ``without_crop`` column. One row per fold (rows without a
    fold are left out). ``deviation`` is ``images / mean(images) - 1``; :func:`max_deviation`
    gives the largest one in absolute value.
    """
    folded = frame.loc[frame["fold"].notna()]
    usable = usable_rows(folded)
    rows = folded[usable] if usable.any() else folded
    labels = [x for x in LABELS if (rows["label"] == x).any()]
    extra = ["without_crop"] if usable.any() else []
    if rows.empty:
        return pd.DataFrame(columns=["fold", "images", "deviation", "subjects", *labels, "masked", *extra])
    by = rows.groupby(rows["fold"].astype(int), sort=True)
    folds = np.sort(folded["fold"].astype(int).unique())
    table = pd.DataFrame({"images": by.size()}).reindex(folds, fill_value=0)
    table["deviation"] = table["images"] / table["images"].mean() - 1.0
    table["subjects"] = by["subject_id"].nunique().reindex(folds, fill_value=0)
    for label in labels:
        table[label] = by["label"].apply(lambda s, x=label: int((s == x).sum())).reindex(folds, fill_value=0)
    table["masked"] = by["masked"].apply(lambda s: int((s == True).sum())).reindex(folds, fill_value=0)
    if extra:
        table["without_crop"] = (
            folded[~usable].groupby(folded.loc[~usable, "fold"].astype(int)).size().reindex(folds, fill_value=0)
        )
    table.index.name = "fold"
    return table.reset_index()


def max_deviation(table: pd.DataFrame) -> float:
    """Largest |fold size / mean fold size - 1| in a :func:`balance_table`."""
    return float(table["deviation"].abs().max()) if len(table) else 0.0


# ----------------------------------------------------------------------------- workspace entry point


@dataclass
class FoldsResult:
    """What :func:`make_folds` did: the balance table, the groups it used, and the leakage report."""

    dataset: str
    k: int
    seed: int
    balance: pd.DataFrame
    provenance: dict
    leakage: LeakageReport
    balance_path: str  # relative to the workspace

    @property
    def max_deviation(self) -> float:
        return max_deviation(self.balance)


@writes_workspace("folds")
def make_folds(
    ws: WorkspaceLike,
    k: int,
    *,
    dataset: str | None = None,
    seed: int = 0,
    within_split: str | None = None,
    hamming: int = DEFAULT_HAMMING,
    neighbours: int = DEFAULT_NEIGHBOURS,
    similarity: float = DEFAULT_SIMILARITY,
    identity_model: str | os.PathLike[str] | None = None,
    identity_threshold: float = DEFAULT_IDENTITY_THRESHOLD,
    strict: bool = False,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> FoldsResult:
    """Assign folds in a workspace's manifest, then check them for leakage.

    Rows without ``subject_id`` or ``clip_id`` are grouped by exact and *verified* near-duplicate
    clusters (and identity clusters when ``identity_model`` is given) so that a duplicate never
    spans two folds; undecidable pairs never join groups. Folds are balanced on the usable rows
    (see :func:`_assign`). Writes the ``fold`` column and ``provenance['folds']``, ``tables/<dataset>/folds_balance.csv``
    and the leakage report; with ``strict``, raises :class:`~ferdata.errors.LeakageFound` after
    writing everything when leaks remain (for instance duplicates between two subjects, or between
    the folded split and a fixed test split).
    """
    ws = Workspace.of(ws)
    from pathlib import Path

    from . import leakage
    from .fsutil import atomic_path

    manifest = ws.load(dataset)
    frame = manifest.frame.reset_index(drop=True)
    # cheap checks first: duplicate clusters can only lower the number of groups
    _check_k(fold_groups(frame, within_split=within_split), k, within_split)
    model = Path(identity_model) if identity_model is not None else None
    evidence, counts = leakage.gather_evidence(
        ws,
        manifest.dataset,
        frame,
        hamming=hamming,
        neighbours=neighbours,
        similarity=similarity,
        identity_model=model,
        identity_threshold=identity_threshold,
        workers=workers,
        progress=progress,
    )
    folded = np.flatnonzero(eligible_rows(frame, within_split).to_numpy())
    clusters = pd.Series(evidence.clusters(folded), index=frame.index)
    groups = fold_groups(frame, within_split=within_split, clusters=clusters)
    frame["fold"] = _assign(frame, groups, k, seed=seed, within_split=within_split)

    report = leakage.report_from(
        ws,
        manifest.dataset,
        frame,
        evidence,
        counts,
        hamming=hamming,
        neighbours=neighbours,
        similarity=similarity,
        identity_model=model,
        identity_threshold=identity_threshold,
    )
    balance = balance_table(frame)
    usable = usable_rows(frame.loc[groups.index]).to_numpy()
    any_usable = bool(usable.any())
    groups_with_crop = (
        int((np.bincount(groups.group[usable], minlength=groups.n_groups) > 0).sum()) if any_usable else groups.n_groups
    )
    provenance = {
        "k": k,
        "seed": seed,
        "method": METHOD,
        "within_split": within_split,
        "groups": groups.n_groups,
        "groups_from": groups.base_counts,
        "groups_merged_by_pairs_and_duplicates": groups.merged,
        "stratified_by": "label+masked" if strata(frame.loc[groups.index]).str.contains("/").any() else "label",
        "balanced_on": "usable rows (label and face crop)" if any_usable else "labelled rows (no face crop yet)",
        "rows_without_crop": int((~usable).sum()) if any_usable else 0,
        "groups_placed_by_name": groups.n_groups - groups_with_crop,
        "hamming": hamming,
        "neighbours": neighbours,
        "similarity": similarity,
        "identity_model": str(model) if model is not None else None,
        "identity_threshold": identity_threshold if model is not None else None,
        "max_deviation": round(max_deviation(balance), 6),
        "leakage": report.summary(),
    }
    manifest.frame = frame
    manifest.provenance["folds"] = provenance
    ws.save(manifest)
    balance_path = ws.tables_dir(manifest.dataset) / "folds_balance.csv"
    with atomic_path(balance_path) as tmp:
        balance.to_csv(tmp, index=False)
    result = FoldsResult(
        dataset=manifest.dataset,
        k=k,
        seed=seed,
        balance=balance,
        provenance=provenance,
        leakage=report,
        balance_path=ws.relative(balance_path),
    )
    if strict:
        report.raise_if_found()
    return result

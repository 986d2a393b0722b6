"""Reading annotator votes and turning them into a tidy endorsement table.

Three forms are read, from CSV (``.csv``, ``.tsv``) or Parquet (``.parquet``, ``.pq``):

long
    one row per image × annotator: ``image, annotator, vote``
wide
    one row per image, one column per annotator: ``image, ann1, ann2, ...``
FER+ count matrix
    ``fer2013new.csv`` (microsoft/FERPlus): ``Usage, Image name, neutral, happiness, surprise,
    sadness, anger, disgust, fear, contempt, unknown, NF``, one row per FER2013 row, in order.

A ``vote`` is a label name (canonical, or FER+'s ``happiness``/``sadness``/``anger``), empty or
``ok`` for "not flagged" (the annotator endorses the original label), ``flag``/``none``/
``unknown`` for "flagged without naming a class", or ``nf``/``not_face`` for "not a face".

:func:`tally` matches the votes to a manifest and counts them into an *endorsement table*: one
row per voted image (index ``image_id``), one integer column per category in
:data:`CATEGORIES` (the labels, then ``unknown`` and ``not_face``). An unflagged vote counts for
the image's ``label_original``. Images are matched by ``image_id``, then by full ``source``, then
by the source's file name, then by its stem (the last two only where they name one image).

FER+ rows are matched by position: row N of ``fer2013new.csv`` belongs to the image whose source
is ``<csv>#row=N``. FER+'s ``Image name`` is *not* the row number (names skip the rows FER+
dropped), so name matching is used only for manifests built from FER+'s own PNG folders.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import VotesError, shown
from .schema import LABELS

UNKNOWN = "unknown"
NOT_FACE = "not_face"
CATEGORIES: tuple[str, ...] = (*LABELS, UNKNOWN, NOT_FACE)
_ORIGINAL = len(CATEGORIES)  # code of an unflagged vote: resolved per image to its original label

# FER+ column -> category (the column order of fer2013new.csv)
FERPLUS_COLUMNS: dict[str, str] = {
    "neutral": "neutral",
    "happiness": "happy",
    "surprise": "surprise",
    "sadness": "sad",
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "contempt": "contempt",
    "unknown": UNKNOWN,
    "nf": NOT_FACE,
}
# FER+ Usage -> the splits an ingest may have given that row
_FERPLUS_USAGE = {"training": {"train"}, "publictest": {"val", "test"}, "privatetest": {"test"}}

_UNFLAGGED = ("", "ok", "keep", "original", "-")
_FLAG_ONLY = ("flag", "flagged", "none", "unknown", "?")
_NOT_FACE = ("nf", "not_face", "no_face", "notface", "not a face")
_ALIASES = {
    "happiness": "happy",
    "sadness": "sad",
    "anger": "angry",
    "surprised": "surprise",
    "fearful": "fear",
    "disgusted": "disgust",
    "angry": "angry",
}
VOTE_WORDS: dict[str, int] = {
    **{label: CATEGORIES.index(label) for label in LABELS},
    **{alias: CATEGORIES.index(label) for alias, label in _ALIASES.items()},
    **{word: _ORIGINAL for word in _UNFLAGGED},
    **{word: CATEGORIES.index(UNKNOWN) for word in _FLAG_ONLY},
    **{word: CATEGORIES.index(NOT_FACE) for word in _NOT_FACE},
}

_IMAGE_COLUMNS = ("image", "image_id", "image name", "image_name", "file", "filename", "file_name", "path")
_ANNOTATOR_COLUMNS = ("annotator", "volunteer", "rater", "annotator_id", "worker")
_VOTE_COLUMNS = ("vote", "new_label", "label", "flag")
_ROW_SOURCE = re.compile(r"^(?P<file>.*)#row=(?P<row>\d+)$")
_SHOW = 5  # offenders named in an error message


@dataclass(frozen=True)
class RawVotes:
    """A votes file as read, before matching: ``form`` is ``long``, ``wide`` or ``ferplus``.

    long and wide: ``table`` has str columns ``image``, ``annotator``, ``vote`` (wide files are
    melted). ferplus: ``table`` has ``image`` (may be empty), ``row``, ``usage`` and one int
    column per category.
    """

    path: Path
    form: str
    table: pd.DataFrame
    sha256: str
    annotator_columns: tuple[str, ...] = ()


@dataclass
class Tally:
    """Votes matched to a manifest: the endorsement table and how it was matched."""

    endorsements: pd.DataFrame
    form: str
    n_votes: int
    matched_by: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def _offenders(items: list[str]) -> str:
    """The first few offenders (each cut to a readable length), and how many more there are."""
    listed = ", ".join(item if len(item) <= 80 else shown(item, 80) for item in items[:_SHOW])
    return listed + (f" and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- reading


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
            return frame.rename(columns=str)
        sep = "\t" if suffix == ".tsv" else ","
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise VotesError(f"votes file {path} is empty: pass the file the annotators filled in") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise VotesError(f"cannot read votes file {path}: {exc}".splitlines()[0]) from None


def _as_text(series: pd.Series, strip: bool = True) -> pd.Series:
    """Strings (missing values become the empty string), stripped of surrounding spaces."""
    if not isinstance(series.dtype, pd.StringDtype):
        series = series.where(series.notna(), "").astype(str)
    series = series.fillna("")
    return series.str.strip() if strip else series


def _factorize_text(series: pd.Series, lower: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Codes and distinct values of a text column, compared after stripping spaces (and lower-casing).

    Only the distinct values are cleaned, which keeps a million-row column cheap.
    """
    codes, distinct = pd.factorize(series, sort=False)
    missing = [""] if (codes < 0).any() else []
    clean = pd.Series([*np.asarray(distinct, dtype=object), *missing], dtype=object).astype(str).str.strip()
    if lower:
        clean = clean.str.lower()
    merged, values = pd.factorize(clean, sort=False)
    codes = np.where(codes < 0, len(distinct), codes)
    return merged[codes], np.asarray(values, dtype=object)


def _find(columns: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((columns[n] for n in names if n in columns), None)


def read_votes(path: Path | str) -> RawVotes:
    """Read a votes file in any of the three forms (see the module docstring), or a folder of
    long or wide files (see :func:`read_votes_folder`)."""
    path = Path(path)
    if path.is_dir():
        return read_votes_folder(path)
    if not path.is_file():
        raise VotesError(f"votes file {path} does not exist: check the path")
    frame = _read_table(path)
    if frame.empty:
        raise VotesError(f"votes file {path} holds no votes (only a header): pass the file the annotators filled in")
    columns = {str(c).strip().lower(): c for c in frame.columns}
    sha = _file_sha256(path)

    if set(FERPLUS_COLUMNS) <= set(columns):
        return RawVotes(path, "ferplus", _ferplus_table(path, frame, columns), sha)

    image_col = _find(columns, _IMAGE_COLUMNS)
    annotator_col = _find(columns, _ANNOTATOR_COLUMNS)
    vote_col = _find(columns, _VOTE_COLUMNS)
    if image_col is not None and annotator_col is not None and vote_col is not None:
        table = pd.DataFrame(
            {
                "image": _as_text(frame[image_col], strip=False),
                "annotator": _as_text(frame[annotator_col], strip=False),
                "vote": _as_text(frame[vote_col], strip=False),
            }
        )
        return RawVotes(path, "long", table, sha)

    _check_columns(path, columns, image_col, annotator_col, vote_col)
    annotators = tuple(c for c in frame.columns if c != image_col)
    if not annotators:
        raise VotesError(
            f"votes file {path} has no annotator columns: give either image,annotator,vote columns "
            "(long form) or one column per annotator (wide form)"
        )
    images = _as_text(frame[image_col])
    dup = images[images.duplicated(keep=False)].unique().tolist()
    if dup:
        raise VotesError(f"votes file {path} lists these images on several rows (duplicate votes): {_offenders(dup)}")
    votes = np.concatenate([_as_text(frame[c]).to_numpy(dtype=object) for c in annotators])
    table = pd.DataFrame(
        {
            "image": np.tile(images.to_numpy(dtype=object), len(annotators)),
            "annotator": np.repeat(np.array([str(c) for c in annotators], dtype=object), len(frame)),
            "vote": votes,
        }
    )
    return RawVotes(path, "wide", table, sha, tuple(str(c) for c in annotators))


_FOLDER_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def read_votes_folder(folder: Path | str) -> RawVotes:
    """Every votes file directly in ``folder`` (e.g. ``votes/<annotator>.csv`` as ``ferdata review``
    writes them), long or wide, read as one: the annotators of all files together.

    Hidden files (a writer's temporary ``.tmp-*``) are skipped. A FER+ count matrix has no
    annotators to combine, so it is refused here. Two files with a vote by the same annotator for
    the same image are refused by :func:`tally`, as two such rows in one file are.
    """
    folder = Path(folder)
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in _FOLDER_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise VotesError(
            f"votes folder {folder} holds no votes files ({', '.join(_FOLDER_SUFFIXES)}): "
            "pass the folder the annotators' files are in, or one file"
        )
    parts = [read_votes(p) for p in files]
    ferplus = [p.path.name for p in parts if p.form == "ferplus"]
    if ferplus:
        raise VotesError(f"votes folder {folder} holds a FER+ count matrix ({ferplus[0]}): pass that file alone")
    digest = hashlib.sha256("".join(f"{p.path.name}\0{p.sha256}\n" for p in parts).encode())
    forms = "+".join(sorted({p.form for p in parts}))
    return RawVotes(
        folder,
        forms,
        pd.concat([p.table for p in parts], ignore_index=True),
        digest.hexdigest(),
        tuple(a for p in parts for a in p.annotator_columns),
    )


_FORMS = (
    "give either image, annotator, vote columns (long form), an image column and one column per annotator "
    "(wide form), or FER+'s fer2013new.csv as published"
)


def _check_columns(path: Path, columns: dict[str, str], image_col, annotator_col, vote_col) -> None:
    """Refuse a file whose columns fit no form, rather than read some other column as image names."""
    have = _offenders([repr(c) for c in columns.values()])
    ferplus = [c for c in FERPLUS_COLUMNS if c in columns]
    if len(ferplus) >= 3:  # most of FER+'s count columns: a damaged or edited fer2013new.csv
        missing = ", ".join(c for c in FERPLUS_COLUMNS if c not in columns)
        raise VotesError(
            f"votes file {path} looks like FER+'s fer2013new.csv but lacks the columns {missing}: pass the file as published"
        )
    if image_col is None:
        raise VotesError(
            f"votes file {path} has no image column (its columns: {have}): call the column of image names image "
            f"(or image_id, file, path); {_FORMS}"
        )
    if (annotator_col is None) != (vote_col is None):
        lacking = "vote" if vote_col is None else "annotator"
        raise VotesError(
            f"votes file {path} has image and {'annotator' if vote_col is None else 'vote'} columns but no {lacking} "
            f"column (its columns: {have}): {_FORMS}"
        )


def _ferplus_table(path: Path, frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    image_col = _find(columns, ("image name", "image", "image_name"))
    usage_col = _find(columns, ("usage",))
    table = pd.DataFrame(
        {
            "image": _as_text(frame[image_col]) if image_col is not None else "",
            "row": np.arange(len(frame), dtype=np.int64),
            "usage": _as_text(frame[usage_col]).str.lower() if usage_col is not None else "",
        }
    )
    bad_rows: list[int] = []
    for name, category in FERPLUS_COLUMNS.items():
        counts = pd.to_numeric(frame[columns[name]], errors="coerce")
        bad = counts.isna() | (counts < 0) | (counts % 1 != 0)
        bad_rows.extend(np.flatnonzero(bad.to_numpy()).tolist())
        table[category] = counts.fillna(0).astype(np.int64)
    if bad_rows:
        rows = sorted(set(bad_rows))
        raise VotesError(
            f"votes file {path} has vote counts that are not whole numbers ≥ 0 on rows "
            f"{_offenders([str(r) for r in rows])}: fix those rows"
        )
    return table[[*("image", "row", "usage"), *CATEGORIES]]


# ----------------------------------------------------------------------------- matching


class _Resolver:
    """Looks up vote keys in a manifest: image_id, then source, file name, stem (unique ones only)."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def _candidates(self, rule: str) -> pd.Series:
        sources = self.frame["source"].astype(str)
        if rule == "source":
            return sources
        names = sources.str.rsplit("/", n=1).str[-1]
        return names if rule == "file name" else names.str.replace(r"\.[^.]*$", "", regex=True)

    def resolve(self, keys: np.ndarray) -> tuple[np.ndarray, list[str], list[str], dict[str, int]]:
        """Positions of ``keys`` in the manifest (-1 where none), unmatched, ambiguous, counts by rule."""
        keys = np.asarray(keys, dtype=object)
        positions = pd.Index(self.frame["image_id"].to_numpy(dtype=object)).get_indexer(keys)
        matched_by = {"image_id": int((positions >= 0).sum())}
        ambiguous: dict[str, str] = {}
        for rule in ("source", "file name", "file stem"):
            todo = np.flatnonzero(positions < 0)
            if not len(todo):
                break
            candidates = self._candidates(rule)
            clashing = candidates.duplicated(keep=False).to_numpy()
            unique = pd.Index(candidates.to_numpy(dtype=object)[~clashing])
            found = unique.get_indexer(keys[todo])
            rows = np.flatnonzero(~clashing)
            positions[todo[found >= 0]] = rows[found[found >= 0]]
            matched_by[rule] = int((found >= 0).sum())
            if clashing.any():
                sources_of: dict[str, list[str]] = {}
                for key, source in zip(
                    candidates.to_numpy(dtype=object)[clashing],
                    self.frame["source"].to_numpy(dtype=object)[clashing],
                    strict=True,
                ):
                    sources_of.setdefault(key, []).append(source)
                for key in keys[todo[found < 0]]:
                    if key in sources_of and key not in ambiguous:
                        ambiguous[key] = " or ".join(sources_of[key][:2])
        missing = keys[positions < 0]
        unmatched = [key for key in missing if key not in ambiguous]
        shown = [f"{key} ({clash})" for key, clash in ambiguous.items()]
        return positions, unmatched, shown, {k: v for k, v in matched_by.items() if v}


def _check_matches(path: Path, unmatched: list[str], ambiguous: list[str], skip_unmatched: bool) -> None:
    if ambiguous:
        raise VotesError(
            f"votes file {path} names images ambiguously: {_offenders(ambiguous)}; "
            "name them by image_id or by their full source path"
        )
    if unmatched and not skip_unmatched:
        raise VotesError(
            f"votes file {path} names {len(unmatched)} images that are not in the manifest: "
            f"{_offenders([key or '(empty name)' for key in unmatched])}; check dataset=, "
            "or pass skip_unmatched=True to ignore them"
        )


def tally(raw: RawVotes, frame: pd.DataFrame, *, skip_unmatched: bool = False) -> Tally:
    """Match ``raw`` to the manifest ``frame`` and count endorsements per image and category."""
    if raw.form == "ferplus":
        return _tally_ferplus(raw, frame, skip_unmatched)
    table = raw.table
    keys, unique_keys = _factorize_text(table["image"])
    positions, unmatched, ambiguous, matched_by = _Resolver(frame).resolve(unique_keys)
    _check_matches(raw.path, unmatched, ambiguous, skip_unmatched)
    image_pos = positions[keys]
    keep = image_pos >= 0

    words, unique_words = _factorize_text(table["vote"], lower=True)
    word_codes = np.array([VOTE_WORDS.get(w, -1) for w in unique_words], dtype=np.int64)
    unknown = [w for w, c in zip(unique_words, word_codes, strict=True) if c < 0]
    if unknown:
        raise VotesError(
            f"votes file {raw.path} holds votes that are not label names: {_offenders([repr(w) for w in unknown])}; "
            f"use one of {', '.join(LABELS)}, empty/ok (not flagged), flag/none (flagged, no class) or nf"
        )
    codes = word_codes[words][keep]
    annotator_codes, annotators = _factorize_text(table["annotator"])
    image_pos, annotator_codes = image_pos[keep], annotator_codes[keep]
    pair = pd.Series(image_pos * max(len(annotators), 1) + annotator_codes)
    dup = pair.duplicated(keep=False).to_numpy()
    if dup.any():
        ids = frame["image_id"].to_numpy(dtype=object)
        shown = pd.unique(
            pd.Series(ids[image_pos[dup]], dtype=object)
            + " × "
            + pd.Series(annotators[annotator_codes[dup]], dtype=object)
        ).tolist()
        raise VotesError(
            f"votes file {raw.path} has several votes by the same annotator for one image: "
            f"{_offenders(shown)}; keep one vote per image and annotator"
        )

    original = pd.Categorical(frame["label_original"], categories=CATEGORIES).codes.astype(np.int64)
    codes = np.where(codes == _ORIGINAL, original[image_pos], codes)
    return Tally(
        endorsements=_count(frame, image_pos, codes, None),
        form=raw.form,
        n_votes=int(len(codes)),
        matched_by=matched_by,
        skipped=unmatched,
    )


def _count(frame: pd.DataFrame, image_pos: np.ndarray, codes: np.ndarray, weights: np.ndarray | None) -> pd.DataFrame:
    """The endorsement table of the images that received at least one vote."""
    n_cat = len(CATEGORIES)
    flat = np.bincount(image_pos * n_cat + codes, weights=weights, minlength=len(frame) * n_cat)
    matrix = flat.reshape(len(frame), n_cat).astype(np.int64)
    voted = np.zeros(len(frame), dtype=bool)
    voted[image_pos] = True
    index = pd.Index(frame["image_id"].to_numpy(dtype=object)[voted], name="image_id")
    return pd.DataFrame(matrix[voted], index=index, columns=list(CATEGORIES))


def _tally_ferplus(raw: RawVotes, frame: pd.DataFrame, skip_unmatched: bool) -> Tally:
    table = raw.table
    parsed = frame["source"].str.extract(_ROW_SOURCE)
    has_row = parsed["row"].notna()
    if has_row.any():
        files = sorted(parsed.loc[has_row, "file"].unique())
        if len(files) > 1:
            raise VotesError(
                f"the manifest's images come from several CSV files ({_offenders(files)}) but the FER+ votes "
                f"in {raw.path} are row-aligned with one fer2013.csv: ingest fer2013.csv alone"
            )
        by_row = pd.Series(
            np.flatnonzero(has_row.to_numpy()), index=parsed.loc[has_row, "row"].astype(np.int64).to_numpy()
        )
        positions = by_row.reindex(table["row"].to_numpy()).fillna(-1).astype(np.int64).to_numpy()
        unmatched_mask = positions < 0
        skipped = [f"row {r}" for r in table["row"].to_numpy()[unmatched_mask]]
        _check_matches(raw.path, skipped, [], skip_unmatched)
        matched_by = {"csv row": int((~unmatched_mask).sum())}
        _check_usage(raw, frame, table, positions)
    else:
        # FER+'s own PNG folders: only named rows have a file; unnamed rows are images FER+ dropped.
        # A few names occur on two rows (fer0033120.png ...); FER+'s generator writes both rows to
        # the same file, so the file holds the later row's image: its votes are the ones kept.
        table = table[table["image"] != ""]
        table = table[~table["image"].duplicated(keep="last")]
        positions, unmatched, ambiguous, matched_by = _Resolver(frame).resolve(table["image"].to_numpy(dtype=object))
        _check_matches(raw.path, unmatched, ambiguous, skip_unmatched)
        skipped = unmatched
    keep = positions >= 0
    counts = table.loc[keep, list(CATEGORIES)].to_numpy(dtype=np.int64)
    image_pos = np.repeat(positions[keep], len(CATEGORIES))
    codes = np.tile(np.arange(len(CATEGORIES)), int(keep.sum()))
    return Tally(
        endorsements=_count(frame, image_pos, codes, counts.ravel().astype(np.float64)),
        form=raw.form,
        n_votes=int(counts.sum()),
        matched_by=matched_by,
        skipped=skipped,
    )


def _check_usage(raw: RawVotes, frame: pd.DataFrame, table: pd.DataFrame, positions: np.ndarray) -> None:
    """Row alignment is only right if FER+'s Usage agrees with the split ingest recorded."""
    matched = positions >= 0
    if not matched.any() or (table["usage"] == "").all():
        return
    splits = frame["split"].to_numpy(dtype=object)[positions[matched]]
    usage = table["usage"].to_numpy(dtype=object)[matched]
    wrong = [
        f"row {row} ({u} vs {s})"
        for row, u, s in zip(table["row"].to_numpy()[matched], usage, splits, strict=True)
        if s is not None and u in _FERPLUS_USAGE and s not in _FERPLUS_USAGE[u]
    ]
    if wrong:
        raise VotesError(
            f"the FER+ votes in {raw.path} are not row-aligned with the ingested CSV (Usage differs from the "
            f"split on {_offenders(wrong)}): ingest the original fer2013.csv"
        )

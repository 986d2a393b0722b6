"""The review page's library side: what it shows and what it writes, without any web framework.

A :class:`ReviewSession` reads one dataset's manifest (again whenever the file changes on disk),
answers the page's questions (a page of images under filters and an order, one image's detail)
and records a person's decisions: votes in ``votes/<annotator>.csv`` (:mod:`.votebook`) and tag
changes in the manifest, with origin ``review``, under the workspace lock.

Speed on large manifests: everything a filter or an order needs is computed once per manifest
read (facet codes, tag masks, sort orders), so a page costs a few vectorised comparisons and a
slice, not a pass over the rows in Python; selections are cached until the manifest or the votes
change. ``benchmarks/review_bench.py`` measures a page against a read of the manifest.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UsageError
from ..schema import FACE_STATUSES, LABEL_STATUSES, LABELS, OCCLUSION_TAGS, SPLITS, Manifest
from ..tags import AUTO, REVIEW, SOURCE, add_tag, remove_tag, tag_origins
from ..votes import NOT_FACE
from .evidence import find_scores, jsonable, read_leak_pairs, read_scores
from .votebook import VOTES_FOLDER, VoteBook, stamp_of, votes_files

FLAG = "flag"  # flagged without naming a class (MSD-E: endorses nothing)


class UnknownImage(KeyError):
    """An image id that the manifest does not hold (the server answers 404)."""


AUTO_MASK = "auto_mask"  # tag filter: a mask tag that `ferdata tag auto` set
MAX_LIMIT = 500
DEFAULT_LIMIT = 120
# Facets: filters whose values are the distinct values of one column (null shown as a word).
FACETS: dict[str, tuple[str, str]] = {
    "label": ("label", "removed"),
    "label_original": ("label_original", "none"),
    "label_status": ("label_status", "none"),
    "masked": ("masked", "unknown"),
    "split": ("split", "none"),
    "fold": ("fold", "none"),
    "face_status": ("face_status", "none"),
}
FILTERS = (*FACETS, "tag", "leak", "vote")
# Orders offered besides the manifest's own: columns, then the score table's numbers.
ORDER_COLUMNS = ("image_id", "label", "subject_id", "fold", "det_score", "mask_score")
_ITEM_COLUMNS = ("label", "label_original", "label_status", "masked", "split", "fold", "face_status")
_CACHED_SELECTIONS = 32


def _word(value: Any) -> str:
    """A cell as a filter word: booleans as true/false, numbers as written."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return str(value)


def _facet(series: pd.Series, null: str) -> tuple[np.ndarray, list[str]]:
    """Codes per row and the words they stand for (null shown as ``null``); only the distinct
    values are turned into words, which keeps a 100,000-row column cheap."""
    codes, distinct = pd.factorize(series, sort=False)
    words = [_word(v) for v in distinct] + [null]
    return np.where(codes < 0, len(distinct), codes), words


@dataclass
class _Loaded:
    """One read of the manifest and everything derived from it for filtering and ordering."""

    manifest: Manifest
    stamp: tuple
    ids: np.ndarray
    position: pd.Index
    facets: dict[str, tuple[np.ndarray, list[str]]]
    tags: dict[str, np.ndarray]
    leaks: pd.DataFrame
    has_leak: np.ndarray
    scores: pd.DataFrame  # extra columns aligned with the rows
    columns: dict[str, Any]  # per row, the values an item shows (object arrays and lists)
    orders: dict[tuple[str, bool], np.ndarray] = field(default_factory=dict)


class ReviewSession:
    """The state behind one review server: a workspace, a dataset and an annotator."""

    def __init__(
        self, ws, *, dataset: str | None = None, annotator: str = "annotator", scores: Path | str | None = None
    ):
        self.ws = ws
        self.dataset = ws.dataset_name(dataset)
        self.votes = VoteBook(ws.root / VOTES_FOLDER, annotator)
        self.annotator = self.votes.annotator
        self.cache_dir = ws.internal / "review" / self.dataset
        self._scores_path = find_scores(ws, self.dataset, scores)
        self._lock = threading.RLock()
        self._loaded: _Loaded | None = None
        self._selections: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._others: tuple[tuple, dict[str, list[dict[str, str]]]] = ((), {})
        self._scores_table: pd.DataFrame | None = None
        self.current()  # fail now, not on the first request, if the manifest cannot be read

    # ------------------------------------------------------------------------- the manifest

    def _stamp(self) -> tuple:
        st = self.ws.manifest_path(self.dataset).stat()
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def current(self) -> _Loaded:
        """The manifest as it is on disk now (read again only when the file changed)."""
        with self._lock:
            stamp = self._stamp()
            if self._loaded is None or self._loaded.stamp != stamp:
                self._adopt(self.ws.load(self.dataset), stamp)
            assert self._loaded is not None  # _adopt sets it
            return self._loaded

    def _adopt(self, manifest: Manifest, stamp: tuple) -> None:
        if self._scores_table is None:
            try:
                self._scores_table = read_scores(self._scores_path, list(manifest.frame.columns))
            except ValueError as exc:
                raise UsageError(f"scores: {exc}") from None
        frame = manifest.frame.reset_index(drop=True)
        manifest = Manifest(manifest.dataset, frame, manifest.provenance)
        ids = frame["image_id"].to_numpy(dtype=object)
        facets = {}
        for name, (column, null) in FACETS.items():
            facets[name] = _facet(frame[column], null)
        maps = tag_origins(frame)
        tags = {tag: np.fromiter((tag in m for m in maps), bool, len(maps)) for tag in OCCLUSION_TAGS}
        tags[AUTO_MASK] = np.fromiter((m.get("mask") == AUTO for m in maps), bool, len(maps))
        leaks = read_leak_pairs(self.ws.tables_dir(self.dataset))
        leaks = leaks[leaks["image_id"].isin(frame["image_id"])]
        has_leak = frame["image_id"].isin(leaks["image_id"]).to_numpy()
        scores = self._scores_table.reindex(frame["image_id"]).reset_index(drop=True)
        columns: dict[str, Any] = {c: frame[c].to_numpy(dtype=object) for c in (*_ITEM_COLUMNS, "aligned_path")}
        columns["tags"] = [list(m) for m in maps]
        columns["origins"] = [list(m.values()) for m in maps]
        self._loaded = _Loaded(
            manifest=manifest,
            stamp=stamp,
            ids=ids,
            position=pd.Index(ids),
            facets=facets,
            tags=tags,
            leaks=leaks,
            has_leak=has_leak,
            scores=scores,
            columns=columns,
        )
        self._selections.clear()

    def _row(self, loaded: _Loaded, image_id: str) -> int:
        if not isinstance(image_id, str) or not image_id:
            raise UnknownImage("no image id given")
        try:
            row = loaded.position.get_loc(image_id)
        except KeyError:
            raise UnknownImage(f"no image {image_id!r} in the {self.dataset} manifest") from None
        if not isinstance(row, (int, np.integer)):  # validate() keeps ids unique; be safe anyway
            raise UnknownImage(f"image id {image_id!r} is not unique")
        return int(row)

    # ------------------------------------------------------------------------- what the page asks

    def classes(self) -> list[str]:
        """The classes to vote for: the canonical labels this dataset uses, in canonical order."""
        present = set(self.current().manifest.frame["label_original"].dropna())
        return [label for label in LABELS if label in present] or list(LABELS)

    def order_choices(self) -> list[str]:
        loaded = self.current()
        numeric = [c for c in loaded.scores.columns if pd.api.types.is_numeric_dtype(loaded.scores[c])]
        return ["manifest", *ORDER_COLUMNS, *numeric]

    def meta(self) -> dict[str, Any]:
        """What the page needs to draw its controls: classes and keys, filter values with counts."""
        loaded = self.current()
        facets = {}
        for name, (codes, values) in loaded.facets.items():
            counts = np.bincount(codes, minlength=len(values)) if len(codes) else np.zeros(len(values), int)
            shown = sorted(
                zip(values, counts, strict=True),
                key=lambda vc: (not vc[0].isdigit(), int(vc[0]) if vc[0].isdigit() else 0, vc[0]),
            )
            facets[name] = [
                {"value": v, "count": int(n)} for v, n in shown if n or v not in ("none", "removed", "unknown")
            ]
        # vocabularies, so that an empty value (face_status registered, say) can still be asked for
        for name, vocabulary in (("face_status", FACE_STATUSES), ("split", SPLITS), ("label_status", LABEL_STATUSES)):
            have = {f["value"] for f in facets[name]}
            facets[name] += [{"value": v, "count": 0} for v in vocabulary if v not in have]
        facets["tag"] = [{"value": t, "count": int(m.sum())} for t, m in loaded.tags.items()]
        facets["leak"] = [
            {"value": "yes", "count": int(loaded.has_leak.sum())},
            {"value": "no", "count": int((~loaded.has_leak).sum())},
        ]
        mine = int(self._mask(loaded, "vote", "voted").sum())
        facets["vote"] = [{"value": "voted", "count": mine}, {"value": "not_voted", "count": len(loaded.ids) - mine}]
        classes = self.classes()
        keys = [{"key": str(i + 1), "vote": c, "name": c} for i, c in enumerate(classes[:9])]
        keys += [
            {"key": "x", "vote": NOT_FACE, "name": "not a face"},
            {"key": "f", "vote": FLAG, "name": "flag, no class"},
        ]
        return {
            "dataset": self.dataset,
            "annotator": self.annotator,
            "images": len(loaded.ids),
            "votes_file": self.ws.relative(self.votes.path),
            "classes": classes,
            "keys": keys,
            "facets": facets,
            "orders": self.order_choices(),
            "scores": str(self._scores_path.name) if self._scores_path else None,
            "leak_pairs": int(len(loaded.leaks) // 2),
        }

    def _order(self, loaded: _Loaded, column: str, descending: bool) -> np.ndarray:
        key = (column, descending)
        if key not in loaded.orders:
            if column == "manifest":
                order = np.arange(len(loaded.ids))
                order = order[::-1] if descending else order
            else:
                values = loaded.scores[column] if column in loaded.scores.columns else loaded.manifest.frame[column]
                # missing values last either way; ties keep the manifest's order
                ranked = values.rank(method="first", ascending=not descending, na_option="bottom")
                order = np.argsort(ranked.to_numpy(dtype=np.float64), kind="stable")
            loaded.orders[key] = order
        return loaded.orders[key]

    def _mask(self, loaded: _Loaded, name: str, value: str) -> np.ndarray:
        if name in FACETS:
            codes, values = loaded.facets[name]
            if value not in values:
                return np.zeros(len(codes), dtype=bool)  # a valid word nobody has (e.g. fold 9)
            return codes == values.index(value)
        if name == "tag":
            return loaded.tags[value]
        if name == "leak":
            return loaded.has_leak if value == "yes" else ~loaded.has_leak
        voted = pd.Series(loaded.ids, dtype=object).isin(self.votes.votes().keys()).to_numpy()
        return voted if value == "voted" else ~voted

    def _check_filter(self, name: str, value: str) -> None:
        allowed: tuple[str, ...] | None = {
            "label": (*LABELS, "removed"),
            "label_original": LABELS,
            "label_status": LABEL_STATUSES,
            "masked": ("true", "false", "unknown"),
            "split": (*SPLITS, "none"),
            "face_status": FACE_STATUSES,
            "tag": (*OCCLUSION_TAGS, AUTO_MASK),
            "leak": ("yes", "no"),
            "vote": ("voted", "not_voted"),
        }.get(name)
        if name == "fold":
            if value != "none" and not value.isdigit():
                raise UsageError(f"fold={value!r}: give a fold number or none")
            return
        assert allowed is not None, name  # page() refuses names outside FILTERS before asking
        if value not in allowed:
            raise UsageError(f"{name}={value!r} is not one of {', '.join(allowed)}")

    def page(self, params: Mapping[str, str]) -> dict[str, Any]:
        """A page of images: ``params`` holds filters (:data:`FILTERS`), ``order``, ``desc``,
        ``offset`` and ``limit``; unknown names or values raise :class:`UsageError`."""
        params = {k: v for k, v in params.items() if k != "token"}
        unknown = sorted(set(params) - {*FILTERS, "order", "desc", "offset", "limit"})
        if unknown:
            raise UsageError(f"unknown parameter {unknown[0]!r}: filters are {', '.join(FILTERS)}")
        filters = tuple(sorted((k, v) for k, v in params.items() if k in FILTERS and v != ""))
        for name, value in filters:
            self._check_filter(name, value)
        order = params.get("order") or "manifest"
        if order not in self.order_choices():
            raise UsageError(f"order={order!r} is not one of {', '.join(self.order_choices())}")
        descending = params.get("desc", "0") in ("1", "true", "yes")
        try:
            offset = int(params.get("offset", 0))
            limit = int(params.get("limit", DEFAULT_LIMIT))
        except ValueError:
            raise UsageError("offset and limit must be whole numbers") from None
        if offset < 0 or not 1 <= limit <= MAX_LIMIT:
            raise UsageError(f"offset must be 0 or more and limit between 1 and {MAX_LIMIT}")

        with self._lock:
            loaded = self.current()
            key = (filters, order, descending, self.votes.generation if any(n == "vote" for n, _ in filters) else None)
            rows = self._selections.get(key)
            if rows is None:
                chosen = np.ones(len(loaded.ids), dtype=bool)
                for name, value in filters:
                    chosen &= self._mask(loaded, name, value)
                ordered = self._order(loaded, order, descending)
                rows = ordered[chosen[ordered]]
                self._selections[key] = rows
                while len(self._selections) > _CACHED_SELECTIONS:
                    self._selections.popitem(last=False)
            else:
                self._selections.move_to_end(key)
        shown = rows[offset : offset + limit]
        mine = self.votes.votes()
        score = loaded.scores[order] if order in loaded.scores.columns else None
        items = [self._item(loaded, int(r), mine, score) for r in shown]
        return {
            "total": int(len(rows)),
            "offset": offset,
            "limit": limit,
            "order": order,
            "desc": descending,
            "items": items,
        }

    def _item(self, loaded: _Loaded, row: int, mine: dict[str, str], score: pd.Series | None) -> dict[str, Any]:
        columns = loaded.columns
        image_id = loaded.ids[row]
        item = {"id": image_id, **{c: jsonable(columns[c][row]) for c in _ITEM_COLUMNS}}
        item["tags"] = columns["tags"][row]
        item["origins"] = columns["origins"][row]
        item["crop"] = columns["aligned_path"][row] is not None
        item["vote"] = mine.get(image_id)
        item["leak"] = bool(loaded.has_leak[row])
        item["score"] = jsonable(score.iloc[row]) if score is not None else None
        return item

    def _other_votes(self) -> dict[str, list[dict[str, str]]]:
        """Every annotator's votes in the votes folder, per image (re-read when a file changes)."""
        from ..errors import FerdataError
        from ..votes import read_votes

        files = [p for p in votes_files(self.ws.root / VOTES_FOLDER) if p != self.votes.path]
        stamp = stamp_of(files)
        if stamp != self._others[0]:
            by_image: dict[str, list[dict[str, str]]] = {}
            for path in files:
                try:
                    raw = read_votes(path)
                except FerdataError:
                    continue  # not a long/wide votes file: not this page's business
                if raw.form == "ferplus":
                    continue
                for image, annotator, vote in raw.table[["image", "annotator", "vote"]].itertuples(index=False):
                    by_image.setdefault(str(image).strip(), []).append(
                        {"annotator": str(annotator).strip(), "vote": str(vote).strip()}
                    )
            self._others = (stamp, by_image)
        return self._others[1]

    def detail(self, image_id: str) -> dict[str, Any]:
        """One image: its manifest row, tags with origins, every annotator's vote, its leak partners."""
        loaded = self.current()
        row = self._row(loaded, image_id)
        record = loaded.manifest.frame.iloc[row]
        fields = (
            "image_id",
            "label",
            "label_original",
            "label_status",
            "masked",
            "masked_origin",
            "split",
            "fold",
            "subject_id",
            "pair_id",
            "in_pe",
            "face_status",
            "face_error",
            "det_score",
            "n_faces",
            "mask_score",
            "width",
            "height",
            "bbox",
            "landmarks",
        )
        out = {name: jsonable(record[name]) for name in fields if name in record.index}
        out["id"] = image_id
        out["tags"] = [{"tag": t, "origin": o} for t, o in tag_origins(loaded.manifest.frame.iloc[[row]])[0].items()]
        out["crop"] = record["aligned_path"] is not None
        votes = [{"annotator": self.annotator, "vote": v} for v in [self.votes.get(image_id)] if v is not None]
        out["votes"] = votes + self._other_votes().get(image_id, [])
        out["scores"] = {c: jsonable(loaded.scores[c].iloc[row]) for c in loaded.scores.columns}
        partners = loaded.leaks[loaded.leaks["image_id"] == image_id]
        out["leaks"] = []
        for partner in partners.itertuples(index=False):
            entry = {"id": partner.partner, "kind": partner.kind, "distance": jsonable(partner.distance)}
            try:
                other = loaded.manifest.frame.iloc[self._row(loaded, partner.partner)]
                entry |= {
                    "label": other["label"],
                    "label_original": other["label_original"],
                    "fold": jsonable(other["fold"]),
                    "split": other["split"],
                    "crop": other["aligned_path"] is not None,
                }
            except UnknownImage:
                entry["missing"] = True
            out["leaks"].append(entry)
        return out

    def image_path(self, image_id: str, view: str) -> str:
        """The workspace-relative file behind an image id: the aligned crop (``crop``; the original
        where there is none) or the ``original``. Requests name ids, never paths."""
        loaded = self.current()
        record = loaded.manifest.frame.iloc[self._row(loaded, image_id)]
        if view == "crop" and record["aligned_path"] is not None:
            return record["aligned_path"]
        if view not in ("crop", "original"):
            raise UsageError(f"view={view!r} is not one of crop, original")
        return record["original_path"]

    # ------------------------------------------------------------------------- what the page writes

    def vote(self, image_id: str, vote: str | None) -> dict[str, Any]:
        """Record this annotator's vote on one image (None withdraws it, as undo does)."""
        allowed = (*LABELS, NOT_FACE, FLAG)
        if vote is not None and vote not in allowed:
            raise UsageError(f"vote={vote!r} is not one of {', '.join(allowed)} (or null to withdraw)")
        self._row(self.current(), image_id)
        previous = self.votes.set(image_id, vote)
        return {"id": image_id, "vote": vote, "previous": previous, "votes": len(self.votes)}

    def set_tag(self, image_id: str, tag: str, on: bool) -> dict[str, Any]:
        """Add (``on``) or remove a tag on one image, origin ``review``, under the workspace lock.

        A tag that came from the source stays (the dataset's own layout said so); the answer says
        so with ``kept_source``. Raises :class:`ferdata.errors.WorkspaceLocked` when another
        command holds the lock: nothing is written then.
        """
        if tag not in OCCLUSION_TAGS:
            raise UsageError(f"tag={tag!r} is not one of {', '.join(OCCLUSION_TAGS)}")
        with self.ws.lock("review"), self._lock:
            loaded = self.current()
            row = self._row(loaded, image_id)
            manifest = loaded.manifest
            selected = pd.Series(False, index=manifest.frame.index)
            selected.iloc[row] = True
            change = (
                add_tag(manifest.frame, tag, selected, origin=REVIEW)
                if on
                else remove_tag(manifest.frame, tag, selected)
            )
            if change.changed:
                history = manifest.provenance.setdefault("review", {})
                counts = history.setdefault("tag_changes", {})
                counts[self.annotator] = int(counts.get(self.annotator, 0)) + 1
                saved = Manifest(self.dataset, change.frame, manifest.provenance)
                self.ws.save(saved)
                self._adopt(saved, self._stamp())
            new = self.current()
            tags = tag_origins(new.manifest.frame.iloc[[row]])[0]
        return {
            "id": image_id,
            "tag": tag,
            "on": tag in tags,
            "changed": bool(change.changed),
            "kept_source": bool(change.kept_source) and tags.get(tag) == SOURCE,
            "tags": list(tags),
            "origins": list(tags.values()),
            "masked": jsonable(new.manifest.frame["masked"].iloc[row]),
        }

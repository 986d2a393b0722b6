"""Occlusion tags: add, remove, import and count them, keeping apart where each tag came from.

The manifest's ``occlusion`` column holds every tag of an image. Two extra columns say who put
them there, so that one kind of change never undoes another:

- ``tag_origin`` (list of strings, parallel to ``occlusion``): the origin of each tag, one of
  ``source`` (the source adapter: MSD-E's ``MSD-ME/`` folder, Occlu-FER; or ``ferdata
  mask-synth``, which made the image), ``manual`` (``ferdata tag add`` / ``import``),
  ``auto_mask`` (``ferdata tag auto --mask``), ``label_issues`` (``ferdata label-issues --tag``)
  or ``review`` (a person on ``ferdata review``'s page).
- ``masked_origin`` (string): the origin of the ``masked`` value, with the same vocabulary.

A manifest written before these columns existed is read as "every tag and every known ``masked``
came from the source" (:func:`with_origins`), the conservative reading: automatic tagging never
overwrites a tag or a ``masked`` value it did not set itself, and removing a source tag needs
``force``. Only ``source`` tags need it: a tag that ferdata or a person added is removed
without. (Manifests written before the origins were renamed say ``user`` and ``auto``; the
schema reads them as ``manual`` and ``auto_mask``.)

Pure table functions (:func:`add_tag`, :func:`remove_tag`, :func:`apply_auto_mask`,
:func:`tag_counts`, ...) take and return frames; the workspace entry points at the end
(:func:`tag_images`, :func:`import_tags`, :func:`list_tags`) load, call them, and save.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import TagError, UsageError
from .schema import OCCLUSION_TAGS, TAG_ORIGINS, with_new_names
from .workspace import Workspace, WorkspaceLike, writes_workspace

TAG_ORIGIN_COLUMN = "tag_origin"
MASKED_ORIGIN_COLUMN = "masked_origin"
MASK_SCORE_COLUMN = "mask_score"
# the origins (manifests/schema.toml's tag_origins); AUTO is what `ferdata tag auto --mask` sets
SOURCE, MANUAL, AUTO, LABEL_ISSUES, REVIEW = "source", "manual", "auto_mask", "label_issues", "review"
ORIGINS = TAG_ORIGINS
# origins whose tags ferdata or a person added: removed without force, kept by a re-ingest's check
ADDED_ORIGINS = tuple(o for o in ORIGINS if o != SOURCE)
# Tags that mean "a mask covers the lower face": adding one fills an unknown ``masked``.
MASK_TAGS = ("mask", "synthetic_mask")

_SHOWN = 5  # offending lines or ids quoted in an error message


def check_tag(tag: str) -> str:
    """``tag`` if it is in the schema's vocabulary, else a :class:`TagError` listing the vocabulary."""
    if tag not in OCCLUSION_TAGS:
        raise TagError(f"unknown tag {tag!r}: use one of {', '.join(OCCLUSION_TAGS)}")
    return tag


# ----------------------------------------------------------------------------- origins


def _as_list(value: Any) -> list:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return list(value)


def _origin_maps(frame: pd.DataFrame) -> list[dict[str, str]]:
    """Per row, tag -> origin (tags whose origin is not recorded count as ``source``), for a
    frame whose origins have their current names (:func:`ferdata.schema.with_new_names`)."""
    tags = frame["occlusion"].tolist()
    recorded = frame[TAG_ORIGIN_COLUMN].tolist() if TAG_ORIGIN_COLUMN in frame.columns else [None] * len(frame)
    maps = []
    for row_tags, row_origins in zip(tags, recorded, strict=True):
        row_tags, row_origins = _as_list(row_tags), _as_list(row_origins)
        if len(row_origins) != len(row_tags):  # written by a step that knew nothing of origins
            row_origins = [SOURCE] * len(row_tags)
        maps.append({t: (o if o in ORIGINS else SOURCE) for t, o in zip(row_tags, row_origins, strict=True)})
    return maps


def _set_tags(frame: pd.DataFrame, maps: list[dict[str, str]]) -> pd.DataFrame:
    """``occlusion`` and ``tag_origin`` from per-row maps, tags in vocabulary order."""
    order = {t: i for i, t in enumerate(OCCLUSION_TAGS)}
    out = frame.copy()
    tags = [sorted(m, key=lambda t: order.get(t, len(order))) for m in maps]
    out["occlusion"] = pd.Series(tags, index=frame.index, dtype=object)
    out[TAG_ORIGIN_COLUMN] = pd.Series(
        [[m[t] for t in row] for m, row in zip(maps, tags, strict=True)], index=frame.index, dtype=object
    )
    return out


def _normalised(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """:func:`with_origins`, and the per-row origin maps it was built from."""
    frame = with_new_names(frame)
    maps = _origin_maps(frame)
    out = _set_tags(frame, maps)
    masked = out["masked"].astype("boolean")
    if MASKED_ORIGIN_COLUMN in out.columns:
        origin = out[MASKED_ORIGIN_COLUMN].astype(object).where(out[MASKED_ORIGIN_COLUMN].notna(), None)
        origin = origin.where(origin.isin(ORIGINS) | origin.isna(), SOURCE)
    else:
        origin = pd.Series(None, index=out.index, dtype=object)
    origin = origin.where(masked.notna(), None)
    origin = origin.where(~(masked.notna() & origin.isna()), SOURCE).astype(object)
    out[MASKED_ORIGIN_COLUMN] = origin
    return out, maps


def with_origins(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with consistent ``tag_origin`` and ``masked_origin`` columns (see the module doc)."""
    return _normalised(frame)[0]


def tag_origins(frame: pd.DataFrame) -> list[dict[str, str]]:
    """Per row, each tag with its origin (one of :data:`ORIGINS`)."""
    return _origin_maps(with_new_names(frame))


# ----------------------------------------------------------------------------- selections


def select(frame: pd.DataFrame, where: str | None = None, ids: Iterable[str] | None = None) -> pd.Series:
    """Rows chosen by a ``--where`` expression over manifest columns and/or a list of image ids.

    ``where`` is a pandas query (``label == 'happy' and split == 'train'``,
    ``image_id.str.startswith('MSD-ME/')``); both given means both must hold. Neither given
    selects nothing: changing every row needs an explicit ``--where 'index == index'``.
    """
    chosen = pd.Series(where is not None or ids is not None, index=frame.index)
    if where is not None:
        try:
            result = frame.eval(where, engine="python")
        except Exception as exc:  # noqa: BLE001 - a user's expression: any failure is theirs to fix
            raise TagError(
                f"cannot evaluate where={where!r}: {exc}; write a pandas query over manifest columns, e.g. \"label == 'happy'\""
            ) from None
        if not isinstance(result, pd.Series) or len(result) != len(frame):
            raise TagError(f"where={where!r} must give true or false per image, e.g. \"split == 'train'\"")
        is_bool = pd.api.types.is_bool_dtype(result) or (
            result.dtype == object
            and result.map(lambda v: v is None or v is pd.NA or isinstance(v, (bool, np.bool_))).all()
        )
        if not is_bool:
            raise TagError(f"where={where!r} must give true or false per image, e.g. \"split == 'train'\"")
        chosen &= result.astype("boolean").fillna(False).astype(bool)
    if ids is not None:
        rows, missing = resolve_images(frame, ids)
        if missing:
            raise TagError(
                f"{len(missing)} image ids are not in the manifest (e.g. {', '.join(missing[:_SHOWN])}); "
                "use image_id values (or file names) from the manifest"
            )
        picked = pd.Series(False, index=frame.index)
        picked.iloc[rows] = True
        chosen &= picked
    return chosen


def _keys(image_id: str, source: str) -> list[str]:
    """Names under which a row can be referred to, besides its image_id."""
    base = source.rsplit("#", 1)[0].rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0]
    id_base = image_id.rsplit("/", 1)[-1]
    return [source, base, stem, id_base]


def resolve_images(frame: pd.DataFrame, names: Iterable[str]) -> tuple[list[int], list[str]]:
    """Row positions of ``names`` (image ids, else unambiguous file names), and the names not found.

    A name matches its image_id first; then the source path, its file name or stem, or the
    image id's last path part, where only one row has that name. So an id file or CSV may use
    the dataset's own file names (``test_0003.jpg``) as well as manifest ids.
    """
    by_id = {v: i for i, v in enumerate(frame["image_id"].tolist())}
    other: dict[str, int | None] = {}
    for i, (image_id, source) in enumerate(zip(frame["image_id"].tolist(), frame["source"].tolist(), strict=True)):
        for key in _keys(image_id, source):
            other[key] = i if other.get(key, i) == i else None  # None: ambiguous
    rows, missing = [], []
    for name in names:
        row = by_id.get(name)
        if row is None:
            row = other.get(name)
        if row is None:
            missing.append(name)
        else:
            rows.append(row)
    return rows, missing


def read_id_file(path: Path) -> list[str]:
    """Image ids, one per line; blank lines and ``#`` comments are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise TagError(f"cannot read id file {path}: {exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


Ids = str | os.PathLike | Iterable[str]


def image_names(ids: Ids, frame: pd.DataFrame) -> list[str]:
    """The image ids (or file names) that ``ids`` gives, as the ``--ids`` option takes them.

    A string is ``"@FILE"`` (FILE holds one id per line, as :func:`read_id_file` reads it) or ids
    separated by commas (``"a,b,c"``); a path is a file of ids; any other iterable holds the ids
    themselves. A string naming one existing file that is no image of ``frame`` is read as a
    file of ids too: the form ``--ids FILE`` of earlier versions.
    """
    if isinstance(ids, os.PathLike):
        return read_id_file(Path(ids))
    if not isinstance(ids, str):
        return [str(name) for name in ids]
    if ids.startswith("@"):
        if not ids[1:]:
            raise TagError("ids='@' names no file: write ids='@FILE' with one image id per line")
        return read_id_file(Path(ids[1:]))
    names = [name.strip() for name in ids.split(",") if name.strip()]
    if not names:
        raise TagError(f"ids={ids!r} names no image: give image ids separated by commas, or ids='@FILE'")
    if len(names) == 1 and Path(names[0]).is_file() and not resolve_images(frame, names)[0]:
        return read_id_file(Path(names[0]))
    return names


# ----------------------------------------------------------------------------- changes


@dataclass
class TagChange:
    """What one tag operation did on a frame."""

    frame: pd.DataFrame
    selected: int = 0
    changed: int = 0  # rows whose tags changed
    kept_source: int = 0  # rows whose source tag was left in place (remove without force)
    unmatched: list[str] = field(default_factory=list)


def add_tag(frame: pd.DataFrame, tag: str, selected: pd.Series, origin: str = MANUAL) -> TagChange:
    """Add ``tag`` to the selected rows, with ``origin``. A tag already there keeps its origin.

    Adding ``mask`` or ``synthetic_mask`` also sets ``masked`` to true where it was unknown.
    """
    check_tag(tag)
    if origin not in ORIGINS:
        raise UsageError(f"origin={origin!r} is not one of {', '.join(ORIGINS)}")
    frame, maps = _normalised(frame)
    positions = np.flatnonzero(selected.to_numpy(dtype=bool))
    changed = 0
    for i in positions:
        if tag not in maps[i]:
            maps[i][tag] = origin
            changed += 1
    out = _set_tags(frame, maps)
    if tag in MASK_TAGS:
        fill = selected.to_numpy(dtype=bool) & out["masked"].isna().to_numpy()
        out = _set_masked(out, fill, True, origin)
    return TagChange(frame=out, selected=len(positions), changed=changed)


def remove_tag(frame: pd.DataFrame, tag: str, selected: pd.Series, force: bool = False) -> TagChange:
    """Remove ``tag`` from the selected rows, whatever its origin; a tag from the source stays
    unless ``force``.

    Where the last mask tag goes and ``masked`` had been set by a tag (any origin but source),
    ``masked`` returns to unknown.
    """
    check_tag(tag)
    frame, maps = _normalised(frame)
    positions = np.flatnonzero(selected.to_numpy(dtype=bool))
    changed = kept = 0
    unset = np.zeros(len(frame), dtype=bool)
    masked_origin = frame[MASKED_ORIGIN_COLUMN].tolist()
    for i in positions:
        if tag not in maps[i]:
            continue
        if maps[i][tag] == SOURCE and not force:
            kept += 1
            continue
        del maps[i][tag]
        changed += 1
        if tag in MASK_TAGS and not any(t in maps[i] for t in MASK_TAGS) and masked_origin[i] in ADDED_ORIGINS:
            unset[i] = True
    out = _set_tags(frame, maps)
    out = _set_masked(out, unset, None, None)
    return TagChange(frame=out, selected=len(positions), changed=changed, kept_source=kept)


def _set_masked(frame: pd.DataFrame, rows: np.ndarray, value: bool | None, origin: str | None) -> pd.DataFrame:
    if not rows.any():
        return frame
    out = frame.copy()
    masked = out["masked"].astype("boolean").copy()
    masked[rows] = pd.NA if value is None else value
    out["masked"] = masked
    origins = out[MASKED_ORIGIN_COLUMN].astype(object).copy()
    origins[rows] = origin
    out[MASKED_ORIGIN_COLUMN] = origins.where(origins.notna(), None).astype(object)
    return out


def apply_auto_mask(frame: pd.DataFrame, scores: pd.Series, threshold: float) -> TagChange:
    """Automatic mask tags from ``mask_score``: never touching what the source or a user set.

    For every row with a score: at or above ``threshold`` the row gets ``mask`` (origin auto)
    unless it already has a mask tag; below it, a ``mask`` tag that auto set earlier is removed.
    ``masked`` follows the decision only where it is unknown or was set by auto before. Rows
    without a score (not aligned) are left as they are, score included.
    """
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"threshold={threshold} must be between 0 and 1")
    frame, maps = _normalised(frame)
    old_scores = (
        frame[MASK_SCORE_COLUMN] if MASK_SCORE_COLUMN in frame.columns else pd.Series(np.nan, index=frame.index)
    )
    new_scores = pd.to_numeric(scores.reindex(frame.index), errors="coerce")
    scored = new_scores.notna().to_numpy()
    decision = (new_scores >= threshold).to_numpy()
    changed = 0
    for i in np.flatnonzero(scored):
        has_mask = any(t in maps[i] for t in MASK_TAGS)
        if decision[i] and not has_mask:
            maps[i]["mask"] = AUTO
            changed += 1
        elif not decision[i] and maps[i].get("mask") == AUTO:
            del maps[i]["mask"]
            changed += 1
    out = _set_tags(frame, maps)
    out[MASK_SCORE_COLUMN] = new_scores.where(scored, old_scores.astype("float64")).astype("float64")
    follows = scored & (out["masked"].isna().to_numpy() | (out[MASKED_ORIGIN_COLUMN] == AUTO).to_numpy())
    follows &= np.array([not any(t in m for t in MASK_TAGS) or m.get("mask") == AUTO for m in maps])
    out = _set_masked(out, follows & decision, True, AUTO)
    out = _set_masked(out, follows & ~decision, False, AUTO)
    return TagChange(frame=out, selected=int(scored.sum()), changed=changed)


# ----------------------------------------------------------------------------- files


def read_tag_csv(path: Path) -> list[tuple[int, str, str]]:
    """(line, image, tag) rows of a CSV with columns ``image`` (or ``image_id``) and ``tag``.

    Unknown tags are an error naming the lines, so a typo never slips into a manifest.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise TagError(f"cannot read tag file {path}: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    image_col = "image" if "image" in fields else "image_id" if "image_id" in fields else None
    if image_col is None or "tag" not in fields:
        raise TagError(f"{path} needs a header with the columns image (or image_id) and tag, e.g. 'image,tag'")
    reader.fieldnames = fields
    rows, bad = [], []
    for line, record in enumerate(reader, start=2):
        image, tag = (record.get(image_col) or "").strip(), (record.get("tag") or "").strip().lower()
        if not image and not tag:
            continue
        if tag not in OCCLUSION_TAGS:
            bad.append(f"line {line} {tag!r}")
            continue
        rows.append((line, image, tag))
    if bad:
        raise TagError(
            f"{path}: unknown tags at {', '.join(bad[:_SHOWN])}{' and more' if len(bad) > _SHOWN else ''}; "
            f"use one of {', '.join(OCCLUSION_TAGS)}"
        )
    return rows


_LIST_LINE = re.compile(r"^(\S+)(?:\s+-?\d+)*\s*$")
_LABEL_PREFIX = re.compile(r"^\d+_(?=fer\d)")  # Occlusion-FERPlus: "<label>_fer0034656.png"


def read_occlusion_list(path: Path) -> list[str]:
    """Image names from an Occlusion-RAF-DB / Occlusion-FERPlus style list.

    Those lists (github.com/kaiwang960112/Challenge-condition-FER-dataset) hold one image per
    line, the name followed by whitespace-separated integers: ``test_0003_aligned 3 4`` (RAF-DB)
    or ``1_fer0034656.png 8 0`` (FER+). The integers are not documented upstream, so they are
    not interpreted; every listed image is occluded.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise TagError(f"cannot read occlusion list {path}: {exc}") from None
    names, bad = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LIST_LINE.match(line.strip())
        if m is None:
            bad.append(number)
            continue
        names.append(m.group(1))
    if bad:
        raise TagError(
            f"{path}: lines {', '.join(map(str, bad[:_SHOWN]))} are not '<image> <numbers...>' as in an occlusion list"
        )
    return list(dict.fromkeys(names))  # the RAF-DB list names test_2464 twice


def list_name_candidates(name: str) -> list[str]:
    """The names a list entry may have in a manifest: as is, without ``_aligned``, label prefix or extension."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    out = [name, stem, _LABEL_PREFIX.sub("", name), _LABEL_PREFIX.sub("", stem)]
    for candidate in out[:]:
        if candidate.endswith("_aligned"):
            out.append(candidate[: -len("_aligned")])
    return list(dict.fromkeys(out))


def import_tag_rows(frame: pd.DataFrame, rows: list[tuple[str, str]], origin: str = MANUAL) -> TagChange:
    """Add each (image, tag) pair; images are resolved as in :func:`resolve_images`."""
    frame = with_origins(frame)
    unmatched: list[str] = []
    selected_total = changed = 0
    by_tag: dict[str, list[int]] = {}
    for image, tag in rows:
        check_tag(tag)
        found = None
        for candidate in list_name_candidates(image):
            positions, _ = resolve_images(frame, [candidate])
            if positions:
                found = positions[0]
                break
        if found is None:
            unmatched.append(image)
        else:
            by_tag.setdefault(tag, []).append(found)
    for tag, positions in by_tag.items():
        selected = pd.Series(False, index=frame.index)
        selected.iloc[positions] = True
        change = add_tag(frame, tag, selected, origin)
        frame, selected_total, changed = change.frame, selected_total + change.selected, changed + change.changed
    return TagChange(frame=frame, selected=selected_total, changed=changed, unmatched=unmatched)


def tag_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Images per tag and origin (columns ``tag``, one per origin of :data:`ORIGINS`, ``total``),
    every vocabulary tag listed, plus rows ``masked=true``/``false``/``unknown``."""
    normal, maps = _normalised(frame)
    counts = {tag: dict.fromkeys(ORIGINS, 0) for tag in OCCLUSION_TAGS}
    for m in maps:
        for tag, origin in m.items():
            counts.setdefault(tag, dict.fromkeys(ORIGINS, 0))[origin] += 1
    rows = [{"tag": tag, **c, "total": sum(c.values())} for tag, c in counts.items()]
    masked = frame["masked"].astype("boolean")
    origin = normal[MASKED_ORIGIN_COLUMN]
    for label, chosen in (("masked=true", masked == True), ("masked=false", masked == False)):
        chosen = chosen.fillna(False).astype(bool)
        by_origin = origin[chosen].value_counts()
        rows.append({"tag": label, **{o: int(by_origin.get(o, 0)) for o in ORIGINS}, "total": int(chosen.sum())})
    rows.append({"tag": "masked=unknown", **dict.fromkeys(ORIGINS, 0), "total": int(masked.isna().sum())})
    return pd.DataFrame(rows, columns=["tag", *ORIGINS, "total"])


# ----------------------------------------------------------------------------- workspace entry points


@dataclass
class TagResult:
    """What a tag command did to a dataset's manifest."""

    dataset: str
    action: str
    tag: str | None
    selected: int
    changed: int
    kept_source: int = 0
    unmatched: list[str] = field(default_factory=list)
    counts: pd.DataFrame | None = None


def _record(manifest, action: str, info: dict[str, Any]) -> None:
    history = manifest.provenance.setdefault("tag", {"operations": []})
    history.setdefault("operations", []).append({"action": action, **info})


@writes_workspace("tag")
def tag_images(
    ws: WorkspaceLike,
    tag: str,
    *,
    remove: bool = False,
    where: str | None = None,
    ids: Ids | None = None,
    force: bool = False,
    dataset: str | None = None,
) -> TagResult:
    """``ferdata tag add|remove``: add (or remove) ``tag`` on the rows chosen by ``where`` / ``ids``.

    ``ids`` takes what :func:`image_names` reads: ``"a,b,c"``, ``"@FILE"``, a path or a list of
    ids. Added tags get the origin ``manual``; ``remove`` takes a tag away whatever its origin,
    except that a ``source`` tag stays unless ``force``. Takes the workspace lock.
    Records the operation in ``provenance["tag"]``.
    """
    ws = Workspace.of(ws)
    from .schema import Manifest

    check_tag(tag)
    if where is None and ids is None:
        raise UsageError("choose the images: where=EXPRESSION, ids='a,b,c' or ids='@FILE', or both")
    name = ws.dataset_name(dataset)
    manifest = ws.load(name)
    names = image_names(ids, manifest.frame) if ids is not None else None
    chosen = select(manifest.frame, where, names)
    change = remove_tag(manifest.frame, tag, chosen, force) if remove else add_tag(manifest.frame, tag, chosen)
    action = "remove" if remove else "add"
    given = ids if isinstance(ids, str) else os.fspath(ids) if isinstance(ids, os.PathLike) else None
    _record(
        manifest,
        action,
        {
            "tag": tag,
            "where": where,
            "ids": given,
            "ids_given": None if names is None else len(names),
            "selected": change.selected,
            "changed": change.changed,
            "force": force,
        },
    )
    ws.save(Manifest(dataset=name, frame=change.frame, provenance=manifest.provenance))
    return TagResult(name, action, tag, change.selected, change.changed, change.kept_source)


@writes_workspace("tag import")
def import_tags(
    ws: WorkspaceLike,
    path: Path,
    *,
    list_tag: str | None = None,
    dataset: str | None = None,
) -> TagResult:
    """``ferdata tag import``: a CSV of image,tag, or (``list_tag`` given) an occlusion list file
    whose every image gets ``list_tag``. Images not in the manifest are reported, not fatal,
    unless none matches."""
    ws = Workspace.of(ws)
    from .schema import Manifest

    name = ws.dataset_name(dataset)
    manifest = ws.load(name)
    if list_tag is not None:
        check_tag(list_tag)
        pairs = [(image, list_tag) for image in read_occlusion_list(path)]
        kind = "occlusion-list"
    else:
        pairs = [(image, tag) for _, image, tag in read_tag_csv(path)]
        kind = "csv"
    if not pairs:
        raise TagError(f"{path} lists no images")
    change = import_tag_rows(manifest.frame, pairs)
    if len(change.unmatched) == len(pairs):
        raise TagError(
            f"none of the {len(pairs)} images in {path} is in the {name} manifest "
            f"(e.g. {', '.join(change.unmatched[:_SHOWN])}); is it the list for another dataset?"
        )
    _record(
        manifest,
        "import",
        {
            "file": str(path),
            "format": kind,
            "tag": list_tag,
            "rows": len(pairs),
            "changed": change.changed,
            "unmatched": len(change.unmatched),
        },
    )
    ws.save(Manifest(dataset=name, frame=change.frame, provenance=manifest.provenance))
    return TagResult(name, "import", list_tag, change.selected, change.changed, unmatched=change.unmatched)


def list_tags(ws: WorkspaceLike, *, dataset: str | None = None) -> TagResult:
    """``ferdata tag list``: images per tag and origin (read only)."""
    ws = Workspace.of(ws)
    name = ws.dataset_name(dataset)
    manifest = ws.load(name)
    return TagResult(name, "list", None, len(manifest.frame), 0, counts=tag_counts(manifest.frame))

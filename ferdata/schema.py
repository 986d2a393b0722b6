"""THE manifest: columns, types, vocabularies, validation and atomic Parquet reads and writes.

Everything is derived from ``manifests/schema.toml``, the one description of the schema: the
Arrow schema written to Parquet, the pandas dtypes used in memory, the checks in
:func:`validate`, and the published dataset's features (:mod:`ferdata.publish.features`). Other
modules name columns only through the strings listed there; :func:`validate` rejects a frame
that lacks one.

In memory a manifest is a pandas DataFrame with nullable dtypes: strings are ``object`` columns of
``str``/``None``, ``bool`` columns are ``boolean``, ``int64`` columns are ``Int64``, lists are
Python lists (or ``None``). The rules are checked on the Arrow table that is written
(:func:`validate_table`), so a writer that builds its rows as Arrow (a first ingest:
:func:`new_table`) never needs pandas; :class:`Manifest` makes its frame on first use. pandas is
imported where a frame is made, not with this module (about 0.17 s beyond numpy and pyarrow).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .arrowvalues import bool_array, python_array, scalar
from .errors import SchemaError
from .fsutil import atomic_path
from .resources import load_toml

if TYPE_CHECKING:
    import pandas as pd

_SPEC = load_toml("schema")

SCHEMA_VERSION: int = _SPEC["version"]
LABELS: tuple[str, ...] = tuple(_SPEC["labels"])
BASIC_LABELS: tuple[str, ...] = tuple(x for x in LABELS if x != "contempt")
DATASETS: tuple[str, ...] = tuple(_SPEC["datasets"])
SPLITS: tuple[str, ...] = tuple(_SPEC["splits"])
LABEL_STATUSES: tuple[str, ...] = tuple(_SPEC["label_statuses"])
FACE_STATUSES: tuple[str, ...] = tuple(_SPEC["face_statuses"])
OCCLUSION_TAGS: tuple[str, ...] = tuple(_SPEC["occlusion_tags"])
TAG_ORIGINS: tuple[str, ...] = tuple(_SPEC["tag_origins"])

_VOCABULARIES = {
    "labels": LABELS,
    "datasets": DATASETS,
    "splits": SPLITS,
    "label_statuses": LABEL_STATUSES,
    "face_statuses": FACE_STATUSES,
    "occlusion_tags": OCCLUSION_TAGS,
    "tag_origins": TAG_ORIGINS,
}

_SCALARS = {"string": pa.string(), "bool": pa.bool_(), "int64": pa.int64(), "float64": pa.float64()}
_PANDAS = {"string": object, "bool": "boolean", "int64": "Int64", "float64": "float64"}
_LIST = re.compile(r"list<(\w+)>(?:\[(\d+)\])?$")

PROVENANCE_KEY = b"ferdata.provenance"
# ``source`` of rows that ferdata made rather than read (``ferdata mask-synth``): prefix + the
# original's image_id. Re-ingest keeps them; alignment leaves them alone (they are crops already).
SYNTHETIC_SOURCE_PREFIX = "mask-synth:"

# A row is *usable* (contract) when it has a label and a face crop: an ``aligned_path`` written by
# detection (``aligned``) or from the dataset's own registration (``registered``). Folds are
# balanced, and publish and the trainer work, on usable rows; each left-out row gets one reason.
CROP_STATUSES = ("aligned", "registered")
REMOVED_REASON = "label removed by relabelling"
NO_LABEL_REASON = "no label"
_NO_CROP_BECAUSE = {
    "no_face": "no face found",
    "unreadable": "unreadable image",
    "not_run": "alignment not run",
}


@dataclass(frozen=True)
class Column:
    name: str
    type_name: str
    nullable: bool
    doc: str
    vocabulary: tuple[str, ...] | None = None
    default: Any = None

    @property
    def arrow_type(self) -> pa.DataType:
        if m := _LIST.match(self.type_name):
            inner, size = _SCALARS[m.group(1)], m.group(2)
            return pa.list_(inner, int(size)) if size else pa.list_(inner)
        return _SCALARS[self.type_name]

    @property
    def is_list(self) -> bool:
        return self.type_name.startswith("list<")

    @property
    def list_size(self) -> int | None:
        m = _LIST.match(self.type_name)
        return int(m.group(2)) if m and m.group(2) else None

    def field(self) -> pa.Field:
        return pa.field(self.name, self.arrow_type, nullable=self.nullable)


COLUMNS: tuple[Column, ...] = tuple(
    Column(
        name=c["name"],
        type_name=c["type"],
        nullable=c["nullable"],
        doc=c["doc"],
        vocabulary=_VOCABULARIES[c["vocabulary"]] if "vocabulary" in c else None,
        default=c.get("default"),
    )
    for c in _SPEC["columns"]
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
# column -> {old value: new value}: vocabulary values renamed since manifests were first written
RENAMED: dict[str, dict[str, str]] = {
    c["name"]: dict(_SPEC.get("renamed", {})[c["vocabulary"]])
    for c in _SPEC["columns"]
    if c.get("vocabulary") in _SPEC.get("renamed", {})
}
_BY_NAME = {c.name: c for c in COLUMNS}
ARROW_SCHEMA = pa.schema([c.field() for c in COLUMNS])


def column(name: str) -> Column:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a manifest column") from None


# ----------------------------------------------------------------------------- frames


def _to_list(value: Any) -> list | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.tolist() if isinstance(value, np.ndarray) else list(value)


def _coerce(frame: pd.DataFrame) -> pd.DataFrame:
    """Schema dtypes for the schema's columns; extra columns are left as they are."""
    import pandas as pd

    out = frame.copy()
    for col in COLUMNS:
        if col.name not in out.columns:
            continue
        series = out[col.name]
        if col.is_list:
            if not (series.dtype == object and series.map(type).isin((list, type(None))).all()):
                series = pd.Series([_to_list(v) for v in series], index=out.index, dtype=object)
            out[col.name] = series
        elif col.type_name == "string":
            values = series.to_numpy(dtype=object, copy=True)
            values[pd.isna(values)] = None  # NaN, NA and NaT alike (numpy indexing: cheaper than Series.where)
            if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
                values = np.array([v if v is None else str(v) for v in values], dtype=object)
            out[col.name] = pd.Series(values, index=out.index, dtype=object)
        else:
            out[col.name] = series.astype(_PANDAS[col.type_name])
    return out


def _column_values(col: Column, rows: list[dict[str, Any]], given: set[str]) -> list:
    """The column's value in every row; the schema's default where a row leaves it out (a list
    default is copied for each row: a frame's cells must not share one list)."""
    if isinstance(col.default, list):
        if col.name not in given:
            return [list(col.default) for _ in rows]
        return [row[col.name] if col.name in row else list(col.default) for row in rows]
    if col.name not in given:
        return [col.default] * len(rows)
    return [row.get(col.name, col.default) for row in rows]


def _columns_of(rows: list[dict[str, Any]]) -> tuple[dict[str, list], list[str]]:
    """Column name -> values of ``rows`` (the schema's defaults where a row leaves one out), and
    the names of extra columns some row gives."""
    given = {k for row in rows for k in row}
    data = {col.name: _column_values(col, rows, given) for col in COLUMNS}
    extras = sorted(given - set(COLUMN_NAMES))
    for name in extras:
        data[name] = [row.get(name) for row in rows]
    return data, extras


def new_frame(rows: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """A manifest frame from row dicts; columns a row leaves out get the schema's defaults."""
    import pandas as pd

    data, extras = _columns_of(rows or [])
    return _coerce(pd.DataFrame(data, columns=[*COLUMN_NAMES, *extras]))


def _loose_type(col: Column) -> pa.DataType:
    """The column's Arrow type, with a fixed-size list as a list of any length: a row of the wrong
    length converts, and :func:`validate_table` names it."""
    return pa.list_(col.arrow_type.value_type) if col.list_size else col.arrow_type


def _array(col: Column, values: list, *, of_frame: bool = False) -> pa.Array:
    """``values`` as the column's Arrow array (:func:`_loose_type`); one of the wrong type raises
    :class:`SchemaError` naming the column. Values ``of_frame`` were typed by :func:`_coerce`, and
    pandas is loaded: ``pa.array`` converts them in C, faster than :func:`python_array`."""
    try:
        if of_frame:
            return pa.array(values, type=_loose_type(col))
        return python_array(values, _loose_type(col))
    except (TypeError, OverflowError, pa.ArrowInvalid) as exc:
        raise SchemaError(f"invalid manifest: {col.name} holds a value that is not {col.type_name} ({exc})") from None


def _loose_table(data: dict[str, list], extras: list[str], *, of_frame: bool = False) -> pa.Table:
    """Column values as an Arrow table for :func:`validate_table`: the schema's columns first and
    typed (a fixed-size list as a list of any length), then ``extras``, whose type pyarrow infers
    (it imports pandas to do so: only columns the schema does not know take that way)."""
    arrays, fields = [], []
    for col in COLUMNS:
        arrays.append(_array(col, data[col.name], of_frame=of_frame))
        fields.append(pa.field(col.name, arrays[-1].type, nullable=col.nullable))
    for name in extras:
        arrays.append(pa.array(data[name]))
        fields.append(pa.field(name, arrays[-1].type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def new_table(rows: list[dict[str, Any]]) -> pa.Table:
    """A checked manifest table from row dicts of plain Python values (``str``, ``int``,
    ``float``, ``bool``, lists, ``None``), without pandas: what :func:`to_arrow` makes of
    :func:`new_frame`'s frame of the same rows. Raises :class:`SchemaError` as
    :func:`validate_table` does, or naming the column of a value of the wrong type."""
    table = _loose_table(*_columns_of(rows))
    validate_table(table)
    return _exact(table)


def _loose_arrow(frame: pd.DataFrame) -> pa.Table:
    """The frame as :func:`_loose_table` makes it (extras after the schema's columns)."""
    missing = [c for c in COLUMN_NAMES if c not in frame.columns]
    if missing:
        raise SchemaError(f"manifest lacks the columns {', '.join(missing)}")
    frame = _coerce(frame)

    def with_none(series: pd.Series) -> list:  # missing values (NA, NaN) as None
        return series.astype(object).where(series.notna(), None).tolist()

    data = {
        col.name: with_none(frame[col.name])
        if col.type_name in ("bool", "int64", "float64")
        else frame[col.name].tolist()
        for col in COLUMNS
    }
    extras = [name for name in frame.columns if name not in _BY_NAME]
    data.update({name: with_none(frame[name]) for name in extras})
    return _loose_table(data, extras, of_frame=True)


def _exact(table: pa.Table) -> pa.Table:
    """A table that :func:`validate_table` accepted, with the schema's exact types (fixed-size lists)."""
    fields = [_BY_NAME[f.name].field() if f.name in _BY_NAME else f for f in table.schema]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """The frame as an Arrow table: schema columns first and exactly typed, extras after."""
    return _exact(_loose_arrow(frame))


def with_new_names(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the vocabulary values of :data:`RENAMED` under their new names (the same
    frame when it holds none): manifests, and code, written before a rename stay readable."""
    import pandas as pd

    out = frame
    for name, renames in RENAMED.items():
        if name not in frame.columns:
            continue
        series = frame[name]
        if column(name).is_list:
            old = series.map(
                lambda v, renames=renames: v is not None and not isinstance(v, float) and any(t in renames for t in v)
            )
            if old.any():
                out = out.copy() if out is frame else out
                out.loc[old, name] = pd.Series(
                    [[renames.get(t, t) for t in v] for v in series[old]], index=series.index[old], dtype=object
                )
        elif series.isin(list(renames)).any():
            out = out.copy() if out is frame else out
            out[name] = series.map(lambda v, renames=renames: renames.get(v, v) if isinstance(v, str) else v)
    return out


def from_arrow(table: pa.Table) -> pd.DataFrame:
    import pandas as pd

    frame = table.to_pandas(
        types_mapper={pa.bool_(): pd.BooleanDtype(), pa.int64(): pd.Int64Dtype()}.get,
    )
    return _coerce(with_new_names(frame))


# ----------------------------------------------------------------------------- validation


def validate(frame: pd.DataFrame) -> None:
    """Raise :class:`SchemaError` naming the first offending rows if ``frame`` breaks the schema
    (the rules are :func:`validate_table`'s, checked on the frame as it would be written)."""
    validate_table(_loose_arrow(frame))


def _flat_rows(values: pa.Array, bad_items: pa.Array) -> pa.Array:
    """Rows of the list array ``values`` that hold an item flagged in ``bad_items`` (its flattened items)."""
    rows = np.zeros(len(values), dtype=bool)
    rows[pc.filter(pc.list_parent_indices(values), bad_items).to_pylist()] = True
    return bool_array(rows)


def _vocabulary(col: Column) -> pa.Array:
    return python_array(list(col.vocabulary or ()), pa.string())


# Scalars for compute functions (a Python value passed to one makes pyarrow import pandas)
_FALSE = scalar(False, pa.bool_())


def validate_table(table: pa.Table) -> None:
    """Raise :class:`SchemaError` naming the first offending rows if ``table`` breaks the schema:
    a missing column or one of another type, a duplicate ``image_id``, an empty value where the
    column allows none, a value outside its vocabulary, a list of the wrong length, a label that
    disagrees with ``label_status``, a negative fold. This is the one place the rules live."""
    missing = [c for c in COLUMN_NAMES if c not in table.column_names]
    if missing:
        raise SchemaError(f"manifest lacks the columns {', '.join(missing)}")
    columns = {name: table.column(name).combine_chunks() for name in COLUMN_NAMES}
    for col in COLUMNS:
        if columns[col.name].type not in (col.arrow_type, _loose_type(col)):
            raise SchemaError(
                f"invalid manifest: {col.name} is {columns[col.name].type}, the schema says {col.type_name}"
            )
    ids = columns["image_id"]

    def offenders(mask: pa.Array, limit: int = 5) -> str:
        picked = pc.filter(ids, mask)
        shown = [str(v) for v in picked.slice(0, limit).to_pylist()]
        more = len(picked) - len(shown)
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "")

    problems: list[str] = []
    counts = pc.value_counts(ids)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), scalar(1, pa.int64())))
    if len(repeated):
        problems.append(f"duplicate image_id: {offenders(pc.is_in(ids, value_set=repeated))}")
    for col in COLUMNS:
        values = columns[col.name]
        isnull = values.is_null()
        if not col.nullable and pc.any(isnull).as_py():
            problems.append(f"{col.name} is empty for {offenders(isnull)}")
        if col.vocabulary and col.is_list:
            items = pc.list_flatten(values)
            bad = _flat_rows(values, pc.invert(pc.is_in(items, value_set=_vocabulary(col))))
            if pc.any(bad).as_py():
                problems.append(f"{col.name} holds tags outside {{{', '.join(col.vocabulary)}}} for {offenders(bad)}")
        elif col.vocabulary:
            bad = pc.and_(values.is_valid(), pc.invert(pc.is_in(values, value_set=_vocabulary(col))))
            if pc.any(bad).as_py():
                problems.append(f"{col.name} holds values outside {{{', '.join(col.vocabulary)}}} for {offenders(bad)}")
        if col.list_size:
            lengths = pc.list_value_length(values)
            bad = pc.fill_null(pc.not_equal(lengths, scalar(col.list_size, pa.int64()).cast(lengths.type)), _FALSE)
            if pc.any(bad).as_py():
                problems.append(f"{col.name} must hold {col.list_size} numbers: {offenders(bad)}")
    removed = pc.fill_null(pc.equal(columns["label_status"], scalar("removed", pa.string())), _FALSE)
    has_label = columns["label"].is_valid()
    incoherent = pc.or_(pc.and_(removed, has_label), pc.and_(pc.invert(removed), pc.invert(has_label)))
    if pc.any(incoherent).as_py():
        problems.append(f"label must be empty exactly when label_status is removed: {offenders(incoherent)}")
    if pc.any(pc.fill_null(pc.less(columns["fold"], scalar(0, pa.int64())), _FALSE)).as_py():
        problems.append("fold must be 0 or more")
    if problems:
        raise SchemaError("invalid manifest: " + "; ".join(problems))


# ----------------------------------------------------------------------------- files


class Manifest:
    """A dataset's manifest: the frame plus the provenance of every step that shaped it.

    Made from a frame, or from a checked Arrow table (``table=``: a first ingest, a manifest
    read from disk), whose frame is made on first use; from then on the frame is the manifest
    (change it freely, as any frame)."""

    def __init__(
        self,
        dataset: str,
        frame: pd.DataFrame | None = None,
        provenance: dict[str, Any] | None = None,
        *,
        table: pa.Table | None = None,
    ) -> None:
        if (frame is None) == (table is None):
            raise TypeError("Manifest takes a frame or a table=, one of the two")
        self.dataset = dataset
        self.provenance: dict[str, Any] = {} if provenance is None else provenance
        self._frame = frame
        self._table = table

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            assert self._table is not None
            self._frame, self._table = from_arrow(self._table), None
        return self._frame

    @frame.setter
    def frame(self, frame: pd.DataFrame) -> None:
        self._frame, self._table = frame, None

    def table(self) -> pa.Table:
        """The manifest as the Arrow table that is written (schema types, no provenance), checked."""
        if self._table is not None:
            return self._table
        table = _loose_arrow(with_new_names(self.frame))
        validate_table(table)
        return _exact(table)

    def __len__(self) -> int:
        return len(self._frame) if self._frame is not None else self._table.num_rows  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"Manifest(dataset={self.dataset!r}, rows={len(self)}, steps={sorted(self.provenance)})"


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Validate and write atomically: a crash leaves the previous manifest intact. Renamed
    vocabulary values (:data:`RENAMED`) are written under their new names."""
    write_manifest_table(path, manifest_table(manifest))


def manifest_table(manifest: Manifest) -> pa.Table:
    """The validated Arrow table :func:`write_manifest` writes, provenance included (raises
    :class:`SchemaError` as it does). With :func:`write_manifest_table`, for a writer that has
    other work to finish between checking a manifest and committing it."""
    table = manifest.table()
    meta = dict(table.schema.metadata or {})
    meta[PROVENANCE_KEY] = json.dumps(
        {"schema_version": SCHEMA_VERSION, "dataset": manifest.dataset, "steps": manifest.provenance},
        sort_keys=True,
    ).encode()
    return table.replace_schema_metadata(meta)


def write_manifest_table(path: Path, table: pa.Table) -> None:
    """Write a table made by :func:`manifest_table` atomically (and durably) to ``path``."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _as_written(table: pa.Table) -> bool:
    """Whether ``table`` has the schema's columns, types and current vocabulary names, as this
    version writes them (then it is checked and kept as Arrow; otherwise it goes through a frame)."""
    names = table.column_names
    if names[: len(COLUMN_NAMES)] != list(COLUMN_NAMES):
        return False
    if any(table.schema.field(c.name).type != c.arrow_type for c in COLUMNS):
        return False
    for name, renames in RENAMED.items():
        values = table.column(name)
        if column(name).is_list:
            values = pc.list_flatten(values)
        if pc.any(pc.is_in(values, value_set=python_array(list(renames), pa.string()))).as_py():
            return False
    return True


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """The manifest stored at ``path`` (a ``manifests/<dataset>.parquet``), checked against the
    schema; a file that is not one raises :class:`~ferdata.errors.SchemaError`."""
    path = Path(os.fspath(path))
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise SchemaError(f"cannot read manifest {path}: {exc}") from None
    meta = json.loads((table.schema.metadata or {}).get(PROVENANCE_KEY, b"{}"))
    dataset = meta.get("dataset") or path.stem
    table = table.replace_schema_metadata(None)
    if _as_written(table):
        validate_table(table)
        return Manifest(dataset, provenance=meta.get("steps", {}), table=table)
    frame = from_arrow(table)  # an older manifest: types and vocabulary names brought up to date
    validate(frame)
    return Manifest(dataset=dataset, frame=frame, provenance=meta.get("steps", {}))


def markdown_table() -> str:
    """The column table of ``docs/schema.md``, rendered from the schema (a test keeps them equal)."""
    lines = ["| column | type | nullable | meaning |", "|---|---|---|---|"]
    for col in COLUMNS:
        lines.append(f"| `{col.name}` | {col.type_name} | {'yes' if col.nullable else 'no'} | {col.doc} |")
    return "\n".join(lines)


def has_crop(frame: pd.DataFrame) -> pd.Series:
    """Rows with a face crop: an ``aligned_path`` on an ``aligned`` or ``registered`` row."""
    crop = frame["aligned_path"].notna() & frame["face_status"].isin(CROP_STATUSES)
    return crop.fillna(False).astype(bool)


def labelled_rows(frame: pd.DataFrame) -> pd.Series:
    """Rows with a label (a relabelling's ``removed`` rows have none): the rows folds are assigned to
    and the leakage check compares."""
    return frame["label"].notna().fillna(False).astype(bool)


def usable_rows(frame: pd.DataFrame) -> pd.Series:
    """Rows that are trained on and published: a label (not removed) and a face crop."""
    return (frame["label"].notna() & has_crop(frame)).fillna(False).astype(bool)


def no_crop_reason(face_status: str | None) -> str:
    """Why a labelled row without a face crop is left out, by its ``face_status``."""
    why = _NO_CROP_BECAUSE.get(face_status or "", f"face_status {face_status}, no aligned_path")
    return f"no face crop ({why})"


def left_out_reasons(frame: pd.DataFrame, *, need_crop: bool = True) -> dict[str, int]:
    """Rows that are not usable, counted per reason (one line each wherever they are reported).

    ``need_crop=False`` counts only rows without a label (a dataset of original images needs no crop).
    """
    labelled = frame["label"].notna().fillna(False).astype(bool)
    removed = ~labelled & (frame["label_status"] == "removed").fillna(False).astype(bool)
    reasons: dict[str, int] = {}
    for reason, mask in ((REMOVED_REASON, removed), (NO_LABEL_REASON, ~labelled & ~removed)):
        if mask.any():
            reasons[reason] = int(mask.sum())
    if need_crop:
        missing = labelled & ~has_crop(frame)
        for status, n in frame.loc[missing, "face_status"].fillna("").value_counts().sort_index().items():
            reasons[no_crop_reason(status)] = int(n)
    return reasons

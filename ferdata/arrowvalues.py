"""Python values to Arrow arrays and scalars, built from buffers, without importing pandas.

pyarrow imports pandas the first time it converts a Python value (``pa.array``, ``pa.scalar``,
a Python value passed to a compute function), to ask whether the value is a pandas object; that
import takes about 0.17 s of CPU beyond numpy and pyarrow here. A first ingest builds its
manifest from plain values and needs no pandas otherwise, so the manifest's columns are
converted here: strings, int64, float64, bool and lists of them, the types the schema uses. A
value of another type raises :class:`TypeError`, a little more strictly than ``pa.array`` (which
truncates 1.5 to an int64 1 and reads a string as a list of characters);
``tests/test_arrowvalues.py`` compares the arrays with ``pa.array``'s.
"""

from __future__ import annotations

import numbers
import operator
from itertools import repeat
from typing import Any

import numpy as np
import pyarrow as pa


def _buffer(array: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.ascontiguousarray(array))


def _bits(flags: np.ndarray) -> pa.Buffer:
    """A bitmap of ``flags`` (Arrow's bit order: least significant bit first)."""
    return _buffer(np.packbits(flags.astype(bool), bitorder="little"))


def bool_array(flags: np.ndarray) -> pa.Array:
    """A numpy array of flags as an Arrow boolean array (no nulls)."""
    return pa.Array.from_buffers(pa.bool_(), len(flags), [None, _bits(flags)])


def _offsets(lengths: list[int]) -> pa.Buffer:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return _buffer(offsets)


def _check(present: list, kinds: tuple[type, ...], type_: pa.DataType, refuse: tuple[type, ...] = ()) -> None:
    """Refuse a value that is not one of ``kinds`` (or is one of ``refuse``); each type is checked once."""
    for kind in set(map(type, present)):
        if not issubclass(kind, kinds) or issubclass(kind, refuse):
            value = next(v for v in present if type(v) is kind)
            raise TypeError(f"{value!r} is not {type_}")


def python_array(values: list[Any], type_: pa.DataType) -> pa.Array:
    """``values`` (each one of ``type_``'s Python values, or None for null) as an Arrow array of
    ``type_``: ``pa.string()``, ``pa.int64()``, ``pa.float64()``, ``pa.bool_()`` or a list of one
    of them. A float NaN stays a value, as ``pa.array`` keeps it."""
    n = len(values)
    valid = np.fromiter(map(operator.is_not, values, repeat(None)), dtype=bool, count=n)
    if not valid.any():
        return pa.nulls(n, type_)
    present = values if valid.all() else [v for v in values if v is not None]
    validity = None if valid.all() else _bits(valid)
    if pa.types.is_list(type_):
        _check(present, (list, tuple, np.ndarray), type_)
        lengths = [0 if v is None else len(v) for v in values]
        child = python_array([item for v in present for item in v], type_.value_type)
        return pa.Array.from_buffers(type_, n, [validity, _offsets(lengths)], children=[child])
    if pa.types.is_string(type_):
        _check(present, (str,), type_)
        encoded = [b"" if v is None else v.encode() for v in values]
        lengths = list(map(len, encoded))
        return pa.Array.from_buffers(type_, n, [validity, _offsets(lengths), pa.py_buffer(b"".join(encoded))])
    if pa.types.is_boolean(type_):
        _check(present, (bool, np.bool_), type_)
        flags = np.fromiter((v is not None and bool(v) for v in values), dtype=bool, count=n)
        return pa.Array.from_buffers(type_, n, [validity, _bits(flags)])
    if pa.types.is_int64(type_):
        _check(present, (numbers.Integral,), type_, refuse=(bool, np.bool_))
        data = np.array([0 if v is None else int(v) for v in values], dtype=np.int64)  # OverflowError past int64
    elif pa.types.is_float64(type_):
        _check(present, (numbers.Real,), type_, refuse=(bool, np.bool_))
        data = np.array([0.0 if v is None else float(v) for v in values], dtype=np.float64)
    else:
        raise TypeError(f"no conversion to {type_} here")
    return pa.Array.from_buffers(type_, n, [validity, _buffer(data)])


def scalar(value: Any, type_: pa.DataType) -> pa.Scalar:
    """``value`` as an Arrow scalar of ``type_`` (for compute functions: a Python value passed
    to one is converted by pyarrow, which imports pandas)."""
    return python_array([value], type_)[0]

"""Deterministic Parquet shards, written by a pool of readers with bounded memory.

A part (one config × split, :class:`~ferdata.publish.plan.Part`) becomes one or more shards of
even row ranges: as many as its images need at 500 MB each (``datasets``' own shard size), or
the count asked for. Each shard is cut into row groups of at most 100 rows and 64 MiB of images,
so that the Hub's viewer and streaming readers fetch little at a time.

The files are written with pyarrow alone (``datasets`` is not needed to publish, only to load):
fixed row groups, fixed per-column options, no timestamps. The same plan therefore gives
byte-identical files (with the same pyarrow). Each shard goes to a temporary file that replaces
the shard on close, so a crash (or kill -9) never leaves half a shard under a shard's name.

A pool of threads reads the images of the next row groups while the current one is written, in
order: at most ``2 × workers`` row groups are in memory, whatever the dataset's size.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import PublishError
from ..fsutil import atomic_path
from . import layout
from .features import IMAGE_TYPE, Feature
from .plan import Part

MAX_SHARD_BYTES = 500 * 10**6  # datasets' own max_shard_size ("500MB")
# Row groups: at most 100 rows and 64 MiB of images (datasets caps them at 100 MB), so that the
# Hub's viewer and streaming readers fetch little at a time and the writer's memory stays small.
ROW_GROUP_ROWS = 100
ROW_GROUP_MAX_BYTES = 64 * 2**20


@dataclass
class Shard:
    part: Part
    row_groups: list[tuple[int, int]]  # (start, stop) rows of the part
    path: Path


def default_workers() -> int:
    """Threads reading images when the caller does not say: 2 per core, at most 8."""
    return min(8, 2 * (os.cpu_count() or 1))


def write_parts(
    parts: Sequence[Part], out_dir: Path, *, shards: int | None, workers: int, advance: Callable[[int], None]
) -> list[Path]:
    """Write every part's shards under ``out_dir``; the shards written, in order.

    ``shards`` fixes the shard count of every part (default: one per MAX_SHARD_BYTES of images);
    ``advance(n)`` is called after each row group of ``n`` rows is written. Each part's
    ``num_bytes`` (its rows' Arrow size, what ``datasets`` records as a split's ``num_bytes``) and
    ``files`` are filled in.
    """
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ferdata-publish") as pool:
        sizes = _file_sizes(parts, pool)
        jobs = [s for part in parts for s in _shards(part, out_dir, sizes, shards)]
        return _write_shards(jobs, pool, window=2 * workers, advance=advance)


def _row_groups(row_bytes: Sequence[int], start: int, stop: int) -> list[tuple[int, int]]:
    """Cut rows start:stop into groups of at most ROW_GROUP_ROWS rows and ROW_GROUP_MAX_BYTES."""
    groups, first, size = [], start, 0
    for i in range(start, stop):
        if i > first and (i - first == ROW_GROUP_ROWS or size + row_bytes[i] > ROW_GROUP_MAX_BYTES):
            groups.append((first, i))
            first, size = i, 0
        size += row_bytes[i]
    groups.append((first, stop))
    return groups


def _shards(part: Part, out_dir: Path, sizes: dict[str, int], shards: int | None) -> list[Shard]:
    """Even row ranges of ``part`` (``shards`` of them, default one per MAX_SHARD_BYTES), cut into row groups."""
    columns = [part.rows.column(f.source).to_pylist() for f in part.features if f.image]
    row_bytes = [sum(sizes[path] for path in paths) for paths in zip(*columns, strict=True)]
    if shards is None:
        shards = max(1, math.ceil(sum(row_bytes) / MAX_SHARD_BYTES))
    per = math.ceil(part.n / min(shards, part.n))
    count = math.ceil(part.n / per)
    return [
        Shard(
            part,
            _row_groups(row_bytes, i * per, min(part.n, (i + 1) * per)),
            layout.shard_path(out_dir, part.config, part.split, i, count),
        )
        for i in range(count)
    ]


def _file_sizes(parts: Sequence[Part], pool: ThreadPoolExecutor) -> dict[str, int]:
    paths = sorted(
        {p for part in parts for f in part.features if f.image for p in part.rows.column(f.source).to_pylist()}
    )

    def sizes(batch: list[str]) -> list[int]:
        try:
            return [os.stat(path).st_size for path in batch]
        except OSError as exc:
            raise PublishError(
                f"image {exc.filename} is missing ({exc.strerror}): run ferdata align --only-missing, "
                "or ferdata ingest again for originals"
            ) from None

    batches = [paths[i : i + 1024] for i in range(0, len(paths), 1024)]
    return dict(zip(paths, (n for batch in pool.map(sizes, batches) for n in batch), strict=True))


# ----------------------------------------------------------------------------- reading row groups


def _read_image(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise PublishError(
            f"cannot read {path}: {exc.strerror}; run ferdata align --only-missing (aligned crops) "
            "or ferdata ingest again (originals) to restore it"
        ) from None


def _column(feature: Feature, rows: pa.Table) -> pa.Array:
    values = rows.column(feature.source)
    if feature.image:
        data = [_read_image(p) for p in values.to_pylist()]
        return pa.StructArray.from_arrays(
            [pa.array(data, type=pa.binary()), pa.nulls(len(data), type=pa.string())], fields=list(IMAGE_TYPE)
        )
    if feature.class_names is not None:
        return pc.index_in(values, value_set=pa.array(feature.class_names)).cast(pa.int64()).combine_chunks()
    return values.cast(feature.arrow_type).combine_chunks()


def _row_group(shard: Shard, start: int, stop: int) -> pa.Table:
    """Rows ``start:stop`` of a shard as the published table (image files read here)."""
    rows = shard.part.rows.slice(start, stop - start)
    return pa.Table.from_arrays([_column(f, rows) for f in shard.part.features], schema=shard.part.schema)


# ----------------------------------------------------------------------------- writing shards


def _leaf_paths(name: str, kind: pa.DataType) -> list[str]:
    """Parquet's column paths under an Arrow field (what per-column writer options name)."""
    if pa.types.is_struct(kind):
        return [p for child in kind for p in _leaf_paths(f"{name}.{child.name}", child.type)]
    if pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind):
        return _leaf_paths(f"{name}.list.element", kind.value_type)
    return [name]


class _ShardWriter:
    """One shard's Parquet writer on a temporary file that replaces ``shard.path`` on close."""

    def __init__(self, shard: Shard) -> None:
        schema = shard.part.schema
        images = {f.name for f in shard.part.features if f.image}
        plain = [p for f in schema if f.name not in images for p in _leaf_paths(f.name, f.type)]
        # image bytes are compressed already (PNG/JPEG): no codec, no dictionary, no statistics
        compression = dict.fromkeys(plain, "zstd") | {
            p: "none" for f in schema if f.name in images for p in _leaf_paths(f.name, f.type)
        }
        self.shard = shard
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(shard.path, durable=False))
        try:
            self._writer = self._stack.enter_context(
                pq.ParquetWriter(
                    tmp,
                    schema,
                    compression=compression,
                    use_dictionary=plain,
                    write_statistics=plain,
                    write_page_index=False,
                    store_schema=True,
                )
            )
        except BaseException as exc:  # a full disk fails here already: drop the temporary file, say it in one line
            self.close(exc)
            raise

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)

    def close(self, error: BaseException | None = None) -> None:
        if error is None:
            self._stack.close()
        else:  # the temporary file is deleted, shard.path left as it was
            self._stack.__exit__(type(error), error, error.__traceback__)


def _write_shards(
    jobs: Sequence[Shard], pool: ThreadPoolExecutor, window: int, advance: Callable[[int], None]
) -> list[Path]:
    """Read row groups in parallel (at most ``window`` in memory), write them in order, shard by shard."""
    tasks = ((shard, start, stop) for shard in jobs for start, stop in shard.row_groups)
    pending: deque[tuple[Shard, int, Future]] = deque()

    def fill() -> None:
        while len(pending) < window and (task := next(tasks, None)) is not None:
            pending.append((task[0], task[2] - task[1], pool.submit(_row_group, *task)))

    written: list[Path] = []
    writer: _ShardWriter | None = None
    for part in {id(s.part): s.part for s in jobs}.values():
        part.num_bytes, part.files = 0, []

    def close(writer: _ShardWriter) -> None:
        writer.close()
        written.append(writer.shard.path)
        writer.shard.part.files.append(writer.shard.path)

    try:
        fill()
        while pending:
            shard, n, future = pending.popleft()
            table = future.result()
            fill()
            if writer is None or writer.shard is not shard:
                if writer is not None:
                    close(writer)
                writer = _ShardWriter(shard)
            writer.write(table)
            shard.part.num_bytes += table.nbytes
            advance(n)
        if writer is not None:
            close(writer)
    except BaseException as exc:
        for _, _, future in pending:
            future.cancel()
        if writer is not None:
            writer.close(exc)
        raise
    return written

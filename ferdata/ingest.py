"""``ferdata ingest``: read an archive or folder, extract the originals, write the manifest.

The workspace changes only at the end, all at once: originals are first written into a staging
folder (``.ferdata/staging/<dataset>/``) with a journal, then moved into ``originals/<dataset>/``
and the manifest is replaced atomically. An error before that point leaves the workspace as it
was; a crash leaves the staging folder, which the next run of the same command reuses, so an
interrupted ingest resumes instead of starting over.

Re-ingesting the same source gives the same manifest: image ids come from the source, and the
columns later steps wrote (labels after relabelling, pairs, folds, faces) are kept for every
image whose bytes did not change. A re-ingest never drops work silently: when the source no
longer has rows that hold work (see :func:`work_held`), it is refused unless ``prune=True``; rows
it does drop are kept in ``tables/<dataset>/pruned-<UTC time>.parquet``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .archives import Limits, Password, as_provider, open_tree
from .background import Background
from .errors import FerdataError, LayoutError, UnsafeArchiveError, UsageError, WorkspaceError, shown
from .fsutil import atomic_path, atomic_write_bytes, disk_errors, sync
from .progress import ProgressFn, null_progress
from .schema import (
    SPLITS,
    SYNTHETIC_SOURCE_PREFIX,
    Manifest,
    manifest_table,
    new_table,
    write_manifest,
    write_manifest_table,
)
from .sources import Notice, Record, SideFile, SourceOptions, Unparsed, detect_source, get_source
from .vision.encode import encode_png
from .workspace import Workspace, log

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .vision.detectors import Detector

# Columns that describe the image as the source gave it; everything else was written by later
# steps and survives a re-ingest when the image's bytes are unchanged.
SOURCE_COLUMNS = (
    "image_id",
    "dataset",
    "source",
    "sha256",
    "split",
    "subject_id",
    "clip_id",
    "label_original",
    "masked",
    "pair_key",
    "original_path",
    "width",
    "height",
)
# Source columns a later step may fill where the source says nothing (``mask-synth`` marks an
# original as non-masked and gives it a pair key): the source's value wins only when it has one.
FILLED_WHERE_SOURCE_IS_SILENT = ("masked", "pair_key")


@dataclass
class IngestResult:
    dataset: str
    manifest: Manifest
    rows: int
    written: int  # originals written this run (the rest were already in place or staged)
    kept: int  # rows whose curated columns came from the previous manifest
    dropped: int  # rows of the previous manifest that the source no longer has
    unparsed: list[Unparsed]
    notices: list[str]
    warnings: list[str]
    seconds: float
    align_report: Any = None
    side_files: list[str] = field(default_factory=list)
    pruned_table: str | None = None  # the dropped rows, relative to the workspace (None: none dropped)


class UnparsedFilesError(LayoutError):
    """Files the adapter could not understand; the full list is in a report file."""


class WorkWouldBeLost(FerdataError):
    """A re-ingest would drop rows that hold work later steps did; ``prune=True`` accepts it."""


def work_held(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """For each kind of work later steps write into rows (relabel, folds, pairs, tags, align,
    mask-synth), which rows of the manifest ``frame`` hold it; the keys read as counts ("3 paired")."""

    from .tags import ADDED_ORIGINS

    def has_origin(values, origins=ADDED_ORIGINS) -> bool:
        return values is not None and any(v in origins for v in values)

    masked_origin = frame["masked_origin"].astype(object)
    return {
        "relabelled": frame["label_status"] != "original",
        "in folds": frame["fold"].notna(),
        "paired": frame["pair_id"].notna(),
        "tagged": frame["tag_origin"].map(has_origin).astype(bool)
        | masked_origin.isin(ADDED_ORIGINS)
        | frame["mask_score"].notna(),
        "with alignment results": frame["face_status"].isin(("aligned", "registered", "no_face")),
        "made by mask-synth": frame["source"].astype(str).str.startswith(SYNTHETIC_SOURCE_PREFIX),
    }


def _check_lost_work(previous: pd.DataFrame, kept_ids: set[str], path: Path, dataset: str, prune: bool) -> pd.DataFrame:
    """The previous manifest's rows that are not kept; refused (one line, counted by kind of work)
    when some hold work and not ``prune``."""
    dropped = previous[~previous["image_id"].isin(kept_ids)]
    if prune or dropped.empty:
        return dropped
    import pandas as pd  # a re-ingest: the previous manifest is a frame here

    work = work_held(dropped)
    held = {kind: int(rows.sum()) for kind, rows in work.items()}
    holding = int(pd.concat(list(work.values()), axis=1).any(axis=1).sum())
    if not holding:
        return dropped
    kinds = ", ".join(f"{n:,} {kind}" for kind, n in held.items() if n)
    raise WorkWouldBeLost(
        f"re-ingesting {path.name} would drop {len(dropped):,} of the {len(previous):,} {dataset} rows, because the "
        f"source no longer has them, and {holding:,} of those hold work ({kinds}); the manifest is unchanged. Ingest the complete "
        f"delivery, or pass prune=True to drop them (they are kept in tables/{dataset}/pruned-<time>.parquet)"
    )


def _image_facts(data: bytes) -> tuple[int, int, str | None]:
    """(width, height, error) as a viewer shows the image (the aligner's own header reader)."""
    from .errors import ImageUnreadable
    from .vision.decode import image_size

    try:
        return (*image_size(data), None)
    except ImageUnreadable as exc:
        return 0, 0, str(exc)


class _Staging:
    """Originals written so far, with a journal that lets a crashed ingest resume."""

    def __init__(self, folder: Path, source_key: str, root: Path) -> None:
        self.folder = folder
        self._inside = _InsideWorkspace(root)
        self._inside(folder / "source.json")
        self.files = folder / "files"
        self.journal_path = folder / "journal.jsonl"
        self.done: dict[str, dict] = {}
        marker = folder / "source.json"
        if os.path.lexists(folder) and not _staged_from(marker, source_key):
            shutil.rmtree(folder)  # staged from another archive, or by a run that died before naming it: not ours
        folder.mkdir(parents=True, exist_ok=True)
        if not marker.exists():
            # Not flushed to disk: staging only ever saves work, and a marker lost with a power cut
            # makes the next run start over (above), never reuse another source's files.
            atomic_write_bytes(marker, json.dumps({"key": source_key}).encode(), durable=False)
        if self.journal_path.exists():
            for line in self.journal_path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:  # the last line of a crashed run may be cut short
                    continue
                if (self.files / entry["target"]).exists() or entry.get("in_place"):
                    self.done[entry["target"]] = entry
        self._journal = self.journal_path.open("a")
        self._pending = 0
        self._files = str(self.files)
        self._folders: set[str] = set()

    def write(self, target: str, data: bytes) -> None:
        """Stage one original. No temporary file is needed: a file counts as staged only once its
        journal line is written, after the data, so a half-written one is simply written again.
        (Called on the pipeline's threads, for every image: plain strings, not Paths, are used.)"""
        path = os.path.join(self._files, target)
        with disk_errors(path):
            folder = os.path.dirname(path)
            if folder not in self._folders:
                self._inside(Path(path))
                os.makedirs(folder, exist_ok=True)
                self._folders.add(folder)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)

    def record(self, entry: dict) -> None:
        self.done[entry["target"]] = entry
        with disk_errors(self.journal_path):
            self._journal.write(json.dumps(entry) + "\n")
            self._pending += 1
            if self._pending >= 64:  # a crash loses at most these entries: their files are staged again
                self._journal.flush()
                self._pending = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a full disk: the journal's tail is lost, its files are staged again
            self._journal.close()


def _staged_from(marker: Path, source_key: str) -> bool:
    """Whether the staging folder's marker names ``source_key`` (a missing or damaged one names nothing)."""
    try:
        return json.loads(marker.read_text()).get("key") == source_key
    except (OSError, ValueError, AttributeError):
        return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Pipeline:
    """Per-image work that releases the GIL (PNG encoding, SHA-256, file writes) on a few threads,
    in batches: one task per ``batch`` images (or ``batch_bytes`` of input), so that handing work
    to a thread costs little next to the work itself, even for 48x48 images.

    ``work(item)`` runs on a worker; ``then(result)`` runs on the caller's thread, in submission
    order, so the journal and the manifest rows keep the archive's order. When ``work`` fails,
    the results of the batch before it are still handed to ``then`` (what was staged is
    journalled), then the error is raised. At most ``max_bytes`` of input (and ``depth`` batches)
    are in flight, so memory stays flat however many images there are.

    A batch whose items average under ``inline_below`` bytes is worked on the caller's thread:
    for small files (a few KB of JPEG), the hashing and writing are too short to gain from threads,
    and threads holding the GIL between those calls slow the archive reader on the caller's thread
    (2,000 members of a zip: 0.2 s read in a loop of their own, 0.35 s while workers ran).
    """

    def __init__(
        self,
        work,
        then,
        workers: int = 4,
        batch: int = 256,
        batch_bytes: int = 8 * 2**20,
        depth: int = 8,
        max_bytes: int = 64 * 2**20,
        inline_below: int = 0,
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._work, self._then = work, then
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ferdata-ingest")
        self._pending: deque = deque()
        self._batch: list = []
        self._batch_size, self._batch_bytes, self._depth, self._max_bytes = batch, batch_bytes, depth, max_bytes
        self._inline_below = inline_below
        self._open_bytes = 0  # in the batch being filled
        self._bytes = 0  # in flight, batches submitted or being filled

    def submit(self, item, size: int) -> None:
        self._batch.append(item)
        self._open_bytes += size
        self._bytes += size
        if len(self._batch) >= self._batch_size or self._open_bytes >= self._batch_bytes:
            self._send()
        while self._pending and (len(self._pending) > self._depth or self._bytes > self._max_bytes):
            self._finish_one()

    def _send(self) -> None:
        if not self._batch:
            return
        batch, size = self._batch, self._open_bytes
        self._batch, self._open_bytes = [], 0
        if size < self._inline_below * len(batch):
            while self._pending:  # results are handed over in submission order
                self._finish_one()
            self._bytes -= size
            self._deliver(self._run(batch))
        else:
            self._pending.append((self._pool.submit(self._run, batch), size))

    def _run(self, batch: list) -> tuple[list, BaseException | None]:
        results = []
        try:
            for item in batch:
                results.append(self._work(item))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, raised there
            return results, exc
        return results, None

    def _finish_one(self) -> None:
        future, size = self._pending.popleft()
        self._bytes -= size
        self._deliver(future.result())

    def _deliver(self, outcome: tuple[list, BaseException | None]) -> None:
        results, error = outcome
        for result in results:
            self._then(result)
        if error is not None:
            raise error

    def drain(self) -> None:
        self._send()
        while self._pending:
            self._finish_one()

    def close(self) -> None:
        self._batch = []
        self._pool.shutdown(wait=True, cancel_futures=True)


# Members smaller than this on average are hashed and staged on the reading thread (see _Pipeline).
INLINE_BELOW = 64 * 2**10


def _source_key(path: Path, dataset: str, options: SourceOptions) -> str:
    """What staged files belong to: the source, its dataset, and the options that decide where
    each image goes (a rerun with another ``split`` must not reuse files staged for the first)."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}|{dataset}|{options.split}"


def ingest(
    ws: Workspace | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    password: Password | None = None,
    limits: Limits | None = None,
    label_map: dict[str, str] | None = None,
    skip_unparsed: bool = False,
    split: str | None = None,
    prune: bool = False,
    align: bool = True,
    align_options: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> IngestResult:
    """Ingest ``path`` (archive or folder) into the workspace ``ws`` as dataset ``dataset``.

    ``dataset`` is detected from the layout when None. Files the adapter cannot parse stop the
    ingest (listed in ``.ferdata/reports/``) unless ``skip_unparsed``. ``split`` (``train``,
    ``val`` or ``test``) is the split of the rows of a FER2013-style CSV without a Usage column,
    which is refused without it. A re-ingest that would drop rows holding work (relabelling,
    folds, pairs, tags, faces) is refused unless ``prune``. With ``align`` the faces are detected
    and aligned after the manifest is written (see :mod:`ferdata.align`).
    """
    password = as_provider(password)  # a bad password= fails here, and the value leaves this frame
    ws = Workspace.of(ws)
    path = Path(os.fspath(path)).expanduser()
    if not path.exists():
        raise FerdataError(f"{path} does not exist: give the path of the archive or folder you received")
    if split is not None and split not in SPLITS:
        raise UsageError(f"split={split!r} is not one of {', '.join(SPLITS)}")
    if align and (align_options or {}).get("engine") == "ray":
        from .align_ray import import_ray

        import_ray()  # without the extra, say so before extracting anything
    progress = progress or null_progress
    start = time.perf_counter()
    with ws.lock("ingest"):
        detector = _preload_detector(align_options or {}) if align else None  # loads while the originals are extracted
        scratch = ws.internal / "tmp"
        with disk_errors(scratch):
            scratch.mkdir(parents=True, exist_ok=True)
        with open_tree(path, password=password, limits=limits or Limits(), scratch=scratch) as tree:
            names = [m.name for m in tree.members()]
            if not names:
                raise LayoutError(f"{path.name} holds no files: check that it is the archive or folder you received")
            source = get_source(dataset) if dataset else detect_source(names, str(path), tree)
            if split is not None and not source.takes_split:
                raise UsageError(
                    f"split={split!r} is for FER2013-style CSVs without a Usage column; {source.name} takes its "
                    "splits from its layout: leave split out"
                )
            options = SourceOptions(label_map=label_map, split=split)
            result = _ingest_tree(tree, names, path, source, ws, options, skip_unparsed, prune, progress)
        shutil.rmtree(scratch, ignore_errors=True)
        if align:
            from .align import align_manifest, discard_journal

            align_kwargs = dict(align_options or {})
            if detector is not None:
                align_kwargs["preloaded"] = detector.result()  # a loading error is raised here, as align_manifest would
            manifest, report = align_manifest(ws, result.manifest, only_missing=True, progress=progress, **align_kwargs)
            ws.save(manifest)
            discard_journal(ws, manifest.dataset)
            result.manifest, result.align_report = manifest, report
    result.seconds = time.perf_counter() - start
    log.info("ingest: %s rows of %s from %s in %.1f s", result.rows, result.dataset, path.name, result.seconds)
    for warning in result.warnings:
        log.warning("ingest: %s", warning)
    return result


def _preload_detector(options: dict[str, Any]) -> Background[Detector] | None:
    """The detector that ``align_options`` name, loaded on a thread of its own while ingest reads
    and stages the originals (importing onnxruntime and building the session take about half a
    second, which would otherwise wait until the manifest is committed); its errors are raised
    where the aligner would have met them. None when the options hold a loaded detector."""
    name = options.get("detector", "retinaface")
    if not isinstance(name, str):
        return None
    args = (name, options.get("model_dir"), options.get("device", "auto"), options.get("engine", "local"))
    return Background("ferdata-detector", _load_run_detector, *args)


def _load_run_detector(name: str, model_dir, device: str, engine: str) -> Detector:
    from .align import load_run_detector  # imported on the loading thread too

    return load_run_detector(name, model_dir, device, engine)


def _ingest_tree(
    tree, names, path: Path, source, ws: Workspace, options: SourceOptions, skip_unparsed: bool, prune: bool, progress
) -> IngestResult:
    name = source.name
    previous = ws.load(name) if name in ws.datasets() else None
    old_rows = {}
    if previous is not None:
        old_rows = {row["image_id"]: row for row in previous.table().to_pylist()}

    inside = _InsideWorkspace(ws.root)
    for folder in (ws.manifest_path(name).parent, ws.tables_dir(name), ws.originals_dir(name)):
        inside(folder / "-")  # before anything is staged: a link planted there is refused at once
    with disk_errors(ws.staging_dir(name)):
        staging = _Staging(ws.staging_dir(name), _source_key(path, name, options), ws.root)
    originals = ws.originals_dir(name)
    records: list[Record] = []
    facts: dict[str, dict] = {}  # target -> sha256, width, height, error
    unparsed: list[Unparsed] = []
    notices: list[str] = []
    side_files: list[SideFile] = []
    written = 0

    def put(record: Record, sha: str, width: int, height: int, error: str | None, payload) -> dict:
        """Stage one original unless the workspace already holds these bytes (runs on a worker)."""
        entry = {"target": record.target, "sha256": sha, "width": width, "height": height, "error": error}
        old = old_rows.get(record.image_id)
        if old is not None and old["sha256"] == sha and inside(_inside(originals, record.target)).exists():
            entry["in_place"] = True  # unchanged since the last ingest: nothing to write
        else:
            staging.write(record.target, payload())
        return entry

    def stage(item: tuple[Record, Any]) -> dict:
        """Hash and stage one image: a CSV row's pixels (stored as PNG) or a member's bytes."""
        record, payload = item
        if isinstance(payload, bytes):
            return put(record, hashlib.sha256(payload).hexdigest(), *_image_facts(payload), lambda: payload)
        height, width = payload.shape[:2]
        return put(
            record,
            hashlib.sha256(payload.tobytes()).hexdigest(),
            width,
            height,
            None,
            lambda: encode_png(payload, 1, huffman_only=True),
        )

    def done(entry: dict) -> None:
        nonlocal written
        written += not entry.get("in_place", False)
        staging.record(entry)
        facts[entry["target"]] = entry

    pixels, members = _Pipeline(stage, done), _Pipeline(stage, done, inline_below=INLINE_BELOW)
    try:
        # Pass 1: the adapter's records. CSV sources carry pixels, stored as they stream by.
        for item in source.discover(tree, names, options):
            if isinstance(item, Record):
                records.append(item)
                if item.pixels is not None:
                    item_pixels, item.pixels = item.pixels, None  # records keep no pixels: memory stays flat
                    if item.target in staging.done:
                        facts[item.target] = staging.done[item.target]
                    else:
                        pixels.submit((item, item_pixels), item_pixels.nbytes)
                    if len(records) % 500 == 0:
                        progress("reading", len(records), None)
            elif isinstance(item, Unparsed):
                unparsed.append(item)
            elif isinstance(item, SideFile):
                side_files.append(item)
            elif isinstance(item, Notice):
                notices.append(item.message)
        pixels.drain()
        if unparsed and not skip_unparsed:
            report = _unparsed_report(ws, name, unparsed)
            first = "; ".join(
                f"{u.member if len(u.member) <= 120 else shown(u.member, 120)} ({u.reason})" for u in unparsed[:3]
            )
            raise UnparsedFilesError(
                f"{_count_unparsed(unparsed)} in {path.name} {'does' if len(unparsed) == 1 else 'do'} not fit the "
                f"{name} layout, e.g. {first}. "
                f"Full list: {report}. Fix or remove them, or pass skip_unparsed=True to ingest the rest"
            )
        if not records:
            raise LayoutError(f"{path.name} holds no {name} images: check the archive, or pass the right dataset=")
        _check_unique(records, name)
        if previous is not None:  # before extracting anything: the ids alone tell which rows go
            _check_lost_work(previous.frame, _kept_ids(records, old_rows), path, name, prune)

        # Pass 2: image members, in the archive's own order (one pass for tar and 7z).
        by_member = {r.member: r for r in records if r.member is not None}
        wanted = [m for m, r in by_member.items() if r.target not in staging.done]
        for r in by_member.values():
            if r.target in staging.done:
                facts[r.target] = staging.done[r.target]
        total = len(by_member)
        done_count = total - len(wanted)
        for member, data in tree.iter_read(wanted):
            members.submit((by_member[member], data), len(data))
            done_count += 1
            if done_count % 50 == 0 or done_count == total:
                progress("extracting", done_count, total)
        members.drain()
        side_data = {f.name: tree.read(f.member) for f in side_files}
    finally:
        pixels.close()
        members.close()
        staging.close()

    # Commit: move the staged files into place, flush them to disk, then replace the manifest.
    table, kept = _build_table(name, records, facts, old_rows, ws)
    dropped = (
        _check_lost_work(previous.frame, set(table.column("image_id").to_pylist()), path, name, prune)
        if previous is not None
        else None
    )
    moves = _placements(staging.files, originals, inside) if staging.files.exists() else []
    for staged, final in moves:  # every destination was checked before the first move
        with disk_errors(final):
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
    for file_name, data in side_data.items():
        atomic_write_bytes(inside(ws.tables_dir(name) / file_name), data, durable=False)
    pruned_table = None
    if dropped is not None and not dropped.empty:
        pruned_table = _keep_dropped(ws, name, dropped, path, inside)
    flushing = Background("ferdata-sync", sync, ws.root)  # the originals reach the disk while the manifest is checked
    provenance = dict(previous.provenance) if previous is not None else {}
    provenance["ingest"] = {
        "archive": path.name,
        "archive_bytes": path.stat().st_size if path.is_file() else None,
        "adapter": name,
        "ferdata_version": __version__,
        "rows": table.num_rows,
        "side_files": sorted(side_data),
        "skipped_unparsed": len(unparsed),
    }
    manifest = Manifest(name, provenance=provenance, table=table)  # its frame is made if asked for
    try:
        stored = manifest_table(manifest)
    finally:
        flushing.result()
    write_manifest_table(ws.manifest_path(name), stored)  # the commit (what ws.save does)
    shutil.rmtree(staging.folder, ignore_errors=True)
    if unparsed:
        _unparsed_report(ws, name, unparsed, folder=ws.tables_dir(name))
    return IngestResult(
        dataset=name,
        manifest=manifest,
        rows=table.num_rows,
        written=written,
        kept=kept,
        dropped=0 if dropped is None else len(dropped),
        unparsed=unparsed,
        notices=notices,
        warnings=check_expected_counts(manifest),
        seconds=0.0,
        side_files=sorted(side_data),
        pruned_table=pruned_table,
    )


def _placements(staged: Path, final: Path, inside) -> list[tuple[Path, Path]]:
    """The renames that move the staged tree ``staged`` into ``final``: a folder that ``final``
    lacks moves whole, in one rename (so a first ingest moves one folder, not every file); into a
    folder it has, entry by entry. Every destination is checked by ``inside`` (no link planted in
    the workspace leads the move outside it)."""
    inside(final)
    if not os.path.lexists(final) or not staged.is_dir():
        return [(staged, final)]
    inside(final / "-")  # the folder itself: a link to elsewhere is refused, not written through
    moves = []
    for entry in sorted(os.scandir(staged), key=lambda e: e.name):
        moves += _placements(Path(entry.path), final / entry.name, inside)
    return moves


def _count_unparsed(unparsed: list[Unparsed]) -> str:
    """'2 rows', '3 files' or '3 files and 2 rows': CSV rows are rows, not files."""
    rows = sum("#row=" in u.member for u in unparsed)
    files = len(unparsed) - rows
    parts = [f"{files} file{'s' * (files != 1)}" if files else "", f"{rows} row{'s' * (rows != 1)}" if rows else ""]
    return " and ".join(p for p in parts if p)


def _kept_ids(records: list[Record], old_rows: dict) -> set[str]:
    """Ids a new manifest from ``records`` keeps: the source's, and the mask-synth rows made from them."""
    ids = {r.image_id for r in records}
    synthetic = {
        image_id
        for image_id, old in old_rows.items()
        if old["source"].startswith(SYNTHETIC_SOURCE_PREFIX) and old["source"][len(SYNTHETIC_SOURCE_PREFIX) :] in ids
    }
    return ids | synthetic


def _keep_dropped(ws: Workspace, dataset: str, dropped: pd.DataFrame, path: Path, inside) -> str:
    """Write the rows a re-ingest drops to ``tables/<dataset>/pruned-<UTC time>.parquet`` (a
    manifest-shaped table: :func:`ferdata.schema.read_manifest` reads it); its relative path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = ws.tables_dir(dataset)
    target = folder / f"pruned-{stamp}.parquet"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"pruned-{stamp}-{n}.parquet"
    provenance = {"pruned_by": {"archive": path.name, "ferdata_version": __version__, "rows": len(dropped)}}
    write_manifest(
        inside(target), Manifest(dataset=dataset, frame=dropped.reset_index(drop=True), provenance=provenance)
    )
    return ws.relative(target)


class _InsideWorkspace:
    """Refuses a path whose folder resolves outside the workspace (a symlink planted in it), so
    that nothing is ever moved or written through such a link. Folders are checked once."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root).resolve()
        self._checked: set[Path] = set()

    def __call__(self, path: Path) -> Path:
        folder = path.parent
        if folder not in self._checked:
            resolved = folder.resolve()  # follows every link on the way, even for folders not made yet
            if not resolved.is_relative_to(self._root):
                raise WorkspaceError(
                    f"refusing to write {path}: its folder leads to {resolved}, outside the workspace {self._root} "
                    "(a symbolic link inside the workspace?); remove the link and run the same command again"
                )
            self._checked.add(folder)
        return path


def _inside(folder: Path, relative: str) -> Path:
    """``folder/relative``, refusing a ``relative`` that climbs out of ``folder`` by its spelling
    (links on the way are :class:`_InsideWorkspace`'s concern)."""
    if relative.startswith("/") or ".." in relative.split("/"):
        raise UnsafeArchiveError(f"refusing to write {relative!r} outside {folder}: the archive is unsafe")
    return folder / relative


def _check_unique(records: list[Record], dataset: str) -> None:
    counts = Counter(r.image_id for r in records)
    clashes = [i for i, n in counts.items() if n > 1]
    if clashes:
        raise LayoutError(
            f"{len(clashes)} {dataset} images share an id with another file, e.g. {clashes[0]} "
            "(same name with two image extensions?): remove the duplicates and ingest again"
        )


def _build_table(
    name: str, records: list[Record], facts: dict[str, dict], old_rows: dict, ws: Workspace
) -> tuple[pa.Table, int]:
    """The new manifest (checked) and how many rows kept their curated columns: those come from
    ``old_rows`` (the previous manifest's rows, plain values) where the bytes are unchanged.

    Rows ferdata made itself (``mask-synth``) are not in the source: they are kept as long as the
    image they were made from is kept unchanged.
    """
    rows, kept_ids = [], set()
    prefix = ws.originals_dir(name).relative_to(ws.root).as_posix()
    for record in records:
        fact = facts[record.target]
        row = record.manifest_fields()
        row.update(
            dataset=name,
            sha256=fact["sha256"],
            original_path=f"{prefix}/{record.target}",
            width=fact["width"],
            height=fact["height"],
            label=record.label_original,
        )
        if fact.get("error"):
            row.update(face_status="unreadable", face_error=fact["error"])
        old = old_rows.get(record.image_id)
        if old is not None and old["sha256"] == row["sha256"] and old["label_original"] == row["label_original"]:
            row.update({k: v for k, v in old.items() if k not in SOURCE_COLUMNS})
            for column in FILLED_WHERE_SOURCE_IS_SILENT:
                if row[column] is None and old[column] is not None:
                    row[column] = old[column]
            kept_ids.add(record.image_id)
        rows.append(row)
    synthetic = [
        old
        for old in old_rows.values()
        if old["source"].startswith(SYNTHETIC_SOURCE_PREFIX)
        and old["source"][len(SYNTHETIC_SOURCE_PREFIX) :] in kept_ids
    ]
    rows.extend(synthetic)
    rows.sort(key=lambda r: r["image_id"])
    return new_table(rows), len(kept_ids) + len(synthetic)


def _unparsed_report(ws: Workspace, dataset: str, unparsed: list[Unparsed], folder: Path | None = None) -> Path:
    """Write every unparsed file with its reason to a CSV; return its path."""
    import csv

    folder = folder or ws.internal / "reports"
    path = _InsideWorkspace(ws.root)(folder / f"unparsed-{dataset}.csv")
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["member", "reason"])
        writer.writerows((u.member, u.reason) for u in unparsed)
    return path


def check_expected_counts(manifest: Manifest) -> list[str]:
    """Warnings where the manifest differs from the counts the dataset's authors published."""
    from .resources import load_toml

    expected = load_toml(manifest.dataset).get("expected", {})
    table = manifest.table()
    masked, splits = table.column("masked").to_pylist(), table.column("split").to_pylist()
    observed = {
        "images": table.num_rows,
        "subjects": len(set(table.column("subject_id").to_pylist()) - {None}),
        "masked": sum(v is True for v in masked),
        "nonmasked": sum(v is False for v in masked),
        "clips": len(set(table.column("clip_id").to_pylist()) - {None}),
        **{split: splits.count(split) for split in ("train", "val", "test")},
    }
    differences = [
        f"{observed[key]:,} {key} (published {want:,})"
        for key, want in expected.items()
        if observed.get(key) is not None and observed[key] != want
    ]
    if not differences:
        return []
    return [f"{manifest.dataset} differs from the counts its authors published: " + ", ".join(differences)]

""":func:`publish`: a curated workspace becomes a dataset folder (and, with ``push=``, a Hub repo).

The steps, each in its own module: check the arguments and the output folder (publish writes
only into a new or empty folder, or one it wrote before, recognised by :mod:`.layout`); plan the
rows of each config and split (:mod:`.plan`); write the shards (:mod:`.shards`); write the card
(:mod:`.card`); delete what an earlier publish left that this one did not write; push
(:mod:`.hub`). A push without a token or network fails before anything is written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PublishError, UsageError
from ..fsutil import atomic_write_bytes, sync
from ..progress import ProgressFn, null_progress
from ..workspace import Workspace, WorkspaceLike
from . import layout
from .card import CardFacts, dataset_card, terms_of
from .hub import PUSH_TIMEOUT_S, hub_client, push_folder
from .plan import IMAGE_MODES, fold_counts, plan_parts
from .shards import default_workers, write_parts

if TYPE_CHECKING:
    import os


@dataclass
class PublishResult:
    """What :func:`publish` wrote (and pushed)."""

    dataset: str
    out_dir: Path
    images: str
    class_names: tuple[str, ...]
    counts: dict[str, dict[str, int]]  # config -> split -> rows
    left_out: dict[str, int]  # reason -> rows (pairs for the pe reasons)
    gated: bool
    folds: dict[int, int] = field(default_factory=dict)  # published mix rows per fold
    files: list[Path] = field(default_factory=list)
    bytes_written: int = 0
    seconds: float = 0.0
    pushed_to: str | None = None

    @property
    def configs(self) -> list[str]:
        return list(self.counts)

    @property
    def rows(self) -> int:
        return sum(n for splits in self.counts.values() for n in splits.values())


def _check_arguments(
    images: str, configs: Sequence[str], shards: int | None, workers: int | None, push: str | None, public: bool
) -> None:
    if images not in IMAGE_MODES:
        raise UsageError(f"images={images!r} is not one of {', '.join(IMAGE_MODES)}")
    unknown = [c for c in configs if c not in layout.CONFIGS]
    if unknown:
        raise UsageError(f"unknown config {', '.join(unknown)}: choose from {', '.join(layout.CONFIGS)}")
    if shards is not None and shards < 1:
        raise UsageError(f"shards={shards} must be 1 or more")
    if workers is not None and workers < 1:
        raise UsageError(f"workers={workers} must be 1 or more")
    if public and push is None:
        raise UsageError("public=True only applies with push=REPO_ID: a local folder is neither public nor private")


def _prepare_out_dir(out_dir: Path) -> None:
    """``out_dir`` may be new, empty, or a folder an earlier publish wrote (even one killed before
    its card); nothing else is touched."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"out_dir {out_dir} is a file: choose a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not layout.written_by_publish(out_dir):
        raise UsageError(
            f"out_dir {out_dir} is not empty and was not written by ferdata publish: choose a new or empty folder"
        )
    out_dir.mkdir(parents=True, exist_ok=True)


def _remove_stale(out_dir: Path, written: set[Path]) -> None:
    """Shards of an earlier publish that this one did not write (another shard count or config),
    the temporary files of a publish that was killed, and the config folders left empty."""
    for path in layout.stale_files(out_dir, written):
        path.unlink()
    for folder in layout.empty_config_folders(out_dir):
        folder.rmdir()


def publish(
    ws: WorkspaceLike,
    out_dir: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    images: str = "aligned",
    include_removed: bool = False,
    push: str | None = None,
    public: bool = False,
    shards: int | None = None,
    configs: Sequence[str] | None = None,
    workers: int | None = None,
    push_timeout: float = PUSH_TIMEOUT_S,
    progress: ProgressFn | None = None,
) -> PublishResult:
    """Write ``out_dir`` as a Hugging Face dataset folder (README.md card + Parquet shards).

    ``images``: ``aligned`` embeds the face crops of the usable rows (label and crop: ``aligned``
    or ``registered``; the others are left out and counted by reason), ``original`` the extracted
    originals of every labelled row. Removed rows are left out unless ``include_removed``
    (their ``label`` is then null and ``label_status`` says ``removed``). ``shards`` fixes the
    shard count of every config × split (default: one per 500 MB of images); ``configs``
    chooses among mix, nm, m, pe (default: all that have rows); ``workers`` threads read the
    images (default: 2 per core, at most 8). ``push`` then uploads the folder to that Hub dataset
    repo, private unless ``public``. Reads the workspace only: no lock needed.
    """
    ws = Workspace.of(ws)
    started = time.perf_counter()
    configs = (configs,) if isinstance(configs, str) else tuple(configs or layout.CONFIGS)
    _check_arguments(images, configs, shards, workers, push, public)
    progress = progress or null_progress
    manifest = ws.load(dataset)
    terms = terms_of(manifest.dataset)
    hub = hub_client(push_timeout) if push is not None else None  # no token or network: fail before writing
    out_dir = Path(out_dir).expanduser().resolve()
    _prepare_out_dir(out_dir)

    parts, left_out, class_names = plan_parts(
        ws, manifest, images=images, include_removed=include_removed, configs=configs
    )
    if not parts:
        reasons = ", ".join(f"{k}: {v}" for k, v in left_out.items()) or "the manifest is empty"
        raise PublishError(
            f"nothing to publish from {manifest.dataset} ({reasons}): run ferdata align, or pass images='original'"
        )
    total = sum(p.n for p in parts)
    done = 0
    lock = threading.Lock()

    def advance(n: int) -> None:
        nonlocal done
        with lock:
            done += n
            progress("publish", done, total)

    progress("publish", 0, total)
    written = write_parts(parts, out_dir, shards=shards, workers=workers or default_workers(), advance=advance)

    counts: dict[str, dict[str, int]] = {}
    for part in parts:
        counts.setdefault(part.config, {})[part.split] = part.n
    result = PublishResult(
        dataset=manifest.dataset,
        out_dir=out_dir,
        images=images,
        class_names=class_names,
        counts=counts,
        left_out=left_out,
        gated=terms["gated"],
        folds=fold_counts(parts),
    )
    card = dataset_card(CardFacts(manifest, parts, terms, images, class_names, left_out, include_removed))
    card_path = out_dir / layout.CARD
    atomic_write_bytes(card_path, card.encode(), durable=False)
    _remove_stale(out_dir, set(written))
    sync()
    result.files = [card_path, *written]
    result.bytes_written = sum(p.stat().st_size for p in result.files)
    if push is not None:
        result.pushed_to = push_folder(out_dir, push, dataset=manifest.dataset, terms=terms, public=public, api=hub)
    result.seconds = time.perf_counter() - started
    return result

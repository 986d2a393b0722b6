"""The Ray engine of :func:`ferdata.align.align_manifest` (``engine="ray"``): detection and
alignment spread over a Ray cluster.

The rows to align become a Ray Data dataset of ``(row, path)``; ``map_batches`` runs them
through :class:`AlignActor`, a stateful class that Ray starts once per actor and that holds one
detector (one onnxruntime session) for its whole life: one GPU per actor when CUDA is asked for,
CPU actors otherwise. Each actor runs the work it is given, which ``align_manifest`` makes from
:func:`ferdata.align.align_images`: the very steps the local engine runs, so both engines give
the same statuses, landmarks and crop bytes. Actors
write the crops straight into the workspace, which must therefore be a folder every node sees at
the same path (shared storage, see ``docs/scale-out.md``); only the small per-row results travel
back to the driver, which journals each batch as it arrives and merges them into the manifest
exactly as the local engine does.

Faults: Ray restarts an actor that dies and runs its unfinished batches again (``max_restarts``
and ``max_task_retries`` are unlimited by default for Ray Data actors); a crop is named by the
SHA-256 of its bytes and written atomically, so writing it twice is harmless, and the driver keys
results by row, so a retried batch neither loses nor duplicates rows. A run that fails anyway
leaves the journal of the batches that arrived, and the next run resumes from it.

``import ray`` happens only in here, and only when the engine is used: Ray is an optional extra.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FerdataError, UsageError

# What an actor runs on a batch: the loaded detector and the images' paths -> each row's values.
Work = Callable[[Any, list[Path]], list[dict[str, Any]]]
RAY_EXTRA = 'pip install "ferdata[ray]"'
# A driver that starts its own local Ray only moves row numbers, paths and per-row results through
# the object store: a small store is plenty, and leaves the machine's memory to the detector.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2


def import_ray():
    """The ``ray`` module (with Ray Data), or a one-line error naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise FerdataError(
            f"engine='ray' needs Ray, which is not installed: run {RAY_EXTRA}, or use engine='local'"
        ) from None
    return ray


class AlignActor:
    """One Ray actor: loads the detector once, then aligns batch after batch.

    ``work(detector, paths)`` is the per-image work, the row's new column values for each path
    (:func:`ferdata.align.align_images` with the run's settings). A batch is a dict of numpy arrays
    with ``row`` and ``path`` (absolute, on the storage all nodes share); the answer has ``row``,
    ``values`` (the row's new column values as JSON, the form the journal stores them in) and
    ``provider`` (the onnxruntime provider that ran the detector).
    """

    def __init__(self, *, work: Work, detector: str, model_dir: str | None, device: str) -> None:
        from .vision.detectors import load_detector

        self.model = load_detector(detector, Path(model_dir) if model_dir else None, device)
        self.work = work

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.work(self.model, [Path(str(p)) for p in batch["path"]])
        return {
            "row": np.asarray(batch["row"], dtype=np.int64),
            "values": np.array([json.dumps(v, sort_keys=True) for v in values], dtype=object),
            "provider": np.array([self.model.provider] * len(values), dtype=object),
        }


def _connect(ray, address: str | None) -> bool:
    """Join the Ray cluster at ``address`` (or start a local one when None and none is running
    in this process); whether this call started the connection (and so must end it)."""
    _check_reachable(address)
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:
        options["object_store_memory"] = LOCAL_OBJECT_STORE_BYTES
    try:
        ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        why = (str(exc).split(". ")[0] or type(exc).__name__).rstrip(".")
        raise FerdataError(
            f"cannot join the Ray cluster at ray_address={address} ({why}): start it with `ray start --head` on the head "
            "node (docs/scale-out.md), or run without ray_address= to start a local one"
        ) from None
    return True


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail at once when nothing answers at a ``HOST:PORT`` address: Ray itself keeps retrying
    for minutes."""
    if address is None or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(
            f"ray_address={address} is not auto or HOST:PORT (the head node's address, e.g. 10.0.0.1:6379)"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise FerdataError(
            f"cannot join the Ray cluster at ray_address={address} (nothing answers there: {exc.strerror or exc}): "
            "check the head node's address and that `ray start --head` runs there (docs/scale-out.md)"
        ) from None


def _quiet(ray) -> None:
    """No progress bars or per-operator lines from Ray Data: the caller reports progress itself."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    if hasattr(context, "enable_operator_progress_bars"):
        context.enable_operator_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its warnings (too few resources...) stay
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"


def align_on_ray(
    rows: list[tuple[int, Path]],
    work: Work,
    *,
    detector: str,
    model_dir: Path | None,
    device: str,
    batch_size: int,
    on_batch: Callable[[list[tuple[int, dict[str, Any]]]], None],
    address: str | None = None,
    actors: int | None = None,
    actor: type | None = None,
) -> str:
    """Run ``work`` on ``rows`` (manifest row number, absolute path of the original) on Ray, in
    batches of ``batch_size`` on actors holding the detector; the provider that ran the detector
    (several joined by ``+`` when the actors differ). ``work`` must be picklable (a module-level
    function, or a :func:`functools.partial` of one): Ray ships it to every actor.

    ``on_batch`` receives each finished batch as ``(row, values)`` pairs, as soon as it arrives.
    ``address`` is a cluster's address (``auto`` for one started on this machine with
    ``ray start``); None uses the Ray this process is already connected to, else starts a local
    one for the call. ``actors`` is the number of detector actors (default: one per GPU when
    ``device`` asks for CUDA, else one per CPU of the cluster); more actors than GPUs share them,
    each taking an equal fraction, which keeps a GPU busy when decoding is the bottleneck. ``actor`` is the class
    ``map_batches`` runs (default :class:`AlignActor`; a subclass, for tests or instrumentation).
    """
    if actors is not None and actors < 1:
        raise UsageError(f"ray_actors={actors} must be 1 or more")
    ray = import_ray()
    started = _connect(ray, address)
    try:
        _quiet(ray)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if device == "cuda" and gpus == 0:
            raise FerdataError(
                "device=cuda: the Ray cluster has no GPU; start its nodes with GPUs (docs/scale-out.md) or use device=cpu"
            )
        on_gpus = device == "cuda" or (device == "auto" and gpus > 0)
        if actors is None:
            actors = gpus if on_gpus else max(1, int(resources.get("CPU", 1)))
        per_actor: dict[str, float] = {"num_cpus": 1}
        if on_gpus:  # one GPU per actor; more actors than GPUs share them (decoding is on the CPU)
            per_actor["num_gpus"] = 1 if actors <= gpus else gpus / actors
        dataset = ray.data.from_items(
            [{"row": row, "path": str(path)} for row, path in rows],
            override_num_blocks=max(1, min(len(rows) // batch_size + 1, 4 * actors)),
        )
        aligned = dataset.map_batches(
            actor or AlignActor,
            fn_constructor_kwargs={
                "work": work,
                "detector": detector,
                "model_dir": str(model_dir) if model_dir else None,
                "device": device,
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors, max_concurrent_calls_per_actor=2),
            **per_actor,
        )
        providers: set[str] = set()
        for batch in aligned.iter_batches(batch_size=None, batch_format="numpy"):
            on_batch(
                [(int(row), json.loads(values)) for row, values in zip(batch["row"], batch["values"], strict=True)]
            )
            providers.update(str(p) for p in batch["provider"])
        return "+".join(sorted(providers))
    except ray.exceptions.RayError as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise FerdataError(
            f"the Ray run failed ({first}); the rows finished so far are kept: run the same command again to resume"
        ) from None
    finally:
        if started:
            ray.shutdown()

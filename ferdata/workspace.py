"""The workspace folder: where each dataset's manifest and files live, and its writer lock.

Layout (every path recorded in a manifest is relative to the workspace root, so the folder can
be moved or archived whole)::

    WORKSPACE/
      manifests/<dataset>.parquet    the manifest
      originals/<dataset>/...        originals extracted from the archive
      aligned/<dataset>/...          aligned faces
      tables/<dataset>/...           votes, audit, pair and fold tables, reports
      .ferdata/lock                  present while a command writes (holder's pid inside)
      .ferdata/staging/<dataset>/    an ingest in progress (kept for resuming after a crash)
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .errors import WorkspaceError, WorkspaceLocked, WorkspaceWriteError
from .fsutil import TEMP_PREFIX, remove_stale_temps

if TYPE_CHECKING:
    from .schema import Manifest

log = logging.getLogger("ferdata")

ENV_VAR = "FERDATA_WORKSPACE"
# A lock file that is still empty (or unreadable) this many seconds after it was created was left
# by a process killed between creating it and writing its holder: nobody can hold it any more.
EMPTY_LOCK_STALE_S = 5.0

# Workspaces whose lock this thread holds, and how deeply (a library function that writes takes the
# lock, and may call another that takes it too: the inner one only counts).
_held = threading.local()

P = ParamSpec("P")
R = TypeVar("R")


def _depths() -> dict[Path, int]:
    if not hasattr(_held, "depth"):
        _held.depth = {}
    return _held.depth


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Workspace:
    """A workspace folder. ``Workspace("path")`` takes a str or any path-like; :meth:`of` also
    takes a ``Workspace``, which is what every library function does with its ``ws`` argument."""

    root: Path

    def __post_init__(self) -> None:
        if not isinstance(self.root, Path):
            object.__setattr__(self, "root", Path(os.fspath(self.root)))

    @classmethod
    def of(cls, ws: Workspace | str | os.PathLike[str]) -> Workspace:
        """``ws`` itself, or the workspace at that path (made absolute)."""
        return ws if isinstance(ws, Workspace) else cls.resolve(ws)

    @classmethod
    def resolve(cls, path: str | os.PathLike[str] | None = None) -> Workspace:
        """``path``, else ``$FERDATA_WORKSPACE``, else the current directory."""
        chosen = path if path is not None else os.environ.get(ENV_VAR) or Path.cwd()
        return cls(Path(chosen).expanduser().resolve())

    # -- paths ---------------------------------------------------------------------------------
    @property
    def internal(self) -> Path:
        return self.root / ".ferdata"

    def manifest_path(self, dataset: str) -> Path:
        return self.root / "manifests" / f"{dataset}.parquet"

    def originals_dir(self, dataset: str) -> Path:
        return self.root / "originals" / dataset

    def aligned_dir(self, dataset: str) -> Path:
        return self.root / "aligned" / dataset

    def tables_dir(self, dataset: str) -> Path:
        return self.root / "tables" / dataset

    def staging_dir(self, dataset: str) -> Path:
        return self.internal / "staging" / dataset

    def relative(self, path: Path) -> str:
        """``path`` as the POSIX string stored in manifests."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    def absolute(self, relative: str) -> Path:
        return self.root / relative

    # -- datasets ------------------------------------------------------------------------------
    def datasets(self) -> list[str]:
        folder = self.root / "manifests"
        if not folder.is_dir():
            return []
        # a writer killed mid-write leaves its temporary file: never a dataset
        return sorted(p.stem for p in folder.glob("*.parquet") if not p.name.startswith(TEMP_PREFIX))

    def dataset_name(self, dataset: str | None) -> str:
        """The dataset a command acts on: the one named, or the only one in the workspace."""
        present = self.datasets()
        if dataset is not None:
            if dataset not in present:
                have = ", ".join(present) if present else "none"
                raise WorkspaceError(
                    f"workspace {self.root} has no manifest for {dataset} (it has: {have}); "
                    f"ingest it first (dataset={dataset!r})"
                )
            return dataset
        if len(present) == 1:
            return present[0]
        if not present:
            raise WorkspaceError(
                f"workspace {self.root} holds no manifest: ingest a dataset first, "
                "or choose the workspace= that holds one"
            )
        raise WorkspaceError(
            f"workspace {self.root} holds several datasets ({', '.join(present)}): choose one with dataset="
        )

    def load(self, dataset: str | None = None) -> Manifest:
        """The manifest of ``dataset`` (see :meth:`dataset_name`)."""
        from .schema import read_manifest

        return read_manifest(self.manifest_path(self.dataset_name(dataset)))

    def save(self, manifest: Manifest) -> None:
        """Write ``manifest`` as its dataset's manifest, atomically, holding the workspace's lock."""
        from .schema import write_manifest

        with self.lock("save"):
            write_manifest(self.manifest_path(manifest.dataset), manifest)

    # -- lock ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, command: str, wait: float = 0.0) -> Iterator[None]:
        """Hold the workspace's writer lock (git's ``index.lock`` pattern).

        The lock file is created with O_EXCL and names its holder. A lock whose holder pid no
        longer runs on this host is stale and is taken over, and so is a lock still empty
        ``EMPTY_LOCK_STALE_S`` after its creation (its creator was killed before naming itself).
        ``wait`` seconds are spent retrying before :class:`WorkspaceLocked` is raised. Once held,
        temporary files that a killed writer left in ``manifests/``, ``tables/*/`` and
        ``aligned/*/*/*/`` are removed.

        Re-entrant within a thread: every library function that writes takes the lock, and one
        that calls another (``ingest`` aligning, a step saving its manifest) holds it once.
        """
        key = self.root.resolve()
        depths = _depths()
        if depths.get(key):
            depths[key] += 1
            try:
                yield
            finally:
                depths[key] -= 1
            return
        try:
            self.internal.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._cannot_lock(exc) from None
        path = self.internal / "lock"
        host = socket.gethostname()
        holder = {"pid": os.getpid(), "host": host, "command": command, "since": time.time()}
        deadline = time.monotonic() + wait
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self._read_lock(path)
                if self._stale(path, other, host):
                    continue
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                who = (
                    f"pid {other['pid']} ({other.get('command')})"
                    if other
                    else "another process (its lock names no holder yet)"
                )
                raise WorkspaceLocked(
                    f"workspace {self.root} is in use by {who}: wait for it to finish, "
                    f"or delete {path} if that process is gone"
                ) from None
            except OSError as exc:
                raise self._cannot_lock(exc) from None
            ours = os.fstat(fd).st_ino
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(holder, fh)
            except OSError as exc:  # a full disk: the holder cannot be written, so no lock is left behind
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_ino == ours:
                        path.unlink()
                raise self._cannot_lock(exc) from None
            break
        # The one writer now: a temporary file left here was left by a writer that was killed.
        for folder in (self.root / "manifests", *self.root.glob("tables/*/"), *self.root.glob("aligned/*/*/*/")):
            remove_stale_temps(folder)
        depths[key] = 1
        try:
            yield
        finally:
            depths.pop(key, None)
            path.unlink(missing_ok=True)

    def _cannot_lock(self, exc: OSError) -> WorkspaceError:
        """The one line for a workspace whose lock cannot be written (nothing has changed yet)."""
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return WorkspaceError(f"workspace {self.root} is read-only: choose a writable workspace=")
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return WorkspaceWriteError(
                f"cannot write the lock of workspace {self.root} ({os.strerror(exc.errno)}): free some disk space, "
                "then run the same command again (nothing was changed)"
            )
        return WorkspaceError(f"cannot write to workspace {self.root} ({exc.strerror or exc}): check the folder")

    @staticmethod
    def _stale(path: Path, other: dict | None, host: str) -> bool:
        """Remove ``path`` if its holder is gone: a pid no longer running on this host, or a lock
        still empty (or unreadable) ``EMPTY_LOCK_STALE_S`` after it was written. True if removed."""
        try:
            seen = path.stat()
        except FileNotFoundError:
            return True  # released meanwhile: try again
        if other is None:
            stale = time.time() - seen.st_mtime > EMPTY_LOCK_STALE_S
        else:
            stale = other.get("host") == host and not _pid_alive(other["pid"])
        if not stale:
            return False
        with contextlib.suppress(FileNotFoundError):
            now = path.stat()
            if (now.st_ino, now.st_mtime_ns) == (seen.st_ino, seen.st_mtime_ns):  # still the lock judged
                path.unlink()
        return True

    @staticmethod
    def _read_lock(path: Path) -> dict | None:
        """The holder a lock file names; None if it is empty or not a holder record."""
        try:
            holder = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int) or holder["pid"] < 1:
            return None
        return holder


def writes_workspace(
    command: str, *, when: Callable[[dict[str, Any]], bool] | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a library function that writes the workspace given as its ``ws`` argument: the
    argument becomes a :class:`Workspace` (a str or path-like is accepted) and the workspace's lock
    is held while the function runs, named ``command`` in the lock file. A ``ws`` of None (where the
    function accepts none) takes no lock, and neither does a call for which ``when`` (given the
    call's arguments by name, defaults included) is false: a dry run writes nothing. The step's
    start and end are logged (``ferdata`` logger, DEBUG and INFO), and so are the warnings its
    result carries."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def locked(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            if bound.arguments.get("ws") is None or (when is not None and not when(bound.arguments)):
                return function(*args, **kwargs)
            ws = bound.arguments["ws"] = Workspace.of(bound.arguments["ws"])
            with ws.lock(command):
                log.debug("%s: started on %s", command, ws.root)
                started = time.perf_counter()
                result = function(*bound.args, **bound.kwargs)
            log.info("%s: done on %s in %.1f s", command, ws.root, time.perf_counter() - started)
            for warning in getattr(result, "warnings", None) or ():
                log.warning("%s: %s", command, warning)
            return result

        return locked

    return decorate


WorkspaceLike = Workspace | str | os.PathLike[str]
"""What every library function accepts as its workspace: a :class:`Workspace` or its folder's path."""

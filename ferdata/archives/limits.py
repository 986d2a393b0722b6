"""Decompression-bomb limits, checked on the bytes actually produced, while they stream.

Python's zipfile documentation names the pitfalls: a small file that expands enormously, many
overlapping entries, disk and memory exhaustion. Every reader in this package hands its bytes
out through a :class:`Guard`, which counts them against :class:`Limits`:

* **ratio** of one member: bytes produced over compressed bytes *consumed so far* (the read-ahead a
  decompressor keeps aside is not counted), checked once the member has made
  ``min_ratio_bytes``, so a deflate bomb stops after about 16 MiB of output, not after 100 times
  its whole compressed size;
* **size** of one member, on its produced bytes (a declared size over the limit is refused before
  reading, but a small declared size is never trusted);
* **total** read from the tree, nested archives included;
* **depth** of archives inside archives (checked where nested archives are expanded).

Memory stays bounded by the read chunk. Messages name the :class:`Limits` field to raise; the CLI
maps the fields it has options for (``--max-ratio``, ``--max-total-gb``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ferdata.errors import UnsafeArchiveError, UsageError

if TYPE_CHECKING:
    from .base import Context

__all__ = ["Counter", "CountingFile", "Guard", "Limits", "raise_hint", "size"]

_GIB = 2**30


@dataclass(frozen=True)
class Limits:
    """Decompression-bomb limits, checked on the bytes actually produced (never on declared sizes)."""

    max_ratio: float = 100.0  # uncompressed/compressed of one member, checked WHILE streaming
    min_ratio_bytes: int = 16 * 2**20  # ...once the member has produced this many bytes
    max_member_bytes: int = 8 * 2**30
    max_total_bytes: int = 512 * 2**30  # everything read from the tree, nested archives included
    max_depth: int = 3  # archives inside archives

    def __post_init__(self) -> None:
        if not self.max_ratio > 1:
            raise UsageError(f"archive limit max_ratio must be above 1, not {self.max_ratio:g}")
        for field in ("min_ratio_bytes", "max_member_bytes", "max_total_bytes"):
            if getattr(self, field) < 1:
                raise UsageError(f"archive limit {field} must be positive, not {getattr(self, field)}")
        if self.max_depth < 0:
            raise UsageError(f"archive limit max_depth must be 0 or more, not {self.max_depth}")


def raise_hint(field: str) -> str:
    """How a message tells a Python user to raise a limit (the CLI rewrites it into its option)."""
    return f"limits=Limits({field}=...)"


class Counter:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class CountingFile(io.FileIO):
    """A file whose reads are counted: the compressed bytes consumed, for the ratio check."""

    def __init__(self, path: Path, sink: Counter) -> None:
        super().__init__(path, "rb")
        self._sink = sink
        self.consumed = 0

    def _add(self, n: int) -> None:
        self.consumed += n
        self._sink.value += n

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self._add(len(data or b""))
        return data

    def readinto(self, buffer) -> int:
        n = super().readinto(buffer) or 0
        self._add(n)
        return n

    def readall(self) -> bytes:
        data = super().readall()
        self._add(len(data))
        return data

    def consumed_since(self, start: int = 0) -> int:
        """Bytes read since ``consumed`` was ``start``: a guard's ``consumed`` function, bound with partial."""
        return self.consumed - start


def size(n: float) -> str:
    for unit, scale in (("GiB", _GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


class Guard:
    """Counts one member's produced bytes and refuses what looks like a bomb."""

    def __init__(
        self, ctx: Context, label: str, member: str | None, consumed: Callable[[], int], total: Counter
    ) -> None:
        # member None: a whole tar stream, held to the ratio and total limits but not the member one
        self._limits = ctx.limits
        self._label = label
        self._member = member
        self._consumed = consumed
        self._total = total
        self.produced = 0
        self.at: str | None = None  # for a whole-stream guard: the member being read

    def count(self, n: int) -> None:
        self.produced += n
        self._total.value += n
        limits = self._limits
        if self._member is not None and self.produced > limits.max_member_bytes:
            raise UnsafeArchiveError(
                f"{self._label}: {self._what()} expands beyond {size(limits.max_member_bytes)}, like a decompression "
                f"bomb; if you trust this archive, raise the limit with {raise_hint('max_member_bytes')}"
            )
        if self._total.value > limits.max_total_bytes:
            raise UnsafeArchiveError(
                f"{self._label}: more than {limits.max_total_bytes / 2**30:.3g} GiB read in total (at {self._what()}), like a "
                f"decompression bomb; if you trust this archive, raise the limit with {raise_hint('max_total_bytes')}"
            )
        if self.produced >= limits.min_ratio_bytes and self.produced > limits.max_ratio * max(self._consumed(), 1):
            raise UnsafeArchiveError(
                f"{self._label}: {self._what()} expands more than {limits.max_ratio:g} times its compressed size, like a "
                f"decompression bomb; if you trust this archive, raise the limit with {raise_hint('max_ratio')}"
            )

    def _what(self) -> str:
        """How messages name what is being read (built only when one is raised: counting is per chunk)."""
        return f"member {self._member!r}" if self._member is not None else f"its content (at member {self.at!r})"

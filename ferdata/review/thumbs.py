"""Small JPEG renderings of a workspace's images for the review page, cached in the workspace.

A rendering is keyed by the image's path, size and modification time and the size asked for, so
a re-aligned crop gets a new one; the cache (``.ferdata/review/<dataset>/``) can be deleted at any
time. Images are decoded by :func:`ferdata.vision.decode.decode` (EXIF orientation applied, JPEGs
decoded at a reduced scale), so a rendering shows the frame the manifest's box and landmarks use.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from ..errors import ImageUnreadable
from ..fsutil import atomic_write_bytes

# long side in pixels of each rendering
SIZES = {"thumb": 192, "detail": 768}
_VERSION = 1  # bump when the rendering changes, so old files are not served


def inside(root: Path, relative: str) -> Path:
    """``root / relative`` if it stays inside ``root`` once links are followed, else ImageUnreadable.

    Paths come from the manifest, never from a request; this keeps a doctored manifest (``../``,
    absolute paths, links out of the workspace) from reaching files outside the workspace.
    """
    root = root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or path == root:
        raise ImageUnreadable(f"{relative}: outside the workspace, not served")
    if not path.is_file():
        raise ImageUnreadable(f"{relative}: file not found in the workspace")
    return path


def rendering(root: Path, cache: Path, relative: str, size: str) -> Path:
    """The cached JPEG of ``root/relative`` whose long side is at most ``SIZES[size]``."""
    from PIL import Image

    from ..vision.decode import decode

    source = inside(root, relative)
    st = source.stat()
    key = hashlib.sha256(f"{_VERSION}|{relative}|{st.st_size}|{st.st_mtime_ns}|{size}".encode()).hexdigest()
    target = cache / key[:2] / f"{key[2:]}.jpg"
    if target.is_file():
        return target
    long_side = SIZES[size]
    image = Image.fromarray(decode(source, min_long_side=long_side).rgb)
    image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)  # only ever shrinks
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    atomic_write_bytes(target, buffer.getvalue(), durable=False)  # a cache: a lost file is redrawn
    return target


__all__ = ["SIZES", "ImageUnreadable", "inside", "rendering"]

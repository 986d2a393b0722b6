"""Fuzzing ``ingest`` with damaged archives and hostile member names (hypothesis).

Whatever the bytes, an ingest either succeeds or raises a :class:`~ferdata.errors.FerdataError`
(one line for the user), and never writes a file outside the workspace.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import archive_factory as af
import pytest
from builders import image_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferdata.archives import Limits, Secret
from ferdata.errors import FerdataError
from ferdata.ingest import ingest
from ferdata.workspace import Workspace

from .helpers import snapshot

PASSWORD = "fuzz-pw"
FILES = {"happy/a.jpg": image_bytes(1, (8, 8)), "sad/b.jpg": image_bytes(2, (8, 8)), "sad/notes.txt": b"hello " * 40}
# Small limits: a mutation that turns into a bomb is stopped after little work.
LIMITS = Limits(min_ratio_bytes=2**16, max_member_bytes=2**22, max_total_bytes=2**24)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("seeds")
    built = {
        "zip": af.zip_archive(folder / "a.zip", FILES),
        "zip-aes": af.aes_zip_archive(folder / "b.zip", FILES, PASSWORD),
        "7z": af.sevenzip_archive(folder / "c.7z", FILES),
        "7z-encrypted-header": af.sevenzip_archive(folder / "d.7z", FILES, password=PASSWORD, encrypt_header=True),
        "tar": af.tar_archive(folder / "e.tar", FILES),
        "tar.gz": af.tar_archive(folder / "f.tar.gz", FILES, compression="gz"),
        "tar.xz": af.tar_archive(folder / "g.tar.xz", FILES, compression="xz"),
    }
    return {kind: path.read_bytes() for kind, path in built.items()}


mutation = st.tuples(
    st.sampled_from(["set", "delete", "insert"]), st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=24)
)


def mutate(data: bytes, mutations: list[tuple[str, float, bytes]]) -> bytes:
    out = bytearray(data)
    for op, where, payload in mutations:
        at = int(where * len(out)) if out else 0
        if op == "set":
            out[at : at + len(payload)] = payload
        elif op == "delete":
            del out[at : at + len(payload)]
        else:
            out[at:at] = payload
    return bytes(out)


def ingest_in_sandbox(archive_bytes: bytes, suffix: str) -> None:
    """Ingest the bytes in a fresh sandbox; assert the two guarantees."""
    with tempfile.TemporaryDirectory(prefix="ferdata-fuzz-") as folder:
        sandbox = Path(folder)
        archive = sandbox / f"input{suffix}"
        archive.write_bytes(archive_bytes)
        ws = Workspace.resolve(sandbox / "ws")
        try:
            ingest(ws, archive, dataset="imagefolder", align=False, limits=LIMITS, password=lambda: Secret(PASSWORD))
        except FerdataError as exc:
            assert "\n" not in str(exc)
        outside = [name for name in snapshot(sandbox) if not name.startswith("ws/")]
        assert outside == [archive.name]
        for path in (sandbox / "ws").rglob("*"):
            assert not path.is_symlink()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["zip", "zip-aes", "7z", "7z-encrypted-header", "tar", "tar.gz", "tar.xz"]),
       mutations=st.lists(mutation, min_size=1, max_size=4))  # fmt: skip
def test_mutated_archives_fail_only_with_ferdata_errors(seeds, kind: str, mutations) -> None:
    ingest_in_sandbox(mutate(seeds[kind], mutations), ".bin")


name_part = st.one_of(
    st.sampled_from(["..", ".", "", "C:", "c:\\x", "/", "\\", "~", "happy", "HAPPY", "a.jpg", "A.JPG", "\x00"]),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=6),
)
member_name = st.lists(name_part, min_size=1, max_size=4).map(lambda parts: "/".join(parts))


@settings(max_examples=150, deadline=None)
@given(names=st.lists(member_name, min_size=1, max_size=5), container=st.sampled_from(["zip", "tar"]))
def test_any_member_names_stay_inside_the_workspace(names: list[str], container: str) -> None:
    with tempfile.TemporaryDirectory(prefix="ferdata-fuzz-build-") as folder:
        members = ["happy/ok.jpg", *names]
        if container == "zip":
            data = af.zip_raw_names(Path(folder) / "n.zip", members).read_bytes()
        else:
            try:
                data = af.tar_members(
                    Path(folder) / "n.tar", [(af.tar_info(name), image_bytes(3, (8, 8))) for name in members]
                ).read_bytes()
            except (ValueError, UnicodeError):  # tarfile cannot write some names (NUL); not ferdata's concern
                return
    ingest_in_sandbox(data, ".bin")

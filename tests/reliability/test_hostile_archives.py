"""Hostile archives given to ``ferdata ingest``: refused with one clear line (exit 1), nothing written
outside the workspace, the workspace exactly as it was. A few are handled instead of refused (an
encrypted member inside an unprotected zip, a 7z with encrypted headers, links that stay inside).

``tests/test_archives.py`` proves the same refusals on :func:`ferdata.archives.open_tree`; these
tests prove them end to end, through the command a researcher runs.
"""

from __future__ import annotations

import io
import shutil
import struct
import tarfile
import uuid
import zipfile
from pathlib import Path

import archive_factory as af
import pytest
import pyzipper
from builders import image_bytes
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.ingest import ingest
from ferdata.workspace import Workspace

from .helpers import imagefolder, one_line_error, snapshot, user_files

PASSWORD = "hostile-archive-pw-8d1f"
IMG = image_bytes(7)
# Outside every test folder: an archive that escaped would create it.
ESCAPE = f"/tmp/ferdata-escape-{uuid.uuid4().hex}.jpg"


@pytest.fixture(scope="module")
def populated(tmp_path_factory) -> Path:
    """A workspace that already holds a good imagefolder dataset (the thing a bad archive must not harm)."""
    root = tmp_path_factory.mktemp("populated")
    ws = Workspace.resolve(root / "ws")
    ingest(ws, imagefolder(root / "good"), dataset="imagefolder", align=False)
    return ws.root


def outside_files(sandbox: Path) -> dict[str, str]:
    return {k: v for k, v in snapshot(sandbox).items() if not k.startswith("ws/")}


def ingest_cli(archive: Path, ws: Path, *extra: str, env: dict | None = None):
    args = ["ingest", str(archive), "--dataset", "imagefolder", "--no-align", "-w", str(ws), *extra]
    return CliRunner().invoke(app, args, env=env)


def gnu_tar_latin1(path: Path) -> Path:
    """A GNU tar whose second name is Latin-1 bytes (no PAX header to say UTF-8)."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as archive:
        for name in ("happy/a.jpg", "happy/caf\xe9.jpg"):
            info = tarfile.TarInfo(name)
            info.size = len(IMG)
            archive.addfile(info, io.BytesIO(IMG))
    return path


def zip_bad_utf8_flag(path: Path) -> Path:
    """A zip that flags its names as UTF-8 (bit 11) while one of them holds the byte 0xFF."""
    af.zip_archive(path, {"happy/a.jpg": IMG, "happy/cafX.jpg": IMG}, compression="stored")
    data = bytearray(path.read_bytes().replace(b"cafX.jpg", b"caf\xff.jpg"))
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at >= 0:
            struct.pack_into("<H", data, at + flags_at, struct.unpack_from("<H", data, at + flags_at)[0] | 0x800)
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))
    return path


def hostile(kind: str, folder: Path) -> tuple[Path, str]:
    """(archive, a fragment the error line must contain)."""
    ok = {"happy/a.jpg": IMG}
    tar_ok = (af.tar_info("happy/a.jpg"), IMG)
    builders = {
        "zip-dotdot": (lambda: af.zip_raw_names(folder / "h.zip", ["happy/a.jpg", "happy/../../../../evil.jpg"]), "'..' component"),
        "zip-absolute": (lambda: af.zip_raw_names(folder / "h.zip", ["happy/a.jpg", ESCAPE]), "absolute path"),
        "zip-drive-letter": (lambda: af.zip_raw_names(folder / "h.zip", ["happy/a.jpg", "C:\\happy\\evil.jpg"]), "drive letter"),
        "tar-dotdot": (lambda: af.tar_members(folder / "h.tar", [tar_ok, (af.tar_info("../../evil.jpg"), b"x")]), "evil.jpg"),
        "tar-absolute": (lambda: af.tar_members(folder / "h.tar.gz", [tar_ok, (af.tar_info(ESCAPE), b"x")], compression="gz"), "absolute path"),
        "tar-drive-letter": (lambda: af.tar_members(folder / "h.tar", [tar_ok, (af.tar_info("D:/happy/evil.jpg"), b"x")]), "drive letter"),
        "7z-dotdot": (lambda: af.sevenzip_raw_names(folder / "h.7z", {**ok, "../../evil.jpg": b"x"}), "'..' component"),
        "7z-drive-letter": (lambda: af.sevenzip_raw_names(folder / "h.7z", {**ok, "C:/happy/evil.jpg": b"x"}), "drive letter"),
        "tar-symlink-outside": (lambda: af.tar_members(folder / "h.tar", [tar_ok, (af.tar_info("happy/b.jpg", tarfile.SYMTYPE, "../../../../etc/passwd"), b"")]), "happy/b.jpg"),
        "tar-symlink-absolute": (lambda: af.tar_members(folder / "h.tar", [tar_ok, (af.tar_info("happy/b.jpg", tarfile.SYMTYPE, "/etc/passwd"), b"")]), "happy/b.jpg"),
        "tar-hardlink-outside": (lambda: af.tar_members(folder / "h.tar", [tar_ok, (af.tar_info("happy/b.jpg", tarfile.LNKTYPE, "../../../etc/passwd"), b"")]), "happy/b.jpg"),
        "zip-symlink-outside": (lambda: af.zip_symlink(folder / "h.zip", "happy/b.jpg", "../../../etc/passwd", ok), "outside the archive"),
        "7z-symlink-absolute": (lambda: af.sevenzip_symlink(folder / "h.7z", "happy/b.jpg", "/etc/passwd", ok), "link to an absolute path"),
        "zip-duplicate": (lambda: af.zip_raw_names(folder / "h.zip", ["happy/a.jpg", "happy/a.jpg"]), "appears twice"),
        "tar-duplicate": (lambda: af.tar_members(folder / "h.tar", [tar_ok, (af.tar_info("./happy/a.jpg"), b"other")]), "appears twice"),
        "zip-case-only": (lambda: af.zip_archive(folder / "h.zip", {"happy/a.jpg": IMG, "happy/A.jpg": image_bytes(8)}), "only in case"),
        "tar-case-only": (lambda: af.tar_archive(folder / "h.tar", {"happy/a.jpg": IMG, "Happy/a.jpg": image_bytes(8)}), "only in case"),
        "7z-case-only": (lambda: af.sevenzip_archive(folder / "h.7z", {"happy/a.jpg": IMG, "happy/A.JPG": image_bytes(8)}), "only in case"),
        "tar-non-utf8-name": (lambda: gnu_tar_latin1(folder / "h.tar"), "not UTF-8"),
        "zip-non-utf8-name": (lambda: zip_bad_utf8_flag(folder / "h.zip"), "not UTF-8"),
        "zip-flat-bomb": (lambda: af.zeros_zip(folder / "h.zip", "happy/bomb.jpg", 40 * af.MiB), "decompression bomb"),
        "zip-nested-bomb": (lambda: af.nested_zip(folder / "h.zip", 6, {"happy/a.jpg": IMG}), "nested zip bomb"),
        "zip-truncated": (lambda: af.truncated(af.zip_archive(folder / "h.zip", {"happy/a.jpg": IMG, "happy/b.jpg": image_bytes(9)})), "download"),
        "tar.gz-truncated": (lambda: af.truncated(af.tar_archive(folder / "h.tar.gz", {"happy/a.jpg": IMG, "happy/b.jpg": image_bytes(9)}, compression="gz")), "download"),
        "7z-truncated": (lambda: af.truncated(af.sevenzip_archive(folder / "h.7z", {"happy/a.jpg": IMG, "happy/b.jpg": image_bytes(9)})), "download"),
    }  # fmt: skip
    build, fragment = builders[kind]
    return build(), fragment


HOSTILE = ["zip-dotdot", "zip-absolute", "zip-drive-letter", "tar-dotdot", "tar-absolute", "tar-drive-letter",
           "7z-dotdot", "7z-drive-letter", "tar-symlink-outside", "tar-symlink-absolute", "tar-hardlink-outside",
           "zip-symlink-outside", "7z-symlink-absolute", "zip-duplicate", "tar-duplicate", "zip-case-only",
           "tar-case-only", "7z-case-only", "tar-non-utf8-name", "zip-non-utf8-name", "zip-flat-bomb",
           "zip-nested-bomb", "zip-truncated", "tar.gz-truncated", "7z-truncated"]  # fmt: skip


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_archive_is_refused_in_one_line_and_changes_nothing(kind: str, tmp_path: Path, populated: Path) -> None:
    (tmp_path / "in").mkdir()
    archive, fragment = hostile(kind, tmp_path / "in")
    ws = tmp_path / "ws"
    shutil.copytree(populated, ws)
    outside, inside = outside_files(tmp_path), user_files(ws)

    result = ingest_cli(archive, ws)

    assert result.exit_code == 1, result.output
    line = one_line_error(result.stderr)
    assert fragment in line and str(archive) in line
    assert result.stdout == ""
    # Nothing outside the workspace; inside it the user's files are exactly as they were (only
    # ferdata's own .ferdata/ may keep a staging folder, which a re-run with raised limits resumes)
    assert outside_files(tmp_path) == outside
    assert user_files(ws) == inside
    assert not (ws / ".ferdata" / "lock").exists()
    assert not Path(ESCAPE).exists()
    assert not (tmp_path.parent / "evil.jpg").exists()


def mixed_zip(path: Path) -> Path:
    """An unprotected zip with one AES-encrypted member among plain ones."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("happy/a.jpg", IMG)
    with pyzipper.AESZipFile(path, "a", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as archive:
        archive.setpassword(PASSWORD.encode())
        archive.writestr("sad/b.jpg", image_bytes(11))
    return path


ENCRYPTED = {
    "encrypted-member-in-plain-zip": mixed_zip,
    "7z-encrypted-headers": lambda path: af.sevenzip_archive(
        path.with_suffix(".7z"), {"happy/a.jpg": IMG, "sad/b.jpg": image_bytes(11)}, password=PASSWORD, encrypt_header=True
    ),
}


@pytest.mark.parametrize("kind", list(ENCRYPTED))
def test_encrypted_parts_need_the_password_and_then_ingest(kind: str, tmp_path: Path, populated: Path) -> None:
    archive = ENCRYPTED[kind](tmp_path / "e.zip")
    ws = tmp_path / "ws"
    shutil.copytree(populated, ws)
    outside, inside = outside_files(tmp_path), user_files(ws)

    missing = ingest_cli(archive, ws)
    assert missing.exit_code == 1
    assert "is encrypted" in one_line_error(missing.stderr) and "--password-env" in missing.stderr

    wrong = ingest_cli(archive, ws, "--password-env", "PW", env={"PW": "not-" + PASSWORD})
    assert wrong.exit_code == 1
    assert "wrong password" in one_line_error(wrong.stderr)
    assert PASSWORD not in wrong.stderr + wrong.stdout
    assert outside_files(tmp_path) == outside and user_files(ws) == inside

    right = ingest_cli(archive, ws, "--password-env", "PW", env={"PW": PASSWORD})
    assert right.exit_code == 0, right.output
    frame = Workspace(ws).load("imagefolder").frame
    assert sorted(frame["source"]) == ["happy/a.jpg", "sad/b.jpg"]
    assert (ws / frame.set_index("source").loc["sad/b.jpg", "original_path"]).read_bytes() == image_bytes(11)
    assert outside_files(tmp_path) == outside


def test_links_that_stay_inside_are_skipped_and_the_rest_ingested(tmp_path: Path) -> None:
    archive = af.tar_members(
        tmp_path / "links.tar",
        [
            (af.tar_info("happy/a.jpg"), IMG),
            (af.tar_info("happy/b.jpg", tarfile.SYMTYPE, "a.jpg"), b""),
            (af.tar_info("sad/c.jpg", tarfile.LNKTYPE, "happy/a.jpg"), b""),
        ],
    )
    result = ingest_cli(archive, tmp_path / "ws")
    assert result.exit_code == 0, result.output
    frame = Workspace(tmp_path / "ws").load("imagefolder").frame
    assert list(frame["source"]) == ["happy/a.jpg"]
    assert all(not p.is_symlink() for p in (tmp_path / "ws").rglob("*"))

"""ferdata.archives: every format round-trips, passwords stay secret, hostile archives are refused."""

from __future__ import annotations

import gzip
import os
import tarfile
import threading
import traceback
import tracemalloc
from pathlib import Path

import pytest

import archive_factory as af
import ferdata.archives
from ferdata.archives import (
    CompressedFileTree,
    FolderTree,
    Limits,
    Member,
    NestedTree,
    Secret,
    SevenZipTree,
    TarTree,
    ZipTree,
    open_tree,
)
from ferdata.errors import ArchiveError, PasswordError, UnsafeArchiveError, UsageError

PASSWORD = "Tr0ub4dor&3-not-in-any-message"
FILES = {
    "MSD-E/anger/s01_an.jpg": os.urandom(3000),
    "MSD-E/happy/s01_ha.jpg": os.urandom(2000),
    "Paired_files.txt": b"s01_an.jpg s01_ha.jpg\n" * 50,
    "empty.txt": b"",
}
NAMES = list(FILES)


def give_password() -> Secret:
    return Secret(PASSWORD)


def build(kind: str, path: Path, files: dict[str, bytes] = FILES) -> Path:
    builders = {
        "zip-stored": lambda: af.zip_archive(path / "a.zip", files, compression="stored"),
        "zip-deflate": lambda: af.zip_archive(path / "a.zip", files),
        "zip-zipcrypto": lambda: af.zipcrypto_archive(path / "a.zip", files, PASSWORD),
        "zip-aes": lambda: af.aes_zip_archive(path / "a.zip", files, PASSWORD),
        "7z": lambda: af.sevenzip_archive(path / "a.7z", files),
        "7z-password": lambda: af.sevenzip_archive(path / "a.7z", files, password=PASSWORD),
        "7z-encrypted-header": lambda: af.sevenzip_archive(
            path / "a.7z", files, password=PASSWORD, encrypt_header=True
        ),
        "tar": lambda: af.tar_archive(path / "a.tar", files),
        "tar.gz": lambda: af.tar_archive(path / "a.tar.gz", files, compression="gz"),
        "tar.bz2": lambda: af.tar_archive(path / "a.tar.bz2", files, compression="bz2"),
        "tar.xz": lambda: af.tar_archive(path / "a.tar.xz", files, compression="xz"),
        "folder": lambda: af.folder(path / "tree", files),
    }
    return builders[kind]()


ALL_KINDS = ["zip-stored", "zip-deflate", "zip-zipcrypto", "zip-aes", "7z", "7z-password",
             "7z-encrypted-header", "tar", "tar.gz", "tar.bz2", "tar.xz", "folder"]  # fmt: skip
ENCRYPTED_KINDS = ["zip-zipcrypto", "zip-aes", "7z-password", "7z-encrypted-header"]
TREE_CLASS = {"zip": ZipTree, "7z": SevenZipTree, "tar": TarTree, "folder": FolderTree}


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_kind_round_trips_bytes_exactly(kind: str, tmp_path: Path) -> None:
    with open_tree(build(kind, tmp_path), password=give_password) as tree:
        assert isinstance(tree, TREE_CLASS[kind.split("-")[0].split(".")[0]])
        members = tree.members()
        assert sorted(m.name for m in members) == sorted(NAMES)
        assert {m.name: m.size for m in members} == {name: len(data) for name, data in FILES.items()}
        for name, data in FILES.items():
            assert tree.read(name) == data
            with tree.open(name) as stream:
                assert stream.read(7) + stream.read() == data
        assert dict(tree.iter_read(reversed(NAMES))) == FILES


def test_archive_order_is_kept(tmp_path: Path) -> None:
    files = {f"img/{i:02d}.png": bytes([i]) * 10 for i in (5, 1, 9, 3)}
    archives = (
        af.zip_archive(tmp_path / "o.zip", files),
        af.tar_archive(tmp_path / "o.tar.gz", files, compression="gz"),
        af.sevenzip_archive(tmp_path / "o.7z", files),
    )
    for path in archives:
        with open_tree(path) as tree:
            assert [m.name for m in tree.members()] == list(files)


def test_format_is_sniffed_from_magic_bytes_not_the_extension(tmp_path: Path) -> None:
    zip_named_tar = af.zip_archive(tmp_path / "data.tar.gz", FILES)
    with open_tree(zip_named_tar) as tree:
        assert isinstance(tree, ZipTree)
        assert tree.read("Paired_files.txt") == FILES["Paired_files.txt"]


def test_single_file_gz(tmp_path: Path) -> None:
    csv = b"emotion,pixels,Usage\n" + b"0,1 2 3,Training\n" * 1000
    with open_tree(af.gz_file(tmp_path / "fer2013.csv.gz", csv)) as tree:
        assert isinstance(tree, CompressedFileTree)
        assert tree.members() == [Member("fer2013.csv", None)]
        assert tree.read("fer2013.csv") == csv
        with tree.open("fer2013.csv") as stream:
            assert stream.readline() == b"emotion,pixels,Usage\n"


def test_streaming_read_of_a_large_member_keeps_memory_small(tmp_path: Path) -> None:
    big = (
        b"emotion,pixels,Usage\n" + (b"3," + b" ".join(b"%d" % (i % 251) for i in range(2304)) + b",Training\n") * 1000
    )
    archive = af.zip_archive(tmp_path / "big.zip", {"fer2013.csv": big})
    with open_tree(archive) as tree:
        tracemalloc.start()
        try:
            total = 0
            with tree.open("fer2013.csv") as stream:
                for line in stream:
                    total += len(line)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert total == len(big)
    assert peak < 8 * af.MiB


def test_unsupported_format_names_the_supported_ones(tmp_path: Path) -> None:
    rar = tmp_path / "data.rar"
    rar.write_bytes(b"Rar!\x1a\x07\x01\x00" + bytes(100))
    text = tmp_path / "notes.zip"
    text.write_text("just text, not a zip")
    for path, hint in ((rar, "RAR"), (text, "match no archive format")):
        with pytest.raises(ArchiveError, match="zip .*7z.*tar") as caught:
            open_tree(path)
        assert hint in str(caught.value) and str(path) in str(caught.value)


def test_missing_path_is_an_archive_error(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="does not exist"):
        open_tree(tmp_path / "nope.zip")


# -- passwords -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ENCRYPTED_KINDS)
def test_missing_password_fails_at_once_naming_the_argument(kind: str, tmp_path: Path) -> None:
    archive = build(kind, tmp_path)
    with pytest.raises(PasswordError) as caught:
        open_tree(archive, password=lambda: None)  # a provider with nothing to give (the CLI in a pipe)
    assert (
        str(caught.value)
        == f"{archive} is encrypted: pass its password with password= (a str, bytes or a function returning one)"
    )
    with pytest.raises(PasswordError, match="password="):
        open_tree(archive)  # no password at all


@pytest.mark.parametrize("kind", ENCRYPTED_KINDS)
def test_wrong_password_is_detected_on_open(kind: str, tmp_path: Path) -> None:
    archive = build(kind, tmp_path)
    with pytest.raises(PasswordError, match=r"^wrong password for .*with password=$") as caught:
        open_tree(archive, password=lambda: Secret("not-the-password"))
    assert str(archive) in str(caught.value)


def test_provider_is_called_lazily_and_once(tmp_path: Path) -> None:
    calls = []

    def counting() -> Secret:
        calls.append(1)
        return Secret(PASSWORD)

    with open_tree(build("zip-deflate", tmp_path), password=counting) as tree:
        tree.read("Paired_files.txt")
    assert calls == []  # nothing encrypted: never asked
    inner = af.sevenzip_archive(tmp_path / "inner.7z", {"fer2013.csv": b"0,1 2,Training\n"}, password=PASSWORD)
    outer = af.aes_zip_archive(tmp_path / "outer.zip", {"inner.7z": inner.read_bytes(), "a.txt": b"a"}, PASSWORD)
    with open_tree(outer, password=counting) as tree:
        assert [m.name for m in tree.members()] == ["inner.7z/fer2013.csv", "a.txt"]
        assert tree.read("inner.7z/fer2013.csv") == b"0,1 2,Training\n"
    assert calls == [1]  # asked once, reused for the nested archive


def _failure(path: Path, provider) -> ArchiveError:
    """Open and read everything; the error, whose traceback starts in this frame (no raw password here)."""
    try:
        with open_tree(path, password=provider) as tree:
            for name in NAMES:
                tree.read(name)
    except ArchiveError as exc:
        return exc
    raise AssertionError(f"{path} was read without error")


def test_secret_never_shows_in_messages_or_tracebacks(tmp_path: Path) -> None:
    secret = Secret(PASSWORD)
    assert str(secret) == repr(secret) == f"{secret}" == "***"
    assert secret.reveal() == PASSWORD
    assert PASSWORD not in repr([secret, {"pw": secret}])
    failures = []
    for kind in ENCRYPTED_KINDS:
        (tmp_path / kind).mkdir()
        archive = build(kind, tmp_path / kind)
        # a wrong password that contains the right one, then the right one on a damaged archive
        failures.append(_failure(archive, lambda: Secret(PASSWORD + "x")))
        failures.append(_failure(af.truncated(archive, 0.9), give_password))
    assert sum(type(exc) is PasswordError for exc in failures) == len(ENCRYPTED_KINDS)
    for exc in failures:
        text = "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())
        assert "ferdata/archives/" in text  # the frames (and their locals) inside ferdata are shown
        assert PASSWORD not in text and PASSWORD not in str(exc) and PASSWORD not in repr(exc)


# -- nesting ---------------------------------------------------------------------------------


def test_zip_holding_tar_gz_holding_csv(tmp_path: Path) -> None:
    csv = b"emotion,pixels,Usage\n0,70 80 82,Training\n"
    inner = af.tar_archive(
        tmp_path / "fer2013.tar.gz", {"fer2013/fer2013.csv": csv, "fer2013/README": b"r"}, compression="gz"
    )
    outer = af.zip_archive(tmp_path / "kaggle.zip", {"fer2013.tar.gz": inner.read_bytes(), "LICENSE": b"cc"})
    scratch = tmp_path / "scratch"
    with open_tree(outer, scratch=scratch) as tree:
        assert isinstance(tree, NestedTree)
        names = ["fer2013.tar.gz/fer2013/fer2013.csv", "fer2013.tar.gz/fer2013/README", "LICENSE"]
        assert [m.name for m in tree.members()] == names
        assert tree.read(names[0]) == csv
        assert dict(tree.iter_read(names)) == {names[0]: csv, names[1]: b"r", names[2]: b"cc"}
        assert len(list(scratch.rglob("*"))) == 2  # one spool folder, one spooled inner archive
    assert list(scratch.iterdir()) == []  # closing removes the spool


def test_nested_archive_in_a_folder_is_read_in_place(tmp_path: Path) -> None:
    root = af.folder(tmp_path / "download", {"notes.txt": b"n"})
    af.gz_file(root / "fer2013.csv.gz", b"0,1,Training\n")
    scratch = tmp_path / "scratch"
    with open_tree(root, scratch=scratch) as tree:
        assert sorted(m.name for m in tree.members()) == ["fer2013.csv.gz/fer2013.csv", "notes.txt"]
        assert tree.read("fer2013.csv.gz/fer2013.csv") == b"0,1,Training\n"
    assert not scratch.exists()  # nothing spooled: the inner archive is already a file


def test_nesting_deeper_than_max_depth_is_refused(tmp_path: Path) -> None:
    archive = af.nested_zip(tmp_path / "deep.zip", depth=5, leaf={"x.txt": b"x"})
    with pytest.raises(UnsafeArchiveError, match="nested more than 3 deep"):
        open_tree(archive)
    with open_tree(archive, limits=Limits(max_depth=4)) as tree:
        [member] = tree.members()
        assert member.name == "level1.zip/level2.zip/level3.zip/level4.zip/x.txt"
        assert tree.read(member.name) == b"x"


# -- hostile archives ------------------------------------------------------------------------


def hostile(kind: str, path: Path) -> tuple[Path, str]:
    """(archive, the member name the error must quote)."""
    good = ("ok.txt", b"fine")
    if kind.startswith("zip-name:"):
        name = kind.removeprefix("zip-name:")
        return af.zip_raw_names(path / "h.zip", ["ok.txt", name]), name
    if kind.startswith("tar-name:"):
        name = kind.removeprefix("tar-name:")
        return af.tar_members(path / "h.tar", [(af.tar_info("ok.txt"), b"x"), (af.tar_info(name), b"evil")]), name
    builders = {
        "tar-symlink-absolute": lambda: af.tar_members(
            path / "h.tar.gz", [(af.tar_info("passwd", tarfile.SYMTYPE, "/etc/passwd"), b"")], compression="gz"
        ),
        "tar-symlink-up": lambda: af.tar_members(
            path / "h.tar", [(af.tar_info("a/up", tarfile.SYMTYPE, "../../x"), b"")]
        ),
        "tar-hardlink-outside": lambda: af.tar_members(
            path / "h.tar", [(af.tar_info("hard", tarfile.LNKTYPE, "../outside"), b"")]
        ),
        "tar-device": lambda: af.tar_members(path / "h.tar", [(af.tar_info("dev", tarfile.CHRTYPE), b"")]),
        "tar-fifo": lambda: af.tar_members(path / "h.tar", [(af.tar_info("fifo", tarfile.FIFOTYPE), b"")]),
        "tar-duplicate": lambda: af.tar_members(
            path / "h.tar", [(af.tar_info("ok.txt"), b"1"), (af.tar_info("./ok.txt"), b"2")]
        ),
        "zip-symlink-outside": lambda: af.zip_symlink(path / "h.zip", "link", "../../etc/passwd", dict([good])),
        "zip-symlink-absolute": lambda: af.zip_symlink(path / "h.zip", "link", "/etc/passwd"),
        "zip-duplicate": lambda: af.zip_raw_names(path / "h.zip", ["ok.txt", "ok.txt"]),
        "zip-file-and-folder": lambda: af.zip_raw_names(path / "h.zip", ["a", "a/b.txt"]),
        "7z-dotdot": lambda: af.sevenzip_raw_names(path / "h.7z", {"ok.txt": b"1", "../x": b"evil"}),
        "7z-symlink-absolute": lambda: af.sevenzip_symlink(path / "h.7z", "d/passwd", "/etc/passwd", dict([good])),
    }
    quoted = {"tar-symlink-absolute": "passwd", "tar-symlink-up": "a/up", "tar-hardlink-outside": "hard",
              "tar-device": "dev", "tar-fifo": "fifo", "tar-duplicate": "./ok.txt", "zip-symlink-outside": "link",
              "zip-symlink-absolute": "link", "zip-duplicate": "ok.txt", "zip-file-and-folder": "a/b.txt",
              "7z-dotdot": "../x", "7z-symlink-absolute": "d/passwd"}  # fmt: skip
    return builders[kind](), quoted[kind]


HOSTILE = ["zip-name:../x", "zip-name:/etc/x", "zip-name:C:\\x", "zip-name:a/../../x", "tar-name:../x",
           "tar-name:/etc/x", "tar-name:C:/x", "tar-symlink-absolute", "tar-symlink-up", "tar-hardlink-outside",
           "tar-device", "tar-fifo", "tar-duplicate", "zip-symlink-outside", "zip-symlink-absolute",
           "zip-duplicate", "zip-file-and-folder", "7z-dotdot", "7z-symlink-absolute",
           # control characters: a newline or tab in a name breaks every list, log and CSV that shows it
           "zip-name:happy/a\nb.jpg", "zip-name:happy/a\tb.jpg", "zip-name:a\x1b[31mred.jpg", "zip-name:a\x7fb.jpg",
           "tar-name:happy/a\nb.jpg", "tar-name:a\rb.jpg"]  # fmt: skip


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_members_are_refused_and_nothing_is_written(kind: str, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    archive, member = hostile(kind, tmp_path / "in")
    work = tmp_path / "work"
    work.mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(UnsafeArchiveError) as caught:
        open_tree(archive, scratch=work / "scratch")
    assert repr(member) in str(caught.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no spool, no extracted file
    assert "\n" not in str(caught.value)


def test_hostile_member_inside_a_nested_archive_is_refused_and_the_spool_removed(tmp_path: Path) -> None:
    inner = af.tar_members(
        tmp_path / "inner.tar", [(af.tar_info("ok.txt"), b"x"), (af.tar_info("../../evil.sh"), b"rm")]
    )
    outer = af.zip_archive(tmp_path / "outer.zip", {"data/inner.tar": inner.read_bytes()})
    scratch = tmp_path / "scratch"
    with pytest.raises(UnsafeArchiveError, match=r"outer.zip/data/inner.tar: member '../../evil.sh'"):
        open_tree(outer, scratch=scratch)
    assert list(scratch.iterdir()) == []
    assert not (tmp_path.parent / "evil.sh").exists()


def test_overlapping_zip_entries_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchiveError, match="'a.csv' overlaps"):
        open_tree(af.overlapping_zip(tmp_path / "o.zip", b"0,1,Training\n" * 100))


def test_folder_symlink_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    root = af.folder(tmp_path / "tree", {"a.txt": b"a"})
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(UnsafeArchiveError, match="'escape'"):
        open_tree(root)


def test_links_that_stay_inside_are_not_listed(tmp_path: Path) -> None:
    tar = af.tar_members(
        tmp_path / "l.tar",
        [
            (af.tar_info("d/a.txt"), b"a"),
            (af.tar_info("d/b.txt", tarfile.SYMTYPE, "a.txt"), b""),
            (af.tar_info("c.txt", tarfile.LNKTYPE, "d/a.txt"), b""),
        ],
    )
    zipped = af.zip_symlink(tmp_path / "l.zip", "d/b.txt", "a.txt", {"d/a.txt": b"a"})
    sevenzip = af.sevenzip_symlink(tmp_path / "l.7z", "d/b.txt", "a.txt", {"d/a.txt": b"a"})
    root = af.folder(tmp_path / "tree", {"d/a.txt": b"a"})
    (root / "d" / "b.txt").symlink_to("a.txt")
    for path in (tar, zipped, sevenzip, root):
        with open_tree(path) as tree:
            assert [m.name for m in tree.members()] == ["d/a.txt"]


def test_os_junk_is_filtered(tmp_path: Path) -> None:
    junk = {"__MACOSX/MSD-E/._a.jpg": b"j", "MSD-E/.DS_Store": b"j", "MSD-E/Thumbs.db": b"j",
            "MSD-E/desktop.ini": b"j", "MSD-E/._b.jpg": b"j", "MSD-E/a.jpg": b"a", "MSD-E/b.jpg": b"b"}  # fmt: skip
    for path in (af.zip_archive(tmp_path / "j.zip", junk), af.tar_archive(tmp_path / "j.tar", junk),
                 af.sevenzip_archive(tmp_path / "j.7z", junk), af.folder(tmp_path / "j", junk)):  # fmt: skip
        with open_tree(path) as tree:
            assert sorted(m.name for m in tree.members()) == ["MSD-E/a.jpg", "MSD-E/b.jpg"]


def test_zip_names_without_the_utf8_flag_are_cp437(tmp_path: Path) -> None:
    path = af.zip_archive(tmp_path / "dos.zip", {"cafX.txt": b"c"}, compression="stored")
    path.write_bytes(path.read_bytes().replace(b"cafX.txt", b"caf\x82.txt"))  # 0x82 is 'é' in cp437
    with open_tree(path) as tree:
        assert [m.name for m in tree.members()] == ["café.txt"]
        assert tree.read("café.txt") == b"c"


def test_names_are_normalised(tmp_path: Path) -> None:
    path = af.zip_raw_names(tmp_path / "n.zip", ["./MSD-E\\anger\\a.jpg", "MSD-E//b.jpg"])
    with open_tree(path) as tree:
        assert [m.name for m in tree.members()] == ["MSD-E/anger/a.jpg", "MSD-E/b.jpg"]
        assert tree.read("MSD-E/anger/a.jpg") == b"payload"


# -- decompression bombs ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def zip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return af.zeros_zip(tmp_path_factory.mktemp("bomb") / "bomb.zip", "zeros.csv", 200 * af.MiB)


def test_flat_zip_bomb_is_stopped_while_streaming_with_little_memory(zip_bomb: Path) -> None:
    assert zip_bomb.stat().st_size < 400_000
    with open_tree(zip_bomb) as tree:
        assert tree.members() == [Member("zeros.csv", 200 * af.MiB)]  # declared sizes are not refused
        tracemalloc.start()
        try:
            with pytest.raises(UnsafeArchiveError, match=r"limits=Limits\(max_ratio=\.\.\.\)") as caught:
                tree.read("zeros.csv")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert "zeros.csv" in str(caught.value)
    assert peak < 48 * af.MiB  # stopped just past min_ratio_bytes (16 MiB), not at 200 MiB


def test_nested_zip_bomb_is_stopped(zip_bomb: Path, tmp_path: Path) -> None:
    outer = af.zip_archive(tmp_path / "outer.zip", {"data/inner.zip": zip_bomb.read_bytes()}, compression="stored")
    with open_tree(outer, scratch=tmp_path / "scratch") as tree:
        [member] = tree.members()
        assert member.name == "data/inner.zip/zeros.csv"
        with pytest.raises(UnsafeArchiveError, match=r"inner.zip.*Limits\(max_ratio="):
            with tree.open(member.name) as stream:
                while stream.read(af.MiB):
                    pass


def test_ratio_limit_can_be_raised(zip_bomb: Path) -> None:
    with open_tree(zip_bomb, limits=Limits(max_ratio=2000)) as tree:
        with tree.open("zeros.csv") as stream:
            assert sum(len(chunk) for chunk in iter(lambda: stream.read(4 * af.MiB), b"")) == 200 * af.MiB


def test_total_limit_counts_everything_read(tmp_path: Path) -> None:
    files = {f"{i}.bin": os.urandom(40_000) for i in range(3)}
    with open_tree(af.zip_archive(tmp_path / "t.zip", files), limits=Limits(max_total_bytes=100_000)) as tree:
        tree.read("0.bin")
        tree.read("1.bin")
        with pytest.raises(UnsafeArchiveError, match=r"limits=Limits\(max_total_bytes=\.\.\.\)"):
            tree.read("2.bin")


@pytest.mark.parametrize("kind", ["tar.gz", "7z", "gz"])
def test_bombs_in_other_formats_are_stopped(kind: str, tmp_path: Path) -> None:
    zeros = bytes(8 * af.MiB)
    limits = Limits(min_ratio_bytes=af.MiB)
    if kind == "tar.gz":  # refused when listed: opening a tar streams through it once
        with pytest.raises(UnsafeArchiveError, match=r"Limits\(max_ratio="):
            open_tree(af.tar_archive(tmp_path / "b.tar.gz", {"zeros": zeros}, compression="gz"), limits=limits)
        return
    if kind == "7z":
        path = af.sevenzip_archive(tmp_path / "b.7z", {"zeros.csv": zeros})
    else:
        path = af.gz_file(tmp_path / "zeros.csv.gz", zeros)
    with open_tree(path, limits=limits) as tree:
        with pytest.raises(UnsafeArchiveError, match=r"'zeros.csv'.*Limits\(max_ratio="):
            tree.read("zeros.csv")


def test_member_size_limit(tmp_path: Path) -> None:
    limits = Limits(max_member_bytes=200_000)
    files = {"small.bin": os.urandom(1000), "big.bin": os.urandom(300_000)}
    with open_tree(af.zip_archive(tmp_path / "m.zip", files), limits=limits) as tree:
        assert tree.read("small.bin") == files["small.bin"]
        with pytest.raises(UnsafeArchiveError, match="'big.bin' declares 293 KiB, over the 195 KiB limit"):
            tree.read("big.bin")
    with pytest.raises(UnsafeArchiveError, match="'big.bin' expands beyond 195 KiB"):
        open_tree(af.tar_archive(tmp_path / "m.tar", files), limits=limits)  # a tar is streamed through when opened


# -- damaged archives ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["zip-deflate", "7z", "tar.gz", "tar.xz", "zip-aes"])
def test_truncated_archive_says_the_download_is_incomplete(kind: str, tmp_path: Path) -> None:
    archive = af.truncated(build(kind, tmp_path))
    with pytest.raises(ArchiveError, match="incomplete") as caught:
        with open_tree(archive, password=give_password) as tree:
            for name in NAMES:
                tree.read(name)
    assert type(caught.value) is ArchiveError
    assert str(archive) in str(caught.value)


def test_truncated_single_gz_names_the_member(tmp_path: Path) -> None:
    path = af.truncated(af.gz_file(tmp_path / "fer2013.csv.gz", os.urandom(50_000)))
    with open_tree(path) as tree:
        with pytest.raises(ArchiveError, match="'fer2013.csv'.*incomplete"):
            tree.read("fer2013.csv")


# -- one pass --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tar.gz", "7z", "7z-password"])
def test_iter_read_makes_one_pass(kind: str, tmp_path: Path) -> None:
    files = {f"faces/{i:03d}.png": os.urandom(20_000) for i in range(30)}  # incompressible, like images
    archive = build(kind, tmp_path, files)
    size = archive.stat().st_size
    with open_tree(archive, password=give_password) as tree:
        before = tree.raw_bytes_read
        seen = [name for name, data in tree.iter_read(reversed(list(files))) if data == files[name]]
        one_pass = tree.raw_bytes_read - before
        assert sorted(seen) == sorted(files)  # each member once, with its bytes
        assert one_pass < 1.3 * size
        before = tree.raw_bytes_read
        for name in list(files)[-5:]:  # separate reads re-decompress from the start each time
            tree.read(name)
        assert tree.raw_bytes_read - before > 3 * size


def test_abandoned_7z_stream_stops_its_extraction_thread(tmp_path: Path) -> None:
    # 8 MiB: more than the chunks in flight, so the extraction thread is blocked when the reader leaves
    files = {"a.bin": os.urandom(64 * 1024) * 128, "b.bin": os.urandom(1000)}
    threads_before = threading.active_count()
    with open_tree(af.sevenzip_archive(tmp_path / "s.7z", files)) as tree:
        with tree.open("a.bin") as stream:
            assert stream.read(10) == files["a.bin"][:10]  # then walk away mid-member
        assert threading.active_count() == threads_before
        assert tree.read("b.bin") == files["b.bin"]
        partial = tree.iter_read(["a.bin", "b.bin"])
        assert next(partial)[0] in files
        partial.close()
        assert threading.active_count() == threads_before


def test_iter_read_reads_only_the_named_members(tmp_path: Path) -> None:
    with open_tree(build("tar.gz", tmp_path)) as tree:
        assert list(tree.iter_read(["Paired_files.txt"])) == [("Paired_files.txt", FILES["Paired_files.txt"])]
        with pytest.raises(KeyError):
            list(tree.iter_read(["not-there.jpg"]))


def test_limits_are_validated() -> None:
    with pytest.raises(UsageError, match="max_ratio must be above 1, not 0.5"):
        Limits(max_ratio=0.5)
    with pytest.raises(UsageError):
        Limits(max_total_bytes=0)


def test_gzip_magic_inside_a_zip_member_named_csv_is_not_expanded(tmp_path: Path) -> None:
    packed = gzip.compress(b"data")
    with open_tree(af.zip_archive(tmp_path / "p.zip", {"weird.csv": packed})) as tree:
        assert [m.name for m in tree.members()] == ["weird.csv"]  # images and tables are never opened as archives


# -- names and archives that used to escape as tracebacks -----------------------------------


def test_a_valid_zip_with_no_members_opens_empty(tmp_path: Path) -> None:
    path = af.zip_archive(tmp_path / "empty.zip", {})
    with open_tree(path) as tree:
        assert tree.members() == []


@pytest.mark.parametrize("name", ["happy/" + "a" * 252 + ".jpg", "happy/" + "é" * 126 + ".jpg"])
def test_a_name_part_longer_than_file_systems_allow_is_refused_when_opened(name: str, tmp_path: Path) -> None:
    """256 and 257 bytes (UTF-8): no common file system holds such a name (Errno 36 otherwise)."""
    path = af.zip_archive(tmp_path / "long.zip", {"happy/ok.jpg": b"x", name: b"y"})
    with pytest.raises(ArchiveError, match=r"has a name part of 25[67] bytes, over the 255 that file systems allow") as caught:
        open_tree(path)
    assert len(str(caught.value)) < 400  # the name is shown cut, not whole


def test_a_name_part_of_255_bytes_is_fine(tmp_path: Path) -> None:
    name = "happy/" + "a" * 251 + ".jpg"
    with open_tree(af.zip_archive(tmp_path / "ok.zip", {name: b"y"})) as tree:
        assert tree.read(name) == b"y"


@pytest.fixture(scope="session")
def big_deflate_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 GiB of zeros in a 1 MB zip: 100 times its compressed size is 100 MB, more than the promise."""
    return af.deflate_bomb(tmp_path_factory.mktemp("big-bomb") / "bomb.zip", "happy/bomb.jpg", 1024 * af.MiB)


def test_deflate_bomb_stops_within_64_mib_of_output_and_little_memory(big_deflate_bomb: Path) -> None:
    """The ratio is taken over the compressed bytes consumed so far, as for tar and 7z: a member
    that has made 16 MiB out of 16 KB is refused there, not after 100 times its whole size."""
    assert big_deflate_bomb.stat().st_size < 1_100_000
    produced = 0
    with open_tree(big_deflate_bomb) as tree:
        with pytest.raises(UnsafeArchiveError, match="'happy/bomb.jpg' expands more than 100 times"):
            with tree.open("happy/bomb.jpg") as stream:
                while chunk := stream.read(af.MiB):
                    produced += len(chunk)
        assert produced <= 64 * af.MiB
        tracemalloc.start()
        try:
            with pytest.raises(UnsafeArchiveError):
                tree.read("happy/bomb.jpg")  # what ingest does: the member whole in memory
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 100 * 10**6


def test_a_member_that_compresses_well_but_not_like_a_bomb_is_read_whole(tmp_path: Path) -> None:
    text = b"".join(b"%d,happy,train\n" % i for i in range(2_000_000))  # 30 MB of CSV, about 5:1
    with open_tree(af.zip_archive(tmp_path / "t.zip", {"labels.csv": text})) as tree:
        assert tree.read("labels.csv") == text


def test_iter_open_streams_the_named_members_in_one_pass(tmp_path: Path) -> None:
    path = af.tar_archive(tmp_path / "a.tar.gz", FILES, compression="gz")
    with open_tree(path) as tree:
        heads = {name: stream.read(4) for name, stream in tree.iter_open(["Paired_files.txt", NAMES[0]])}
    assert heads == {NAMES[0]: FILES[NAMES[0]][:4], "Paired_files.txt": b"s01_"}


def test_no_module_of_the_archives_package_holds_more_than_500_lines() -> None:
    """A guard against the next 1,500-line room: a format or a job that outgrows this gets its
    own module (and its own entry in FORMATS, for a format)."""
    package = Path(ferdata.archives.__file__).parent
    sizes = {path.name: len(path.read_text().splitlines()) for path in package.glob("*.py")}
    assert {"zips.py", "sevenzip.py", "tars.py", "dispatch.py"} <= set(sizes)
    assert {name: n for name, n in sizes.items() if n > 500} == {}

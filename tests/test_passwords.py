"""Passwords as a Python user passes them (str, bytes, Secret, a function), the CLI's sources
(--password-env, --password-file, the hidden prompt), and which layer names what: the library
speaks of its arguments, the CLI of its options."""

from __future__ import annotations

import io
import logging
import pickle
import subprocess
import traceback
from pathlib import Path

import pytest
from typer.testing import CliRunner

import archive_factory as af
import ferdata
from builders import image_bytes
from ferdata.archives import Limits, Secret, open_tree
from ferdata.cli import app
from ferdata.cli.ingest import password_source
from ferdata.errors import PasswordError, UnsafeArchiveError, UsageError
from ferdata.workspace import Workspace

PASSWORD = "Kr4sse-ümlaut-Passwort"  # not ASCII: str and bytes forms must agree on the encoding
FILES = {"happy/a.jpg": image_bytes(1), "sad/b.jpg": image_bytes(2), "happy/c.jpg": image_bytes(3)}
ENCRYPTED = ["zipcrypto", "aes", "7z", "7z-encrypted-header"]

# every way to say the same password
FORMS = {
    "str": lambda: PASSWORD,
    "bytes": lambda: PASSWORD.encode("utf-8"),
    "Secret": lambda: Secret(PASSWORD),
    "Secret(bytes)": lambda: Secret(PASSWORD.encode("utf-8")),
    "function->Secret": lambda: lambda: Secret(PASSWORD),
    "function->str": lambda: lambda: PASSWORD,
    "function->bytes": lambda: lambda: PASSWORD.encode("utf-8"),
}


def encrypted_archive(kind: str, folder: Path, files: dict[str, bytes] = FILES, password: str = PASSWORD) -> Path:
    if kind == "zipcrypto":
        return af.zipcrypto_archive(folder / "d.zip", files, password)
    if kind == "aes":
        return af.aes_zip_archive(folder / "d.zip", files, password)
    return af.sevenzip_archive(folder / "d.7z", files, password=password, encrypt_header=kind == "7z-encrypted-header")


@pytest.fixture(scope="module", params=ENCRYPTED)
def archive(request, tmp_path_factory) -> Path:
    return encrypted_archive(request.param, tmp_path_factory.mktemp(request.param))


@pytest.mark.parametrize("form", list(FORMS))
def test_every_password_form_opens_every_encrypted_kind(form: str, archive: Path) -> None:
    with open_tree(archive, password=FORMS[form]()) as tree:
        assert dict(tree.iter_read(FILES)) == FILES


def test_ingest_gives_the_same_manifest_whatever_the_password_form(archive: Path, tmp_path: Path) -> None:
    frames = {}
    for form in ("str", "bytes", "Secret", "function->Secret"):
        ws = Workspace.resolve(tmp_path / form)
        result = ferdata.ingest(archive, ws, dataset="imagefolder", align=False, password=FORMS[form]())
        frames[form] = result.manifest.frame[["image_id", "sha256", "label_original", "original_path"]]
    assert len(frames["str"]) == len(FILES)
    for form, frame in frames.items():
        assert frame.equals(frames["str"]), form


@pytest.mark.parametrize("kind", ["zipcrypto", "aes", "7z"])
def test_a_wrong_str_password_is_one_line_naming_the_argument(kind: str, tmp_path: Path) -> None:
    archive = encrypted_archive(kind, tmp_path)
    ws = Workspace.resolve(tmp_path / "ws")
    wrong = "not-" + PASSWORD
    with pytest.raises(PasswordError) as caught:
        ferdata.ingest(archive, ws, dataset="imagefolder", align=False, password=wrong)
    message = str(caught.value)
    assert message.startswith(f"wrong password for {archive}: ") and message.endswith("with password=")
    assert "\n" not in message and "--password" not in message
    assert PASSWORD not in message and wrong not in message
    assert ws.datasets() == []


def test_a_bytes_password_is_used_as_given_for_a_zip(tmp_path: Path) -> None:
    """ZipCrypto encrypts with bytes: a password typed on an old Windows code page is not UTF-8."""
    latin1 = "café-Paßwort".encode("latin-1")
    source = af.folder(tmp_path / "src", FILES)
    zipped = tmp_path / "legacy.zip"
    subprocess.run([b"zip", b"-q", b"-r", b"-P", latin1, str(zipped).encode(), b"."], cwd=source, check=True)
    with open_tree(zipped, password=latin1) as tree:
        assert tree.read("happy/a.jpg") == FILES["happy/a.jpg"]
    with pytest.raises(PasswordError, match="wrong password"):
        open_tree(zipped, password="café-Paßwort")  # the same text as UTF-8 is another key


def test_bytes_that_are_not_utf8_are_refused_for_7z_naming_the_argument(tmp_path: Path) -> None:
    archive = encrypted_archive("7z", tmp_path)
    with pytest.raises(PasswordError, match=r"7z archive, whose passwords are text: the bytes given as password= are"):
        open_tree(archive, password=b"caf\xe9")


@pytest.mark.parametrize(
    ("password", "message"),
    [
        (12345, "password= must be a str, bytes, a Secret or a function returning one, not int"),
        ("", "password= is empty"),
        (b"", "password= is empty"),
        (lambda: 12345, "the function given as password= returned int"),
        (lambda: "", "the function given as password= returned empty"),
    ],
)
def test_a_password_that_is_no_password_is_a_usage_error(password, message: str, tmp_path: Path) -> None:
    archive = encrypted_archive("aes", tmp_path)
    with pytest.raises(UsageError, match=message):
        open_tree(archive, password=password)


def test_a_bad_password_argument_fails_before_ingest_touches_the_workspace(tmp_path: Path) -> None:
    archive = encrypted_archive("aes", tmp_path)
    ws = Workspace.resolve(tmp_path / "ws")
    with pytest.raises(UsageError, match="password= must be"):
        ferdata.ingest(archive, ws, align=False, password=["not", "a", "password"])
    assert ws.datasets() == [] and not ws.internal.exists()


def test_a_function_is_called_once_and_only_for_encrypted_archives(tmp_path: Path) -> None:
    calls = []

    def ask() -> str:
        calls.append(1)
        return PASSWORD

    with open_tree(af.zip_archive(tmp_path / "plain.zip", FILES), password=ask) as tree:
        tree.read("happy/a.jpg")
    assert calls == []
    inner = encrypted_archive("7z", tmp_path)
    outer = af.aes_zip_archive(tmp_path / "outer.zip", {"inner.7z": inner.read_bytes()}, PASSWORD)
    with open_tree(outer, password=ask) as tree:
        assert tree.read("inner.7z/sad/b.jpg") == FILES["sad/b.jpg"]
    assert calls == [1]


# -- Secret never shows itself ---------------------------------------------------------------


@pytest.mark.parametrize("value", [PASSWORD, PASSWORD.encode()])
def test_secret_never_prints_its_value(value, caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(value)
    shown = [str(secret), repr(secret), f"{secret}", f"{secret!r}", "%s %r" % (secret, secret),
             "{} {!r}".format(secret, secret), repr([secret]), repr({"password": secret}), str((secret,))]  # fmt: skip
    assert all("***" in text for text in shown)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("ferdata.test").warning("password %s, %r", secret, secret)
        logging.getLogger("ferdata.test").warning(secret)
    assert "***" in caplog.text
    text = "\n".join(shown) + caplog.text
    assert PASSWORD not in text and repr(PASSWORD.encode()) not in text


def test_secret_cannot_be_pickled_even_inside_an_error() -> None:
    secret = Secret(PASSWORD)
    for carrier in (secret, PasswordError("wrong", secret), {"password": secret}):
        with pytest.raises(TypeError, match="cannot be pickled") as caught:
            pickle.dumps(carrier)
        assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("form", ["str", "bytes", "function->str"])
def test_no_frame_inside_ferdata_holds_a_plain_password(form: str, tmp_path: Path) -> None:
    """A traceback with locals (what a debugger or a crash reporter shows) shows none of it from
    ferdata's own frames, whatever form the caller passed (the caller's frame is the caller's)."""
    archive = encrypted_archive("aes", tmp_path)
    ws = Workspace.resolve(tmp_path / "ws")
    wrong = "wrong-" + PASSWORD
    given = {"str": wrong, "bytes": wrong.encode(), "function->str": lambda: wrong}[form]
    for attempt in (lambda: ferdata.ingest(archive, ws, align=False, password=given),
                    lambda: open_tree(archive, password=given)):  # fmt: skip
        with pytest.raises(PasswordError) as caught:
            attempt()
        frames = traceback.TracebackException.from_exception(caught.value, capture_locals=True).stack
        inside = [frame for frame in frames if "/ferdata/" in frame.filename]
        assert len(inside) >= 3  # ingest or open_tree, dispatch, the zip reader
        for frame in inside:
            for value in (frame.locals or {}).values():
                assert wrong not in value and repr(wrong.encode()) not in value, (frame.name, value)


# -- the CLI's password sources (only the CLI talks to a terminal) -------------------------


def test_cli_password_from_an_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MSDE_PW", PASSWORD)
    with open_tree(encrypted_archive("aes", tmp_path), password=password_source("MSDE_PW")) as tree:
        assert tree.read("sad/b.jpg") == FILES["sad/b.jpg"]
    for unset in ("", None):
        if unset is None:
            monkeypatch.delenv("MSDE_PW")
        else:
            monkeypatch.setenv("MSDE_PW", unset)
        with pytest.raises(PasswordError, match="MSDE_PW is not set or empty.*--password-file"):
            password_source("MSDE_PW")()


def test_cli_password_from_a_file_first_line(tmp_path: Path) -> None:
    file = tmp_path / "pw.txt"
    file.write_text(f"{PASSWORD}\r\nsecond line\n")
    assert password_source(file=file)().reveal() == PASSWORD
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(PasswordError, match="empty.txt is empty") as caught:
        password_source(file=tmp_path / "empty.txt")()
    assert PASSWORD not in str(caught.value)
    with pytest.raises(PasswordError, match="missing.txt does not exist.*--password-file"):
        password_source(file=tmp_path / "missing.txt")()
    with pytest.raises(UsageError, match="either --password-env or --password-file"):
        password_source("X", file)


def test_cli_prompt_asks_once_with_getpass(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or PASSWORD)
    provide = password_source(interactive=True)
    assert provide().reveal() == PASSWORD and provide().reveal() == PASSWORD
    assert asked == ["Archive password (hidden): "]
    monkeypatch.setattr("getpass.getpass", lambda prompt: "")
    with pytest.raises(PasswordError, match="no password entered"):
        password_source(interactive=True)()


def test_cli_does_not_prompt_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("typed-ahead\n"))  # a pipe, not a terminal
    monkeypatch.setattr("getpass.getpass", lambda prompt: pytest.fail("must not prompt without a terminal"))
    assert password_source()() is None  # nothing to give: the library says the archive is encrypted


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_library_never_prompts_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.stdin", _Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt: pytest.fail("the library must not prompt"))
    archive = encrypted_archive("7z-encrypted-header", tmp_path)
    ws = Workspace.resolve(tmp_path / "ws")
    for attempt in (lambda: open_tree(archive), lambda: ferdata.ingest(archive, ws, align=False)):
        with pytest.raises(PasswordError, match=r"is encrypted: pass its password with password= \(a str"):
            attempt()


# -- the library names its arguments, the CLI its options ----------------------------------


def test_library_errors_name_arguments_and_cli_errors_name_options(tmp_path: Path) -> None:
    archive = encrypted_archive("aes", tmp_path)
    bomb = af.zeros_zip(tmp_path / "bomb.zip", "happy/zeros.jpg", 24 * af.MiB)
    ws = Workspace.resolve(tmp_path / "ws")
    cases = [  # (library call, CLI arguments, what the library says, what the CLI says instead)
        (lambda: ferdata.ingest(archive, ws, align=False),
         [str(archive)],
         f"{archive} is encrypted: pass its password with password= (a str, bytes or a function returning one)",
         f"{archive} is encrypted: pass its password with --password-env VAR or --password-file FILE"),
        (lambda: ferdata.ingest(archive, ws, align=False, password="wrong"),
         [str(archive), "--password-env", "PW"],
         "pass the one you received with password=",
         "pass the one you received with --password-env or --password-file"),
        (lambda: ferdata.ingest(bomb, ws, dataset="imagefolder", align=False),
         [str(bomb), "--dataset", "imagefolder"],
         "raise the limit with limits=Limits(max_ratio=...)",
         "raise the limit with --max-ratio"),
        (lambda: ferdata.ingest(bomb, ws, dataset="imagefolder", align=False, limits=Limits(max_total_bytes=2 * af.MiB)),
         [str(bomb), "--dataset", "imagefolder", "--max-total-gb", "0.002"],
         "raise the limit with limits=Limits(max_total_bytes=...)",
         "raise the limit with --max-total-gb"),
        (lambda: Limits(max_ratio=0.5),
         [str(bomb), "--max-ratio", "0.5"],
         "archive limit max_ratio must be above 1, not 0.5",
         "--max-ratio must be above 1, not 0.5"),
    ]  # fmt: skip
    for call, args, library_says, cli_says in cases:
        with pytest.raises((PasswordError, UnsafeArchiveError, UsageError)) as caught:
            call()
        assert library_says in str(caught.value)
        assert "--password" not in str(caught.value) and "--max" not in str(caught.value)
        result = CliRunner().invoke(app, ["ingest", *args, "--no-align", "-w", str(tmp_path / "cli-ws")],
                                    env={"PW": "wrong"})  # fmt: skip
        assert result.exit_code == 1, result.output
        assert cli_says in result.output and "password=" not in result.output and "Limits(" not in result.output


# -- the public API ------------------------------------------------------------------------


def test_public_names_are_the_library_objects_even_after_their_modules_are_imported() -> None:
    import importlib

    import ferdata.ingest  # noqa: F401 - binds the submodule on the package, which must not hide the function
    import ferdata.publish  # noqa: F401
    import ferdata.relabel  # noqa: F401

    for name, module in ferdata._API.items():
        assert getattr(ferdata, name) is getattr(importlib.import_module(f"ferdata.{module}"), name), name
    assert callable(ferdata.ingest) and ferdata.Secret is Secret and ferdata.Limits is Limits
    assert {"Secret", "Password", "Limits", "open_tree", "PasswordError"} <= set(ferdata.__all__)

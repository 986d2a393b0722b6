"""Passwords: what a ``password=`` argument may be, and the one place it is understood.

A password may be given as

* a ``str`` (encoded as UTF-8 for zip; 7z passwords are text),
* ``bytes`` (used as they are for zip, which is what a ZipCrypto password made on an old Windows
  code page needs; decoded as UTF-8 for 7z),
* a :class:`Secret` holding either, or
* a function taking no argument and returning any of those, or ``None`` when it has none to
  give. It is called at most once, and only when something encrypted is met, so that a CLI can
  ask on a terminal only for archives that need it.

:func:`as_provider` turns any of these into the provider the readers call; ``open_tree`` and
``ingest`` both go through it. The library never prompts: a terminal belongs to the CLI
(``ferdata.cli.ingest.password_source`` reads ``--password-env``, ``--password-file`` or asks).

Messages speak of the ``password=`` argument; the CLI maps that to its own options.
"""

from __future__ import annotations

from collections.abc import Callable
from ferdata.errors import PasswordError, UsageError

__all__ = ["Password", "PasswordProvider", "Secret", "as_provider", "encrypted", "wrong_password"]

# Library messages name the argument; the CLI rewrites these spellings into its options.
_PASSWORD_HINT = "pass its password with password= (a str, bytes or a function returning one)"


class Secret:
    """A password that never shows itself: str(), repr() and format() give '***', so it is safe
    in messages, logs and tracebacks with locals; pickling it (and so copying it into another
    process or a file by accident) fails."""

    __slots__ = ("_value",)

    def __init__(self, value: str | bytes) -> None:
        if not isinstance(value, (str, bytes)):
            raise TypeError(f"a Secret holds a str or bytes, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str | bytes:
        """The password as it was given."""
        return self._value

    def reveal_bytes(self) -> bytes:
        """The password as bytes: as given, or a str encoded as UTF-8 (what zip encrypts with)."""
        value = self._value
        return value if isinstance(value, bytes) else value.encode("utf-8")

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __reduce__(self) -> tuple:  # never pickled (and so never written anywhere) by accident
        raise TypeError("a Secret cannot be pickled")


Password = str | bytes | Secret | Callable[[], str | bytes | Secret | None]
"""What ``password=`` accepts: see the module's docstring."""

PasswordProvider = Callable[[], Secret | None]
"""What the readers call, at most once, when they meet something encrypted."""


def as_provider(password: Password | None) -> PasswordProvider | None:
    """``password=`` as a provider of a :class:`Secret` (None: no password was given).

    A plain value is checked at once (a wrong type or an empty password is a UsageError before
    any archive is opened); what a function returns is checked when it is called.
    """
    if password is None:
        return None
    if isinstance(password, (str, bytes, Secret)):
        secret = _secret(password, "password= is")
        return lambda: secret
    if callable(password):
        given = password

        def provide() -> Secret | None:
            answer = given()
            return None if answer is None else _secret(answer, "the function given as password= returned")

        return provide
    raise UsageError(
        f"password= must be a str, bytes, a Secret or a function returning one, not {type(password).__name__}"
    )


def _secret(value: object, said: str) -> Secret:
    if isinstance(value, Secret):
        secret = value
    elif isinstance(value, (str, bytes)):
        secret = Secret(value)
    else:
        raise UsageError(f"{said} {type(value).__name__}: a password is a str, bytes or a Secret")
    if not secret.reveal():
        raise UsageError(f"{said} empty: pass the archive's password, or leave password out")
    return secret


def encrypted(label: str) -> PasswordError:
    """No password was given (or the provider had none) for an encrypted archive."""
    return PasswordError(f"{label} is encrypted: {_PASSWORD_HINT}")


def wrong_password(label: str, what: str) -> PasswordError:
    return PasswordError(
        f"wrong password for {label}: it does not decrypt {what}; pass the one you received with password="
    )

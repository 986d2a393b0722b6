"""Work started on a thread of its own, whose outcome the caller collects later, error included."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


class Background(Generic[T]):
    """``target(*args)`` on a daemon thread named ``name``. :meth:`result` waits for it and returns
    its value, or raises its exception on the caller's thread, where the work would have raised it
    had it run there; :meth:`wait` waits at most a while (the work is then left to run)."""

    def __init__(self, name: str, target: Callable[..., T], *args: Any) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(target, args), name=name, daemon=True)
        self._thread.start()

    def _run(self, target: Callable[..., T], args: tuple[Any, ...]) -> None:
        try:
            self._value = target(*args)
        except BaseException as exc:  # noqa: BLE001 - raised on the caller's thread by result()
            self._error = exc

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the work is done, after waiting at most ``timeout`` seconds for it."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return cast(T, self._value)

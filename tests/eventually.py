"""The one way a test waits: poll a condition with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str | Callable[[], str] = "the condition",
) -> T:
    """Call `check` until it returns something true, and return that; fail the test
    with `what` (a text, or a function making one, e.g. a server's log) after `timeout`
    seconds. `interval` is the pause between calls."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            message = what() if callable(what) else what
            raise AssertionError(f"{message}: not so after {timeout:g}s")
        time.sleep(interval)
    return result

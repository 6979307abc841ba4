"""Helpers for the contract suites: waiting without sleeping, test records, worker processes.

Nothing here knows a backend's internals except `backends.py`, the one place that turns
a Bus into command-line arguments for a worker process and back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T | None],
    *,
    timeout_s: float,
    what: str | Callable[[], str],
    interval_s: float = 0.02,
) -> T:
    """Call `check` until it returns something truthy and return that; fail after
    `timeout_s` with `what` (a text, or a function that describes the state reached)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = what() if callable(what) else what
            raise AssertionError(f"not within {timeout_s:.1f}s: {text}")
        time.sleep(interval_s)

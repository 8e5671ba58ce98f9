"""The tests' one polling helper: wait for a state, never assert how long it took."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(read: Callable[[], T], until: Callable[[T], bool], *, what: str, timeout: float = 120.0,
         interval: float = 0.2) -> T:
    """Call ``read`` every ``interval`` seconds until ``until`` holds for what it returned, and
    return that value.

    ``timeout`` (seconds) only guards against a hang, generously: a test asserts the state it
    waited for, never the time it took (CI shares two cores).

    Raises:
        AssertionError: ``until`` never held within ``timeout``; the message names ``what`` and
            the last value read.
    """
    deadline = time.monotonic() + timeout
    while not until(value := read()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout:g} s; last read: {value!r}")
        time.sleep(interval)
    return value

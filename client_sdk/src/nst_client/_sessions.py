"""The synchronous client's ``requests`` sessions: one per call in flight, so that one client
can be used from several threads at once.

requests does not promise that one ``Session`` is safe to use from several threads, so each
attempt borrows a session no other thread is using, and gives it back when the answer's
headers have arrived (the body of a streamed answer is then read from its own connection,
which the session's pool no longer hands out). Sessions are kept for reuse: a client that is
never used from two threads at once has exactly one.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, List

import requests

__all__ = ["SessionPool"]


class SessionPool:
    """The ``requests.Session`` objects of one client: as many as calls were ever in flight at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all: List[requests.Session] = []
        self._idle: List[requests.Session] = []

    @contextmanager
    def borrow(self) -> Iterator[requests.Session]:
        """A session no other thread is using, for one attempt; given back on leaving."""
        with self._lock:
            session = self._idle.pop() if self._idle else None
        if session is None:
            session = requests.Session()
            with self._lock:
                self._all.append(session)
        try:
            yield session
        finally:
            with self._lock:
                self._idle.append(session)

    def close(self) -> None:
        """Close every session's connections. Safe to call more than once; a later call opens
        connections again, as a closed ``requests.Session`` does."""
        with self._lock:
            sessions = list(self._all)
        for session in sessions:
            session.close()

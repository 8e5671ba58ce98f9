"""The job runner of one worker process: one job at a time per device, in acceptance order, and
a watchdog that ends abandoned jobs.

Jobs run on one background thread, so the worker's request thread is free to answer status,
result and cancel calls (and to accept jobs) while an optimization runs. Several worker
processes on one machine share a device through an exclusive lock file per device
(``fcntl.flock``): one optimization per device at a time. The watchdog records the worker's
heartbeat, cancels jobs whose lease ran out, fails the jobs of workers that stopped beating and
deletes expired results, once a second.
"""

from __future__ import annotations

import fcntl
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from .store import JobStore

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Seconds between two watchdog passes.
WATCH_EVERY_S = 1.0


class Runner:
    """Runs jobs one at a time on a background thread, holding the device's lock file.

    Args:
        store: the job store (the watchdog works on it).
        lock_dir: where the per-device lock files live (a folder of this machine).
        device: the device the jobs run on (``"cpu"``, ``"cuda:0"``); one lock per device.
        worker: this worker's name, whose heartbeat the watchdog records.
        heartbeat_timeout_s: seconds after which a worker's silence fails its jobs.
    """

    def __init__(self, store: JobStore, lock_dir: Path, device: str, *, worker: str,
                 heartbeat_timeout_s: float) -> None:
        self.store, self.worker, self.heartbeat_timeout_s = store, worker, heartbeat_timeout_s
        lock_dir.mkdir(parents=True, exist_ok=True)
        self.lock_path = lock_dir / f"device-{re.sub(r'[^A-Za-z0-9]+', '-', device)}.lock"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nst-job")
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="nst-job-watchdog", daemon=True)
        self._watchdog.start()

    def submit(self, work: Callable[[], _T]) -> Future[_T]:
        """Queue ``work`` (it runs after the jobs queued before it, with the device lock held)."""
        return self._executor.submit(self._locked, work)

    def _locked(self, work: Callable[[], _T]) -> _T:
        with self.lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            return work()

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_EVERY_S):
            try:
                self.store.beat(self.worker)
                expired = self.store.expire_leases()
                if expired:
                    logger.info("jobs %s: lease expired, cancelled", ", ".join(expired))
                lost = self.store.fail_silent(self.heartbeat_timeout_s)
                if lost:
                    logger.warning("jobs %s: their worker stopped beating, failed", ", ".join(lost))
                self.store.purge()
            except Exception:  # a locked or unreadable store must not end the watchdog
                logger.exception("job watchdog pass failed")

    def close(self) -> None:
        """Stop the watchdog and let the queued jobs finish."""
        self._stop.set()
        self._executor.shutdown(wait=True)

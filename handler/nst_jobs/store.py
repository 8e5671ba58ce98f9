"""The job store: one row per job, shared by every worker on the machine through SQLite (WAL).

A job is ``queued`` when accepted, ``running`` while a worker optimizes it, and ends
``succeeded``, ``failed`` or ``cancelled``. A cancel is a flag on the row: a queued job ends at
once, a running one when its worker next looks (every iteration). A job with a lease ends
cancelled when nobody renews it in time (:meth:`JobStore.expire_leases`); jobs a dead worker
held end ``failed`` (:meth:`JobStore.fail_worker`); finished jobs are deleted ``ttl_s`` seconds
after they end (:meth:`JobStore.purge`). Times are Unix seconds (``time.time()``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
#: States a job leaves no more.
FINAL = (SUCCEEDED, FAILED, CANCELLED)
#: Why a job was cancelled.
BY_CLIENT, LEASE_EXPIRED = "client", "lease_expired"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    worker TEXT NOT NULL,
    created_s REAL NOT NULL,
    started_s REAL,
    finished_s REAL,
    lease_s REAL,
    lease_until_s REAL,
    cancel TEXT,
    progress TEXT,
    preview TEXT,
    result TEXT,
    error TEXT,
    ttl_s REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
"""


@dataclass(frozen=True)
class Job:
    """One job as stored."""

    id: str
    state: str
    """One of :data:`STATES`."""
    worker: str
    """The worker that accepted it and runs it."""
    created_s: float
    started_s: float | None
    finished_s: float | None
    lease_s: float | None
    """Seconds a client's poll keeps the job alive; ``None``: no lease (a client is waiting on
    the connection)."""
    lease_until_s: float | None
    cancel: str | None
    """Why a cancel was asked for (:data:`BY_CLIENT`, :data:`LEASE_EXPIRED`); ``None``: it was not."""
    progress: dict[str, Any] | None
    """The latest progress event (iteration, of, losses, elapsed_s, eta_s)."""
    preview: dict[str, Any] | None
    """The latest preview event (a small JPEG)."""
    result: dict[str, Any] | None
    """The response body of a finished job (also of a cancelled one that has an image)."""
    error: dict[str, Any] | None
    """The error body of a failed job."""

    @property
    def done(self) -> bool:
        """Whether the job has ended."""
        return self.state in FINAL


class JobStore:
    """Jobs in one SQLite file (WAL, so readers never wait for the writer), safe to share
    between threads and processes.

    Args:
        path: the database file; its folder is created.
        ttl_s: seconds a finished job (its result) is kept.
        busy_timeout_s: how long a write waits for another process's write.
    """

    def __init__(self, path: Path, *, ttl_s: float = 3600.0, busy_timeout_s: float = 10.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.ttl_s = path, ttl_s
        self._db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction that takes the write lock at once (no upgrade deadlocks)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def create(self, worker: str, *, lease_s: float | None = None, now: float | None = None) -> Job:
        """A new ``queued`` job accepted by ``worker``, with a lease of ``lease_s`` seconds
        (``None``: none)."""
        now = time.time() if now is None else now
        job_id = uuid.uuid4().hex
        with self._write() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            db.execute("INSERT INTO jobs (id, seq, state, worker, created_s, lease_s, lease_until_s, ttl_s) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (job_id, seq, QUEUED, worker, now, lease_s, None if lease_s is None else now + lease_s,
                        self.ttl_s))
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        """The job, or ``None`` for an unknown (or purged) id."""
        with self._lock:
            row = self._db.execute("SELECT id, state, worker, created_s, started_s, finished_s, lease_s, "
                                   "lease_until_s, cancel, progress, preview, result, error FROM jobs WHERE id = ?",
                                   (job_id,)).fetchone()
        if row is None:
            return None
        *head, progress, preview, result, error = row
        return Job(*head, *(None if v is None else json.loads(v) for v in (progress, preview, result, error)))

    def position(self, job_id: str) -> int:
        """How many jobs run or wait before ``job_id`` (0: it runs, or runs next); the order is
        acceptance order across the machine."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM jobs WHERE state IN (?, ?) AND seq < (SELECT seq FROM jobs WHERE id = ?)",
                (QUEUED, RUNNING, job_id)).fetchone()
        return int(row[0])

    def active(self) -> int:
        """Jobs ``queued`` or ``running`` (what ``max_queued_jobs`` bounds)."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)",
                                        (QUEUED, RUNNING)).fetchone()[0])

    def start(self, job_id: str, *, now: float | None = None) -> Job | None:
        """Mark a queued job ``running`` and return it; ``None`` when it is no longer queued
        (cancelled)."""
        with self._write() as db:
            changed = db.execute("UPDATE jobs SET state = ?, started_s = ? WHERE id = ? AND state = ?",
                                 (RUNNING, time.time() if now is None else now, job_id, QUEUED)).rowcount
        return self.get(job_id) if changed == 1 else None

    def report(self, job_id: str, *, progress: dict[str, Any] | None = None,
               preview: dict[str, Any] | None = None) -> str | None:
        """Record a running job's latest progress and/or preview event; return why a cancel was
        asked for, or ``None`` (what the worker checks every iteration)."""
        with self._write() as db:
            if progress is not None:
                db.execute("UPDATE jobs SET progress = ? WHERE id = ?", (json.dumps(progress), job_id))
            if preview is not None:
                db.execute("UPDATE jobs SET preview = ? WHERE id = ?", (json.dumps(preview), job_id))
            row = db.execute("SELECT cancel FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else row[0]

    def finish(self, job_id: str, state: str, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None, now: float | None = None) -> Job | None:
        """End a job: ``succeeded``/``cancelled`` with its response body, or ``failed`` with an
        error body. Returns the job as it is then (``None`` for an unknown id); a job that had
        already ended stays as it ended.

        Raises:
            ValueError: ``state`` is not a final state.
        """
        if state not in FINAL:
            raise ValueError(f"state must be one of {FINAL}, got {state!r}")
        with self._write() as db:
            db.execute("UPDATE jobs SET state = ?, finished_s = ?, result = ?, error = ? WHERE id = ? AND state IN "
                       "(?, ?)", (state, time.time() if now is None else now,
                                  None if result is None else json.dumps(result),
                                  None if error is None else json.dumps(error), job_id, QUEUED, RUNNING))
        return self.get(job_id)

    def cancel(self, job_id: str, reason: str = BY_CLIENT, *, now: float | None = None) -> Job | None:
        """Ask for a job to stop: a queued one ends ``cancelled`` at once, a running one when its
        worker next reports; a finished one is left as it is. Returns the job after, or ``None``."""
        now = time.time() if now is None else now
        with self._write() as db:
            db.execute("UPDATE jobs SET cancel = COALESCE(cancel, ?) WHERE id = ? AND state IN (?, ?)",
                       (reason, job_id, QUEUED, RUNNING))
            db.execute("UPDATE jobs SET state = ?, finished_s = ? WHERE id = ? AND state = ?",
                       (CANCELLED, now, job_id, QUEUED))
        return self.get(job_id)

    def renew(self, job_id: str, *, now: float | None = None) -> None:
        """Extend an unfinished job's lease by its ``lease_s`` from ``now`` (a client polled it)."""
        now = time.time() if now is None else now
        with self._write() as db:
            db.execute("UPDATE jobs SET lease_until_s = ? + lease_s WHERE id = ? AND lease_s IS NOT NULL "
                       "AND state IN (?, ?)", (now, job_id, QUEUED, RUNNING))

    def expire_leases(self, *, now: float | None = None) -> list[str]:
        """Cancel (:data:`LEASE_EXPIRED`) every unfinished job whose lease ran out; return their ids."""
        now = time.time() if now is None else now
        with self._lock:
            ids = [r[0] for r in self._db.execute(
                "SELECT id FROM jobs WHERE state IN (?, ?) AND cancel IS NULL AND lease_until_s < ?",
                (QUEUED, RUNNING, now))]
        for job_id in ids:
            self.cancel(job_id, LEASE_EXPIRED, now=now)
        return ids

    def fail_worker(self, worker: str, message: str, *, now: float | None = None) -> list[str]:
        """End ``failed`` every unfinished job ``worker`` held (it died, or restarted); return their ids."""
        now = time.time() if now is None else now
        error = json.dumps({"error": {"code": "worker_died", "message": message, "field": None}})
        with self._write() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE worker = ? AND state IN (?, ?)",
                                            (worker, QUEUED, RUNNING))]
            db.execute("UPDATE jobs SET state = ?, finished_s = ?, error = ? WHERE worker = ? AND state IN (?, ?)",
                       (FAILED, now, error, worker, QUEUED, RUNNING))
        return ids

    def purge(self, *, now: float | None = None) -> int:
        """Delete the jobs that ended more than their ``ttl_s`` ago; return how many."""
        now = time.time() if now is None else now
        with self._write() as db:
            return db.execute("DELETE FROM jobs WHERE finished_s IS NOT NULL AND finished_s + ttl_s < ?",
                              (now,)).rowcount

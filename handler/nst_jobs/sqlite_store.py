"""The embedded job store: one row per job in an SQLite file (WAL) that every worker of one
machine shares. :mod:`.store` describes the states and the interface."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .store import BY_CLIENT, CANCELLED, FAILED, LEASE_EXPIRED, QUEUED, RUNNING, Job, JobStore, worker_died

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
    ttl_s REAL NOT NULL,
    estimate_s REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS workers (
    name TEXT PRIMARY KEY,
    beat_s REAL NOT NULL
);
"""
#: A job's machine (:func:`.store.machine_of`) in SQL.
_MACHINE = "CASE WHEN instr(worker, ':') > 0 THEN substr(worker, 1, instr(worker, ':') - 1) ELSE worker END"


_COLUMNS = ("id, state, worker, created_s, started_s, finished_s, lease_s, lease_until_s, cancel, progress, preview, "
            "result, error, estimate_s")


def _job(row: tuple[Any, ...]) -> Job:
    """A row of :data:`_COLUMNS` as a :class:`Job`."""
    values = dict(zip(_COLUMNS.split(", "), row, strict=True))
    for name in ("progress", "preview", "result", "error"):
        values[name] = None if values[name] is None else json.loads(values[name])
    return Job(**values)


class SqliteJobStore(JobStore):
    """Jobs in one SQLite file (WAL, so readers never wait for the writer), safe to share
    between the threads and processes of one machine.

    Args:
        path: the database file; its folder is created.
        ttl_s: seconds a finished job (its result) is kept.
        busy_timeout_s: how long a write waits for another process's write.
    """

    def __init__(self, path: Path, *, ttl_s: float = 3600.0, busy_timeout_s: float = 10.0) -> None:
        super().__init__(ttl_s=ttl_s)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
            if "estimate_s" not in columns:  # a file written before estimates
                self._db.execute("ALTER TABLE jobs ADD COLUMN estimate_s REAL")

    def close(self) -> None:
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

    def create(self, worker: str, *, lease_s: float | None = None, estimate_s: float | None = None,
               now: float | None = None) -> Job:
        now = time.time() if now is None else now
        job_id = uuid.uuid4().hex
        with self._write() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            db.execute("INSERT INTO jobs (id, seq, state, worker, created_s, lease_s, lease_until_s, ttl_s, estimate_s) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (job_id, seq, QUEUED, worker, now, lease_s, None if lease_s is None else now + lease_s,
                        self.ttl_s, estimate_s))
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def ahead(self, job_id: str) -> list[Job]:
        columns = ", ".join(f"j.{c}" for c in _COLUMNS.split(", "))
        with self._lock:
            rows = self._db.execute(
                f"SELECT {columns} FROM jobs AS j, jobs AS this WHERE this.id = ? AND j.state IN (?, ?) "
                f"AND j.seq < this.seq AND {_MACHINE.replace('worker', 'j.worker')} = "
                f"{_MACHINE.replace('worker', 'this.worker')} ORDER BY j.seq", (job_id, QUEUED, RUNNING)).fetchall()
        return [_job(row) for row in rows]

    def active(self, machine: str) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM jobs WHERE state IN (?, ?) AND {_MACHINE} = ?",
                                        (QUEUED, RUNNING, machine)).fetchone()[0])

    def start(self, job_id: str, *, now: float | None = None) -> Job | None:
        with self._write() as db:
            changed = db.execute("UPDATE jobs SET state = ?, started_s = ? WHERE id = ? AND state = ?",
                                 (RUNNING, time.time() if now is None else now, job_id, QUEUED)).rowcount
        return self.get(job_id) if changed == 1 else None

    def report(self, job_id: str, *, progress: dict[str, Any] | None = None,
               preview: dict[str, Any] | None = None) -> str | None:
        with self._write() as db:
            if progress is not None:
                db.execute("UPDATE jobs SET progress = ? WHERE id = ?", (json.dumps(progress), job_id))
            if preview is not None:
                db.execute("UPDATE jobs SET preview = ? WHERE id = ?", (json.dumps(preview), job_id))
            row = db.execute("SELECT cancel FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else row[0]

    def finish(self, job_id: str, state: str, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None, now: float | None = None) -> Job | None:
        self.check_final(state)
        with self._write() as db:
            db.execute("UPDATE jobs SET state = ?, finished_s = ?, result = ?, error = ? WHERE id = ? AND state IN "
                       "(?, ?)", (state, time.time() if now is None else now,
                                  None if result is None else json.dumps(result),
                                  None if error is None else json.dumps(error), job_id, QUEUED, RUNNING))
        return self.get(job_id)

    def cancel(self, job_id: str, reason: str = BY_CLIENT, *, now: float | None = None) -> Job | None:
        now = time.time() if now is None else now
        with self._write() as db:
            db.execute("UPDATE jobs SET cancel = COALESCE(cancel, ?) WHERE id = ? AND state IN (?, ?)",
                       (reason, job_id, QUEUED, RUNNING))
            db.execute("UPDATE jobs SET state = ?, finished_s = ? WHERE id = ? AND state = ?",
                       (CANCELLED, now, job_id, QUEUED))
        return self.get(job_id)

    def renew(self, job_id: str, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._write() as db:
            db.execute("UPDATE jobs SET lease_until_s = ? + lease_s WHERE id = ? AND lease_s IS NOT NULL "
                       "AND state IN (?, ?)", (now, job_id, QUEUED, RUNNING))

    def expire_leases(self, *, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        with self._lock:
            ids = [r[0] for r in self._db.execute(
                "SELECT id FROM jobs WHERE state IN (?, ?) AND cancel IS NULL AND lease_until_s < ?",
                (QUEUED, RUNNING, now))]
        for job_id in ids:
            self.cancel(job_id, LEASE_EXPIRED, now=now)
        return ids

    def fail_worker(self, worker: str, message: str, *, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        error = json.dumps(worker_died(message))
        with self._write() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE worker = ? AND state IN (?, ?)",
                                            (worker, QUEUED, RUNNING))]
            db.execute("UPDATE jobs SET state = ?, finished_s = ?, error = ? WHERE worker = ? AND state IN (?, ?)",
                       (FAILED, now, error, worker, QUEUED, RUNNING))
        return ids

    def beat(self, worker: str, *, now: float | None = None) -> None:
        with self._write() as db:
            db.execute("INSERT INTO workers (name, beat_s) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                       "beat_s = excluded.beat_s", (worker, time.time() if now is None else now))

    def fail_silent(self, after_s: float, *, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        with self._lock:
            silent = [r[0] for r in self._db.execute("SELECT name FROM workers WHERE beat_s < ?", (now - after_s,))]
        failed: list[str] = []
        for worker in silent:
            failed += self.fail_worker(worker, f"worker {worker} stopped answering (no heartbeat for {after_s:g} s) "
                                       "before the job ended", now=now)
            with self._write() as db:
                db.execute("DELETE FROM workers WHERE name = ? AND beat_s < ?", (worker, now - after_s))
        return failed

    def purge(self, *, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._write() as db:
            return db.execute("DELETE FROM jobs WHERE finished_s IS NOT NULL AND finished_s + ttl_s < ?",
                              (now,)).rowcount

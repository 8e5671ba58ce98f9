"""What a job is, and the job store's interface (:class:`JobStore`) that every backend keeps.

A job is ``queued`` when accepted, ``running`` while a worker optimizes it, and ends
``succeeded``, ``failed`` or ``cancelled``. A cancel is a flag on the job: a queued job ends at
once, a running one when its worker next looks (every iteration). A job with a lease ends
cancelled when nobody renews it in time (:meth:`JobStore.expire_leases`); jobs a dead worker
held end ``failed`` (:meth:`JobStore.fail_worker` when it restarts, :meth:`JobStore.fail_silent`
when it stops beating); finished jobs are deleted ``ttl_s`` seconds after they end
(:meth:`JobStore.purge`). Times are Unix seconds (``time.time()``).

Backends: :class:`nst_jobs.sqlite_store.SqliteJobStore` (one machine's workers share a file) and
:class:`nst_jobs.redis_store.RedisJobStore` (replicas on many machines share a Redis server).
``tests/jobs/test_store.py`` runs one suite on both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
#: States a job leaves no more.
FINAL = (SUCCEEDED, FAILED, CANCELLED)
#: Why a job was cancelled.
BY_CLIENT, LEASE_EXPIRED = "client", "lease_expired"


def machine_of(worker: str) -> str:
    """The machine of a worker named ``"<host>:<slot>"`` (its host; the whole name without a
    colon). Queue positions and the queue bound count the jobs of one machine: its devices run
    them, whatever the store is shared with."""
    return worker.split(":", 1)[0]


def worker_died(message: str) -> dict[str, Any]:
    """The error body (code ``worker_died``) of a job whose worker died."""
    return {"error": {"code": "worker_died", "message": message, "field": None}}


@dataclass(frozen=True)
class Job:
    """One job as stored."""

    id: str
    state: str
    """One of :data:`STATES`."""
    worker: str
    """The worker that accepted it and runs it (``"<host>:<slot>"``)."""
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
    estimate_s: float | None = None
    """Seconds its run was expected to take when it was accepted (``None``: unknown)."""

    @property
    def done(self) -> bool:
        """Whether the job has ended."""
        return self.state in FINAL


class JobStore(ABC):
    """Jobs shared by every worker that opens the same store, safe between threads and processes.

    Every method that takes ``now`` (Unix seconds) uses ``time.time()`` when it is ``None``.

    Args:
        ttl_s: seconds a finished job (its result) is kept.
    """

    def __init__(self, *, ttl_s: float) -> None:
        self.ttl_s = ttl_s

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    @abstractmethod
    def create(self, worker: str, *, lease_s: float | None = None, estimate_s: float | None = None,
               now: float | None = None) -> Job:
        """A new ``queued`` job accepted by ``worker``, with a lease of ``lease_s`` seconds
        (``None``: none) and the seconds its run is expected to take, placed after every job
        accepted before it."""

    @abstractmethod
    def get(self, job_id: str) -> Job | None:
        """The job, or ``None`` for an unknown (or purged) id."""

    @abstractmethod
    def ahead(self, job_id: str) -> list[Job]:
        """The jobs of the same machine (:func:`machine_of`) that run or wait before ``job_id``,
        in acceptance order (none for an unknown id)."""

    def position(self, job_id: str) -> int:
        """How many jobs run or wait before ``job_id`` on its machine (0: it runs, or runs next)."""
        return len(self.ahead(job_id))

    @abstractmethod
    def active(self, machine: str) -> int:
        """Jobs ``queued`` or ``running`` on ``machine`` (what ``max_queued_jobs`` bounds)."""

    @abstractmethod
    def start(self, job_id: str, *, now: float | None = None) -> Job | None:
        """Mark a queued job ``running`` and return it; ``None`` when it is no longer queued
        (cancelled)."""

    @abstractmethod
    def report(self, job_id: str, *, progress: dict[str, Any] | None = None,
               preview: dict[str, Any] | None = None) -> str | None:
        """Record a running job's latest progress and/or preview event; return why a cancel was
        asked for, or ``None`` (what the worker checks every iteration)."""

    @abstractmethod
    def finish(self, job_id: str, state: str, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None, now: float | None = None) -> Job | None:
        """End a job: ``succeeded``/``cancelled`` with its response body, or ``failed`` with an
        error body. Returns the job as it is then (``None`` for an unknown id); a job that had
        already ended stays as it ended.

        Raises:
            ValueError: ``state`` is not a final state.
        """

    @abstractmethod
    def cancel(self, job_id: str, reason: str = BY_CLIENT, *, now: float | None = None) -> Job | None:
        """Ask for a job to stop: a queued one ends ``cancelled`` at once, a running one when its
        worker next reports; a finished one is left as it is. Returns the job after, or ``None``."""

    @abstractmethod
    def renew(self, job_id: str, *, now: float | None = None) -> None:
        """Extend an unfinished job's lease by its ``lease_s`` from ``now`` (a client polled it)."""

    @abstractmethod
    def expire_leases(self, *, now: float | None = None) -> list[str]:
        """Cancel (:data:`LEASE_EXPIRED`) every unfinished job whose lease ran out; return their ids."""

    @abstractmethod
    def fail_worker(self, worker: str, message: str, *, now: float | None = None) -> list[str]:
        """End ``failed`` (:func:`worker_died` with ``message``) every unfinished job ``worker``
        held (it died, or restarted); return their ids."""

    @abstractmethod
    def beat(self, worker: str, *, now: float | None = None) -> None:
        """Record that ``worker`` is alive (its watchdog calls this every second)."""

    @abstractmethod
    def fail_silent(self, after_s: float, *, now: float | None = None) -> list[str]:
        """:meth:`fail_worker` every worker whose last :meth:`beat` is more than ``after_s``
        seconds old (a replica that was scaled down or lost never restarts under its name), and
        forget it; return the failed jobs' ids."""

    @abstractmethod
    def purge(self, *, now: float | None = None) -> int:
        """Delete the jobs that ended more than their ``ttl_s`` ago; return how many."""

    def check_final(self, state: str) -> None:
        """Raise ``ValueError`` unless ``state`` is one of :data:`FINAL` (for :meth:`finish`)."""
        if state not in FINAL:
            raise ValueError(f"state must be one of {FINAL}, got {state!r}")

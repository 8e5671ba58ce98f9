"""The job desk of one worker: every request runs as a job, through one queue per device.

A plain request (synchronous or streamed) is a job its client waits for on the connection; a
submitted one (``job.action = "submit"``) answers 202 at once and runs in the background, and
any worker of the machine answers its status, result and cancel calls from the shared store
(:mod:`nst_jobs`). TorchServe-free: the handler passes in how to run one request.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from nst_jobs.runner import Runner
from nst_jobs.sqlite_store import SqliteJobStore
from nst_jobs.store import CANCELLED, FAILED, LEASE_EXPIRED, RUNNING, SUCCEEDED, JobStore, machine_of

from .errors import RequestError, internal_error
from .jobs import CANCEL, RESULT, JobCall, JobSettings, failure, job_body, not_finished, queue_full, unknown_job

logger = logging.getLogger(__name__)

#: How much the latest run counts in the measured speed (:meth:`JobDesk.measured`).
SPEED_WEIGHT = 0.5

Answer = dict[str, Any] | RequestError
#: Runs one request as the job whose id it is given, and returns its answer.
Run = Callable[[str], Answer]


def open_store(settings: JobSettings, directory: Path) -> JobStore:
    """The job store ``settings`` choose: Redis at ``redis_url``, else SQLite in ``directory``.

    Raises:
        redis.ConnectionError: the Redis server does not answer.
    """
    if settings.redis_url:
        from nst_jobs.redis_store import RedisJobStore  # only a Redis deployment needs the client

        return RedisJobStore(settings.redis_url, prefix=settings.redis_prefix, ttl_s=settings.result_ttl_s)
    return SqliteJobStore(directory / "jobs.sqlite3", ttl_s=settings.result_ttl_s)


class JobDesk:
    """Jobs for one worker process.

    Args:
        settings: ``handler.jobs`` of ``model-config.yaml``.
        worker: this worker's name, ``"<host>:<slot>"``, the same after a restart (its jobs
            left unfinished by a previous process are reported ``failed`` here).
        device: the device jobs run on (one optimization at a time per device, machine-wide).
        on_state: called (for metrics) as a job is ``queued`` by a submit, starts ``running``,
            and ends: ``succeeded``, ``failed``, ``cancelled`` or ``lease_expired``.
        on_wait: called with the seconds a job waited in the queue before it ran.
    """

    def __init__(self, settings: JobSettings, worker: str, device: str, *,
                 on_state: Callable[[str], None] = lambda state: None,
                 on_wait: Callable[[float], None] = lambda seconds: None) -> None:
        self.settings, self.worker = settings, worker
        directory = Path(settings.dir or Path(tempfile.gettempdir()) / "nst-jobs")
        self.store = open_store(settings, directory)
        self.store.beat(worker)
        lost = self.store.fail_worker(worker, "the worker running this job stopped (it died or restarted) before "
                                      "the job ended")
        if lost:
            logger.warning("jobs %s of this worker's previous process reported failed", ", ".join(lost))
        self.runner = Runner(self.store, directory, device, worker=worker,
                             heartbeat_timeout_s=settings.heartbeat_timeout_s)
        self.on_state, self.on_wait = on_state, on_wait
        self.seconds_per_work: float | None = None
        """This worker's measured optimization speed, seconds per pixel-iteration (:meth:`measured`)."""

    def estimate_s(self, work: float) -> float | None:
        """Seconds a run of ``work`` pixel-iterations (:attr:`nst.plan.Plan.work`) is expected
        to take at this worker's measured speed; ``None`` before it has measured one."""
        return None if self.seconds_per_work is None else work * self.seconds_per_work

    def measured(self, seconds: float, work: float) -> None:
        """Learn this worker's speed from a run: ``work`` pixel-iterations in ``seconds`` of
        optimization (a running mean that weighs the latest run by :data:`SPEED_WEIGHT`)."""
        if work <= 0 or seconds <= 0:
            return
        sample = seconds / work
        old = self.seconds_per_work
        self.seconds_per_work = sample if old is None else (1 - SPEED_WEIGHT) * old + SPEED_WEIGHT * sample

    def wait(self, run: Run, work: float) -> Answer:
        """Run a plain request of ``work`` pixel-iterations as a job (no lease: its client waits
        on the connection) after the jobs queued before it, and return its answer."""
        job = self.store.create(self.worker, estimate_s=self.estimate_s(work))
        return self.runner.submit(partial(self._execute, job.id, run)).result() or internal_error(None)

    def submit(self, run: Run, work: float) -> Answer:
        """Queue a job of ``work`` pixel-iterations: ``{"job": JobStatus}`` (answer it 202), or
        503 ``queue_full``."""
        if self.store.active(machine_of(self.worker)) >= self.settings.max_queued_jobs:
            return queue_full(self.settings.max_queued_jobs, self.settings.retry_after_s)
        job = self.store.create(self.worker, lease_s=self.settings.lease_s, estimate_s=self.estimate_s(work))
        self.runner.submit(partial(self._execute, job.id, run))
        self.on_state("queued")
        return job_body(job, self.store.ahead(job.id), time.time())

    def call(self, call: JobCall) -> Answer:
        """A status, result or cancel call; each renews the job's lease."""
        assert call.id is not None
        job = self.store.cancel(call.id) if call.action == CANCEL else self.store.get(call.id)
        if job is None:
            return unknown_job(call.id)
        self.store.renew(call.id)
        if call.action == RESULT:
            return failure(job) or not_finished(job) or job.result or internal_error(None)
        return job_body(job, self.store.ahead(call.id), time.time())

    def report(self, job_id: str, progress: dict[str, Any], preview: dict[str, Any] | None) -> bool:
        """Record a running job's progress (and preview); whether it has been asked to stop."""
        return self.store.report(job_id, progress=progress, preview=preview) is not None

    def _execute(self, job_id: str, run: Run) -> Answer | None:
        """Run job ``job_id`` (on the runner's thread) and record how it ended; ``None`` when it
        was cancelled before it started."""
        job = self.store.start(job_id)
        if job is None:  # cancelled while queued
            cancelled = self.store.get(job_id)
            self.on_state(LEASE_EXPIRED if cancelled is not None and cancelled.cancel == LEASE_EXPIRED else CANCELLED)
            return None
        self.on_state(RUNNING)
        self.on_wait((job.started_s or job.created_s) - job.created_s)
        answer = run(job_id)
        if isinstance(answer, RequestError):
            ended = self.store.finish(job_id, FAILED, error={"status": answer.status, **answer.body()})
        else:
            ended = self.store.finish(job_id, CANCELLED if answer.get("stopped") == "cancelled" else SUCCEEDED,
                                      result=answer)
        assert ended is not None
        self.on_state(LEASE_EXPIRED if ended.state == CANCELLED and ended.cancel == LEASE_EXPIRED else ended.state)
        return answer

    def close(self) -> None:
        """Let the queued jobs finish, then close the store."""
        self.runner.close()
        self.store.close()

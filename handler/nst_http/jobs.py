"""Jobs through ``POST /predictions/nst``: the request's ``job`` field and the job answers.

``{"job": {"action": "submit"}}`` beside a stylize body accepts it as a job (202, the job's
status); ``{"job": {"action": "status" | "result" | "cancel", "id": ...}}`` alone asks about one.
``docs/api.md`` ("Jobs") and ``docs/openapi.yaml`` document the shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints

from nst_jobs.store import CANCELLED, FAILED, QUEUED, RUNNING, Job

from .errors import RequestError, bad

SUBMIT, STATUS, RESULT, CANCEL = "submit", "status", "result", "cancel"
ACTIONS = (SUBMIT, STATUS, RESULT, CANCEL)


@dataclass(frozen=True)
class JobSettings:
    """How the server keeps jobs; set under ``handler.jobs`` in ``model-config.yaml``, each one
    overridable by an environment variable ``NST_JOBS_<NAME>`` (:meth:`from_config`)."""

    dir: str | None = None
    """Folder of the SQLite job store (``jobs.sqlite3``) and of the device lock files, shared by
    the machine's workers; ``None``: ``nst-jobs`` in the system's temporary folder."""
    redis_url: str | None = None
    """A Redis server that holds the jobs instead of SQLite, for replicas on many machines
    (KServe), e.g. ``redis://nst-redis:6379/0``; ``None``: the SQLite store in ``dir``."""
    redis_prefix: str = "nst:jobs:"
    """The start of every Redis key of this model's jobs."""
    lease_s: float = 10.0
    """Seconds a submitted job lives without a status or result call; then it is cancelled."""
    result_ttl_s: float = 3600.0
    """Seconds a finished job's result is kept."""
    max_queued_jobs: int = 8
    """Most jobs queued or running on the machine; a submit past it gets 503 ``queue_full``."""
    retry_after_s: int = 10
    """The ``Retry-After`` of a 503 ``queue_full``, seconds."""
    heartbeat_timeout_s: float = 30.0
    """Seconds without a worker's heartbeat (one a second) after which its unfinished jobs are
    reported failed (a replica scaled down or lost)."""

    @classmethod
    def from_config(cls, config: Mapping[str, Any], environ: Mapping[str, str]) -> JobSettings:
        """The settings of ``handler.jobs`` (``config``), each replaced by ``NST_JOBS_<NAME>``
        from ``environ`` where that is set (an empty value sets ``None`` where ``None`` is
        allowed), so that a deployment sets them without rebuilding the archive.

        Raises:
            ValueError: an unknown name in ``config``, or a value of the wrong type.
        """
        hints = get_type_hints(cls)
        unknown = sorted(set(config) - set(hints))
        if unknown:
            raise ValueError(f"handler.jobs.{unknown[0]} is not a jobs setting; known: {', '.join(hints)}")
        values = dict(config)
        for name, hint in hints.items():
            raw = environ.get(f"NST_JOBS_{name.upper()}")
            if raw is not None:
                convert = int if hint is int else float if hint is float else str
                try:
                    values[name] = None if raw == "" and hint == str | None else convert(raw)
                except ValueError:
                    raise ValueError(f"NST_JOBS_{name.upper()}={raw!r} is not a valid {convert.__name__}") from None
        return cls(**values)


@dataclass(frozen=True)
class JobCall:
    """What the ``job`` field asks: an action, and the job's id (``None`` for a submit)."""

    action: str
    id: str | None = None


def parse_job(body: dict[str, Any]) -> JobCall | None:
    """The body's ``job`` field, checked (``None`` without one). A status, result or cancel
    body holds nothing else.

    Raises:
        RequestError: 400 naming ``job``, ``job.action``, ``job.id`` or a field that a job
            call does not take.
    """
    if "job" not in body:
        return None
    job = body["job"]
    if not isinstance(job, dict):
        raise bad("invalid_type", f"job must be a JSON object, got {type(job).__name__}", "job")
    unknown = sorted(set(job) - {"action", "id"})
    if unknown:
        raise bad("unknown_field", f"unknown field job.{unknown[0]}; known: action, id", f"job.{unknown[0]}")
    action = job.get("action")
    if action not in ACTIONS:
        raise bad("invalid_choice", f"job.action must be one of {list(ACTIONS)}, got {action!r}", "job.action")
    if action == SUBMIT:
        if "id" in job:
            raise bad("invalid_choice", "job.id is chosen by the server: a submit has none", "job.id")
        return JobCall(SUBMIT)
    if not isinstance(job.get("id"), str) or not job["id"]:
        raise bad("missing_field", f"job.id (a job id string) is required for job.action = {action!r}", "job.id")
    extra = sorted(set(body) - {"job"})
    if extra:
        raise bad("unknown_field", f"a job {action} takes only the job field; got {extra[0]}", extra[0])
    return JobCall(action, job["id"])


def unknown_job(job_id: str) -> RequestError:
    """404: no such job (never accepted, or its result expired)."""
    return RequestError(404, "unknown_job", f"no job {job_id!r}: unknown, or its result has expired", "job.id")


def queue_full(limit: int, retry_after_s: int) -> RequestError:
    """503: ``limit`` jobs are already queued or running; ``Retry-After: retry_after_s``."""
    return RequestError(503, "queue_full", f"{limit} jobs are queued or running, the most this server takes; "
                        f"retry after {retry_after_s} s", headers={"Retry-After": str(retry_after_s)})


def not_finished(job: Job) -> RequestError | None:
    """409 when ``job`` has no result to fetch yet (or never will: cancelled while queued);
    ``None`` when it has one (or an error to answer with instead)."""
    if job.state == CANCELLED and job.result is None:
        return RequestError(409, "job_cancelled", f"job {job.id} was cancelled before it started: it has no image",
                            "job.id")
    if not job.done:
        return RequestError(409, "job_not_finished", f"job {job.id} is {job.state}; poll its status, then fetch "
                            "the result once it is done", "job.id")
    return None


def failure(job: Job) -> RequestError | None:
    """The error a failed job answers its result call with (its own status and body)."""
    if job.state != FAILED or job.error is None:
        return None
    error = job.error["error"]
    return RequestError(int(job.error.get("status", 500)), error["code"], error["message"], error.get("field"))


def remaining_s(job: Job, now: float) -> float | None:
    """Seconds until ``job`` is expected to end: a running job's latest progress estimate (or
    its acceptance estimate less the time it has run), a queued job's estimate; ``None``
    where unknown."""
    if job.done:
        return 0.0
    progress_eta = (job.progress or {}).get("eta_s")
    if job.state == RUNNING and progress_eta is not None:
        return float(progress_eta)
    if job.estimate_s is None:
        return None
    return max(job.estimate_s - (now - job.started_s if job.started_s is not None else 0.0), 0.0)


def job_body(job: Job, ahead: list[Job], now: float) -> dict[str, Any]:
    """``{"job": JobStatus}``: the job's state, its place in the queue (``ahead``: the jobs
    before it on its machine) while queued, its latest progress and preview, its error once
    failed, and ``eta_s``: for a running job, :func:`remaining_s`; for a queued one, what the
    jobs ahead have left plus its own estimate (``None`` where any is unknown)."""
    progress = job.progress or {}
    preview = job.preview
    error = None if job.error is None else job.error["error"]
    eta: float | None = progress.get("eta_s")
    if job.state == RUNNING:
        eta = remaining_s(job, now)
    elif job.state == QUEUED:
        parts = [remaining_s(j, now) for j in [*ahead, job]]
        eta = None if None in parts else round(sum(p for p in parts if p is not None), 3)
    return {"job": {
        "id": job.id, "state": job.state, "position": len(ahead) if job.state == QUEUED else None,
        "iteration": progress.get("iteration"), "of": progress.get("of"), "losses": progress.get("losses"),
        "eta_s": eta,
        "preview": None if preview is None else {k: preview[k] for k in ("width", "height", "image")},
        "cancel_requested": job.cancel is not None, "lease_s": job.lease_s, "created_s": job.created_s,
        "started_s": job.started_s, "finished_s": job.finished_s, "error": error,
    }}

"""Jobs: a stylization submitted now and followed, cancelled or fetched later.

A submit is the stylize body plus ``job = {"action": "submit"}`` (``_request``); the server
answers 202 at once with the job's status. Calls about the job go to the same route with
exactly ``{"job": {"action": "status" | "result" | "cancel", "id": ...}}`` (``docs/api.md``).

What both clients share is here: :class:`JobStatus` and the parsing of the answers, and
:class:`Watch`, the polling of ``wait()``/``events()`` without I/O. :class:`Job` (blocking) and
:class:`AsyncJob` (asyncio) only send each call through their client's ``_send`` and sleep.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Dict, Iterator, Optional, Protocol, Tuple

from ._constants import DEFAULT_JOB_POLL_S
from ._exceptions import APIResponseValidationError, APITimeoutError
from ._request import Request
from ._results import StylizeResult, json_object, stylize_result
from ._results import optional_field as _opt
from ._stream import PreviewEvent, parse_event

__all__ = ["JobStatus", "Job", "AsyncJob", "Watch", "JOB_STATES", "DONE_STATES", "job_status"]

#: Every ``state`` of a job, in the order a job goes through them.
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
#: The states a job does not leave.
DONE_STATES = frozenset({"succeeded", "failed", "cancelled"})


def _sleep(seconds: float) -> None:
    """Indirection so tests can observe poll delays without waiting."""
    time.sleep(seconds)


async def _asleep(seconds: float) -> None:
    """The same for :class:`AsyncJob`."""
    await asyncio.sleep(seconds)


_monotonic = time.monotonic  # indirection so tests can move the clock with their sleeps


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands (the server's ``JobStatus`` object).

    Attributes:
        id: The job's id.
        state: ``"queued"``, ``"running"``, ``"succeeded"``, ``"failed"`` or ``"cancelled"``.
        position: Jobs ahead of it while queued, else ``None``.
        iteration: The optimiser iteration reached (``None`` before it starts).
        of: Iterations in all (``None`` before it starts).
        losses: The latest losses, ``{"content", "style", "tv", "total"}``, or ``None``.
        eta_s: Estimated seconds until it finishes, or ``None``.
        preview: The latest preview (a downscaled JPEG, as a stream's ``PreviewEvent``; its
            ``iteration`` is this status's), or ``None``.
        cancel_requested: A cancel was asked for; a running job ends ``cancelled`` within one
            iteration.
        lease_s: Seconds the job lives without a status or result call before the server
            cancels it, or ``None`` (no lease).
        created_s: When it was submitted (Unix seconds).
        started_s: When it started running (Unix seconds), or ``None``.
        finished_s: When it ended (Unix seconds), or ``None``.
        error: Why it failed, ``{"code", "message", "field"}``, or ``None``.
        raw: The whole decoded object, including keys this SDK does not know.
    """

    id: str
    state: str
    position: Optional[int] = None
    iteration: Optional[int] = None
    of: Optional[int] = None
    losses: Optional[Dict[str, float]] = None
    eta_s: Optional[float] = None
    preview: Optional[PreviewEvent] = field(default=None, repr=False)
    cancel_requested: bool = False
    lease_s: Optional[float] = None
    created_s: Optional[float] = None
    started_s: Optional[float] = None
    finished_s: Optional[float] = None
    error: Optional[Dict[str, Any]] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        """Whether the job has ended (succeeded, failed or cancelled): its status no longer changes."""
        return self.state in DONE_STATES

    @classmethod
    def from_dict(cls, obj: Dict[str, Any]) -> JobStatus:
        """Build from the server's ``JobStatus`` object (unknown keys are kept in ``raw`` only).

        Raises:
            ValueError: ``id`` or ``state`` is not a non-empty string, a field has the wrong
                type, or ``preview`` is not a decodable ``{"width", "height", "image"}``.
        """
        job_id, state = obj.get("id"), obj.get("state")
        if not isinstance(job_id, str) or not job_id or not isinstance(state, str) or not state:
            raise ValueError('a job status needs "id" and "state" strings')
        number = (int, float)
        iteration = _opt(obj, "iteration", int)
        preview = _opt(obj, "preview", dict)
        if preview is not None:  # the same fields as a stream's preview event
            preview = parse_event({**preview, "event": "preview", "iteration": iteration or 0})
        losses = _opt(obj, "losses", dict)
        error = _opt(obj, "error", dict)
        return cls(
            id=job_id, state=state, position=_opt(obj, "position", int), iteration=iteration,
            of=_opt(obj, "of", int), losses=None if losses is None else dict(losses),
            eta_s=_opt(obj, "eta_s", *number), preview=preview,
            cancel_requested=bool(_opt(obj, "cancel_requested", bool)), lease_s=_opt(obj, "lease_s", *number),
            created_s=_opt(obj, "created_s", *number), started_s=_opt(obj, "started_s", *number),
            finished_s=_opt(obj, "finished_s", *number), error=None if error is None else dict(error), raw=obj)

    def to_dict(self) -> Dict[str, Any]:
        """The status as plain JSON data: ``raw`` with the preview's image left out (its size kept)."""
        doc = dict(self.raw)
        if self.preview is not None:
            doc["preview"] = {"width": self.preview.width, "height": self.preview.height}
        return doc


def job_status(body: Dict[str, Any], response: Any = None) -> JobStatus:
    """The :class:`JobStatus` of a submit, status or cancel answer, ``{"job": JobStatus}``.

    Raises:
        APIResponseValidationError: The body has no well-formed ``job`` object.
    """
    job = body.get("job")
    if not isinstance(job, dict):
        raise APIResponseValidationError('Expected {"job": <job status>}', response=response, body=body)
    try:
        return JobStatus.from_dict(job)
    except ValueError as exc:
        raise APIResponseValidationError(f"Malformed job status: {exc}", response=response, body=body) from exc


def _body(response: Any) -> Tuple[Dict[str, Any], Any]:
    """The JSON object of a 2xx answer (either transport's response), and the response."""
    return json_object(response.content, response.headers, response), response


class Watch:
    """The polling of ``wait()`` and ``events()``, without I/O: after each status, whether it
    changed and how long to sleep before the next one (or that the job is done, or the time is up).
    """

    def __init__(self, job_id: str, poll_s: float, timeout: Optional[float] = None) -> None:
        """Raises ``ValueError`` unless ``poll_s > 0`` and ``timeout`` is ``None`` or ``>= 0``."""
        if not poll_s > 0:
            raise ValueError(f"poll_s must be positive (seconds), got {poll_s!r}")
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout!r}")
        self.job_id = job_id
        self.poll_s = float(poll_s)
        self.timeout = timeout
        self.deadline = None if timeout is None else _monotonic() + timeout
        self._last: Optional[Tuple[Any, ...]] = None

    def changed(self, status: JobStatus) -> bool:
        """Whether ``status`` differs from the previous one in state, place in the queue,
        iteration, preview, cancel request or error (``eta_s`` and ``lease_s`` alone do not count)."""
        key = (status.state, status.position, status.iteration, status.of, status.cancel_requested,
               status.raw.get("preview"), status.raw.get("error"))
        if key == self._last:
            return False
        self._last = key
        return True

    def delay(self, status: JobStatus) -> Optional[float]:
        """Seconds to wait before the next status call, or ``None`` when the job is done.

        Raises:
            APITimeoutError: ``timeout`` seconds have passed and the job is not done (it is
                not cancelled: it goes on, and can be waited for again).
        """
        if status.done:
            return None
        if self.deadline is None:
            return self.poll_s
        remaining = self.deadline - _monotonic()
        if remaining <= 0:
            raise APITimeoutError(f"Job {self.job_id} did not finish within {self.timeout:g} s (it is "
                                  f"{status.state}; it was not cancelled)")
        return min(self.poll_s, remaining)


class _Client(Protocol):
    def _job_request(self, action: str, job_id: str, *, timeout: Optional[float] = ...,
                     max_retries: Optional[int] = ...) -> Request: ...

    def _send(self, request: Request) -> Any: ...


class _AsyncClient(Protocol):
    def _job_request(self, action: str, job_id: str, *, timeout: Optional[float] = ...,
                     max_retries: Optional[int] = ...) -> Request: ...

    def _send(self, request: Request) -> Awaitable[Any]: ...


class _JobBase:
    """What :class:`Job` and :class:`AsyncJob` share: the id, the latest status seen."""

    def __init__(self, job_id: str, status: Optional[JobStatus] = None) -> None:
        if not isinstance(job_id, str) or not job_id:
            raise ValueError(f"job id must be a non-empty string, got {job_id!r}")
        self.id: str = job_id
        #: The latest status this object has seen (the submit's answer, then each call's), or ``None``.
        self.last_status: Optional[JobStatus] = status

    def _seen(self, status: JobStatus) -> JobStatus:
        self.last_status = status
        return status

    def __repr__(self) -> str:
        state = self.last_status.state if self.last_status is not None else "?"
        return f"{type(self).__name__}(id={self.id!r}, state={state!r})"


class Job(_JobBase):
    """A job on the server, from ``StyleTransferClient.submit()`` or ``.job(id)``.

    Each method is one call (with the client's retries and timeouts) but :meth:`wait` and
    :meth:`events`, which poll. A status or result call renews the job's lease: a job nobody
    asks about for ``lease_s`` seconds is cancelled by the server.
    """

    def __init__(self, client: _Client, job_id: str, status: Optional[JobStatus] = None) -> None:
        super().__init__(job_id, status)
        self._client = client

    def status(self) -> JobStatus:
        """The job's status (renews its lease).

        Raises:
            NotFoundError: No such job (``unknown_job``: never submitted, or expired).
            APIStatusError, APIConnectionError: As for any call.
        """
        return self._seen(job_status(*_body(self._client._send(self._client._job_request("status", self.id)))))

    def result(self) -> StylizeResult:
        """The finished job's image, as ``stylize`` returns it (``stopped == "cancelled"`` for a
        job cancelled while running: the image so far). Renews the lease.

        Raises:
            JobNotFinishedError: Still queued or running (``code == "job_not_finished"``), or
                cancelled before it started (``"job_cancelled"``).
            NotFoundError: No such job.
            APIStatusError: The job failed: its error (e.g. ``ServerError``, ``worker_died``).
        """
        return stylize_result(*_body(self._client._send(self._client._job_request("result", self.id))))

    def cancel(self, *, timeout: Optional[float] = None, max_retries: Optional[int] = None) -> JobStatus:
        """Cancel the job: a queued one is ``cancelled`` at once, a running one shows
        ``cancel_requested`` and ends ``cancelled`` within one iteration (its image so far is
        then the :meth:`result`).

        Args:
            timeout: Read timeout of this call (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Raises:
            NotFoundError: No such job.
        """
        request = self._client._job_request("cancel", self.id, timeout=timeout, max_retries=max_retries)
        return self._seen(job_status(*_body(self._client._send(request))))

    def wait(self, timeout: Optional[float] = None, *, poll_s: float = DEFAULT_JOB_POLL_S) -> StylizeResult:
        """Poll :meth:`status` every ``poll_s`` seconds (renewing the lease) until the job is
        done, then return its :meth:`result`.

        Args:
            timeout: Seconds to wait at most (``None``: no limit).
            poll_s: Seconds between two status calls.

        Raises:
            APITimeoutError: ``timeout`` passed first; the job is not cancelled.
            JobNotFinishedError: It was cancelled before it started (no image).
            APIStatusError: It failed (its error), or as :meth:`result`.
        """
        watch = Watch(self.id, poll_s, timeout)
        while True:
            delay = watch.delay(self.status())
            if delay is None:
                return self.result()
            _sleep(delay)

    def events(self, poll_s: float = DEFAULT_JOB_POLL_S) -> Iterator[JobStatus]:
        """Poll :meth:`status` every ``poll_s`` seconds; yield it each time it changes (see
        :meth:`Watch.changed`), the last one done."""
        watch = Watch(self.id, poll_s)
        while True:
            status = self.status()
            if watch.changed(status):
                yield status
            delay = watch.delay(status)
            if delay is None:
                return
            _sleep(delay)


class AsyncJob(_JobBase):
    """:class:`Job` for asyncio (``AsyncStyleTransferClient.submit()``/``.job(id)``): the same
    calls as coroutines; :meth:`events` is an async iterator."""

    def __init__(self, client: _AsyncClient, job_id: str, status: Optional[JobStatus] = None) -> None:
        super().__init__(job_id, status)
        self._client = client

    async def status(self) -> JobStatus:
        """:meth:`Job.status`."""
        return self._seen(job_status(*_body(await self._client._send(self._client._job_request("status", self.id)))))

    async def result(self) -> StylizeResult:
        """:meth:`Job.result`."""
        return stylize_result(*_body(await self._client._send(self._client._job_request("result", self.id))))

    async def cancel(self, *, timeout: Optional[float] = None, max_retries: Optional[int] = None) -> JobStatus:
        """:meth:`Job.cancel`."""
        request = self._client._job_request("cancel", self.id, timeout=timeout, max_retries=max_retries)
        return self._seen(job_status(*_body(await self._client._send(request))))

    async def wait(self, timeout: Optional[float] = None, *, poll_s: float = DEFAULT_JOB_POLL_S) -> StylizeResult:
        """:meth:`Job.wait`."""
        watch = Watch(self.id, poll_s, timeout)
        while True:
            delay = watch.delay(await self.status())
            if delay is None:
                return await self.result()
            await _asleep(delay)

    async def events(self, poll_s: float = DEFAULT_JOB_POLL_S) -> AsyncIterator[JobStatus]:
        """:meth:`Job.events` as an async iterator."""
        watch = Watch(self.id, poll_s)
        while True:
            status = await self.status()
            if watch.changed(status):
                yield status
            delay = watch.delay(status)
            if delay is None:
                return
            await _asleep(delay)

"""The retry policy, and the one retry loop both clients run.

Which failures are sent again, and after how long: connection failures and HTTP
429/502/503/504 (but not TorchServe's 503 ``Prediction failed``), up to ``max_retries`` times,
after ``Retry-After`` or a capped exponential backoff with jitter; and one re-read of the key file
after an authentication error (:class:`Attempts`).

The loop itself is :func:`attempts`, a generator that does no I/O: it yields the headers of each
attempt and, between attempts, the seconds to wait; the client sends it back each attempt's
:class:`Outcome`. :func:`run` (blocking) and :func:`arun` (asyncio) drive it, so a client supplies
only the two things that differ: how to send one attempt, and how to sleep.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Generator, Mapping, Optional, Union

from ._auth import Credentials
from ._constants import (
    INITIAL_RETRY_DELAY,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    NON_RETRYABLE_TORCHSERVE_TYPES,
    RETRY_JITTER,
    RETRYABLE_STATUS_CODES,
    RETRYABLE_TORCHSERVE_MESSAGES,
)
from ._exceptions import APIConnectionError, APIStatusError, AuthenticationError, Failure, NSTError, transport_error
from ._request import Request

__all__ = ["Attempts", "Outcome", "RETRYABLE_FAILURES", "attempts", "run", "arun", "parse_retry_after",
           "retry_delay", "retryable"]

#: Transport failures after which the request is sent again (within ``max_retries``). A read
#: timeout is not: the server may still be working on the request.
RETRYABLE_FAILURES = frozenset({Failure.CONNECT_TIMEOUT, Failure.CONNECT})


def parse_retry_after(headers: Optional[Mapping[str, str]]) -> Optional[float]:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date, may be negative), else ``None``."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


def retryable(error: NSTError) -> bool:
    """Whether an HTTP error answer may succeed when sent again (see the retry constants)."""
    if getattr(error, "message", None) in RETRYABLE_TORCHSERVE_MESSAGES:
        return True
    return (getattr(error, "status_code", None) in RETRYABLE_STATUS_CODES
            and getattr(error, "code", None) not in NON_RETRYABLE_TORCHSERVE_TYPES)


def retry_delay(attempt: int, headers: Optional[Mapping[str, str]] = None) -> float:
    """Seconds to wait before retry number ``attempt + 1``: ``Retry-After`` when it is between
    0 and ``MAX_RETRY_AFTER``, else ``INITIAL_RETRY_DELAY * 2**attempt`` capped at
    ``MAX_RETRY_DELAY``, reduced by up to ``RETRY_JITTER`` at random."""
    retry_after = parse_retry_after(headers)
    if retry_after is not None and 0 <= retry_after <= MAX_RETRY_AFTER:
        return retry_after
    delay = min(INITIAL_RETRY_DELAY * (2.0 ** attempt), MAX_RETRY_DELAY)
    return delay * (1.0 - RETRY_JITTER * random.random())


class Attempts:
    """The retry policy of one call. After each failed attempt :func:`attempts` asks it what to
    do: it returns the seconds to wait before sending again, or raises the error.
    """

    def __init__(self, max_retries: int, credentials: Credentials) -> None:
        self.max_retries = max_retries
        self.credentials = credentials
        self.retries = 0  # retries made so far (a key re-read does not count)
        self._may_reread = credentials.key_file is not None

    def after_status(self, error: APIStatusError) -> float:
        """After an HTTP error answer.

        An :class:`AuthenticationError` with a token read from a key file re-reads the file
        once; if the key changed, the request is sent again at once (``0.0``), not counted as a
        retry. Otherwise only :func:`retryable` answers are retried, within ``max_retries``.

        Returns:
            Seconds to wait before the next attempt (``0.0``: at once).

        Raises:
            APIStatusError: ``error``, when the call must fail.
        """
        if isinstance(error, AuthenticationError) and self._may_reread:
            self._may_reread = False
            if self.credentials.reread():
                return 0.0
        if not retryable(error):
            raise error
        return self._next(error, error.response.headers if error.response is not None else None, None)

    def after_failure(self, kind: Failure, error: APIConnectionError, cause: BaseException) -> float:
        """After a transport failure (``error`` built by :func:`transport_error`).

        Returns:
            Seconds to wait before the next attempt.

        Raises:
            APIConnectionError: ``error`` (chained to ``cause``) when the failure is not
                retryable or the retries are used up.
        """
        if kind not in RETRYABLE_FAILURES:
            raise error from cause
        return self._next(error, None, cause)

    def _next(self, error: NSTError, headers: Optional[Mapping[str, str]], cause: Optional[BaseException]) -> float:
        if self.retries >= self.max_retries:
            raise error from cause
        delay = retry_delay(self.retries, headers)
        self.retries += 1
        return delay


@dataclass(frozen=True)
class Outcome:
    """What one attempt got, as the client reports it: exactly one of an answer below 400
    (``response``), an HTTP error answer (``error``, its body read), or no answer (``failure``).

    Attributes:
        response: The transport's response below 400: the call's result.
        error: The error of a 4xx/5xx answer (:func:`~nst_client._exceptions.status_error`).
        failure: How the transport failed, when no answer came.
        detail: The transport's reason for ``failure``, shown in the error message.
        cause: The transport's exception, chained to the error raised.
    """

    response: Any = None
    error: Optional[APIStatusError] = None
    failure: Optional[Failure] = None
    detail: Any = None
    cause: Optional[BaseException] = None


#: A step of :func:`attempts`: send an attempt with these headers, or wait this many seconds.
Step = Union[Dict[str, str], float]
Loop = Generator[Step, Optional[Outcome], Any]


def attempts(request: Request, max_retries: int, connect_timeout: float) -> Loop:
    """The retry loop of one call, without I/O.

    Yields the headers of each attempt, to which the client answers with the attempt's
    :class:`Outcome` (``loop.send(outcome)``), and between attempts the seconds to wait (answer
    ``None``). Returns the first response below 400.

    Args:
        request: The call.
        max_retries: Retries after the first attempt.
        connect_timeout: Seconds, for the connect-timeout message.

    Raises:
        APIStatusError: The answer's error, when it is not retried or the retries are used up.
        APIConnectionError: The same for a transport failure (``APITimeoutError`` for timeouts).
    """
    policy = Attempts(max_retries, request.credentials)
    while True:
        outcome = yield request.headers()
        assert outcome is not None, "send each attempt's Outcome"
        if outcome.failure is not None:
            assert outcome.cause is not None
            error = transport_error(outcome.failure, request.url, outcome.detail, connect_timeout=connect_timeout,
                                    read_timeout=request.read_timeout)
            delay = policy.after_failure(outcome.failure, error, outcome.cause)
        elif outcome.error is not None:
            delay = policy.after_status(outcome.error)
        else:
            return outcome.response
        if delay > 0:
            yield float(delay)


def run(loop: Loop, send: Callable[[Dict[str, str]], Outcome], sleep: Callable[[float], None]) -> Any:
    """Drive :func:`attempts` with blocking I/O.

    Args:
        loop: The call's :func:`attempts`.
        send: Sends one attempt with the given headers and reports its :class:`Outcome`.
        sleep: Waits the given seconds.

    Returns:
        The first response below 400.
    """
    step = next(loop)
    while True:
        try:
            if isinstance(step, float):
                sleep(step)
                step = loop.send(None)
            else:
                step = loop.send(send(step))
        except StopIteration as done:
            return done.value


async def arun(loop: Loop, send: Callable[[Dict[str, str]], Awaitable[Outcome]],
               sleep: Callable[[float], Awaitable[None]]) -> Any:
    """:func:`run` for asyncio: ``send`` and ``sleep`` are awaited."""
    step = next(loop)
    while True:
        try:
            if isinstance(step, float):
                await sleep(step)
                step = loop.send(None)
            else:
                step = loop.send(await send(step))
        except StopIteration as done:
            return done.value

"""The SDK's error tree.

::

    NSTError
    ├── KeyFileError                  the TorchServe key file exists but is unusable
    ├── MissingDependencyError        an optional extra is not installed (also an ImportError)
    ├── APIResponseValidationError    a 2xx answer that does not follow the contract
    ├── APIConnectionError            no HTTP answer (refused, reset, DNS, ...)
    │   └── APITimeoutError           connect or read timeout
    └── APIStatusError                any HTTP 4xx/5xx answer
        ├── BadRequestError           400, 422
        ├── AuthenticationError       401, 403, and TorchServe's 400 InvalidKeyException
        ├── NotFoundError             404 (a job: ``unknown_job``, an unknown or expired id)
        ├── JobNotFinishedError       409 ``job_not_finished``/``job_cancelled``: a job without a result
        ├── PayloadTooLargeError      413
        ├── RateLimitError            429
        └── ServerError               >= 500
            └── ServiceUnavailableError   503

Which answer maps to which class is decided here too, once, for both clients
(:func:`status_error`, :func:`stream_error`, :func:`transport_error`). ``response`` attributes
hold the HTTP library's response: a ``requests.Response`` from ``StyleTransferClient``, an
``httpx.Response`` from ``AsyncStyleTransferClient``.
"""

from __future__ import annotations

import enum
import json
from typing import Any, Mapping, Optional, Type

from ._constants import MAX_ERROR_TEXT, TORCHSERVE_INVALID_KEY_TYPE

__all__ = [
    "NSTError",
    "KeyFileError",
    "MissingDependencyError",
    "APIResponseValidationError",
    "APIConnectionError",
    "APITimeoutError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "NotFoundError",
    "JobNotFinishedError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
]


class NSTError(Exception):
    """Base class of every error raised by ``nst_client``."""


class KeyFileError(NSTError):
    """The TorchServe key file could not be parsed or lacks the key needed (inference or management)."""


class MissingDependencyError(NSTError, ImportError):
    """An optional dependency is missing; the message names the ``pip install`` that adds it."""


class APIResponseValidationError(NSTError):
    """The server answered 2xx but the body does not follow the contract.

    Attributes:
        response: The ``requests.Response``/``httpx.Response`` (``None`` when there was none to attach).
        body: The decoded JSON body, or the raw text when it was not JSON.
    """

    def __init__(self, message: str, *, response: Any = None,
                 body: Any = None) -> None:
        super().__init__(message)
        self.response = response
        self.body = body


class APIConnectionError(NSTError):
    """No HTTP response was received (connection refused, reset, DNS failure, ...)."""

    def __init__(self, message: str = "Connection error.", *, url: Optional[str] = None) -> None:
        super().__init__(message)
        self.url = url


class APITimeoutError(APIConnectionError):
    """The connect or read timeout expired before the server answered."""


class APIStatusError(NSTError):
    """The server answered with an HTTP 4xx/5xx status.

    Attributes:
        status_code: HTTP status code.
        message: Human-readable message from the server (or a fallback).
        code: Machine-readable code: the handler's ``error.code`` or TorchServe's ``type``
            (e.g. ``"ModelNotFoundException"``); ``None`` when the body had neither.
        field: JSON path of the offending request field, when the server named one.
        request_id: Server-side request id, when present.
        body: The decoded JSON body, or the (truncated) text when it was not JSON.
        response: The ``requests.Response``/``httpx.Response`` (``None`` only when constructed by hand).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: Optional[str] = None,
        field: Optional[str] = None,
        request_id: Optional[str] = None,
        body: Any = None,
        response: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.field = field
        self.request_id = request_id
        self.body = body
        self.response = response

    def __str__(self) -> str:
        head = f"HTTP {self.status_code}"
        if self.code:
            head += f" {self.code}"
        if self.field:
            head += f" (field {self.field})"
        text = f"{head}: {self.message}"
        if self.request_id:
            text += f" [request_id {self.request_id}]"
        return text


class BadRequestError(APIStatusError):
    """HTTP 400 or 422: the request was rejected as invalid (see ``field``)."""


class AuthenticationError(APIStatusError):
    """HTTP 401/403, or TorchServe's HTTP 400 ``InvalidKeyException`` (bad, expired or missing token)."""


class NotFoundError(APIStatusError):
    """HTTP 404, e.g. TorchServe's ``ModelNotFoundException`` for an unknown model name."""


class JobNotFinishedError(APIStatusError):
    """HTTP 409 to a job's ``result()``: the job has no image to give.

    ``code`` says why: ``"job_not_finished"`` (still queued or running: poll ``status()`` or
    ``wait()``) or ``"job_cancelled"`` (cancelled before it started, so it never made one).
    """


#: The ``error.code`` values of a 409 answer that mean :class:`JobNotFinishedError`.
JOB_NOT_FINISHED_CODES = frozenset({"job_not_finished", "job_cancelled"})


class PayloadTooLargeError(APIStatusError):
    """HTTP 413: the request body exceeds the server's size limit."""


class RateLimitError(APIStatusError):
    """HTTP 429: too many requests."""


class ServerError(APIStatusError):
    """HTTP status >= 500."""


class ServiceUnavailableError(ServerError):
    """HTTP 503: e.g. no worker available, or TorchServe's ``Prediction failed``."""


# -------------------------------------------- which answer or failure is which error


def _status_class(status_code: int, code: Optional[str]) -> Type[APIStatusError]:
    if code == TORCHSERVE_INVALID_KEY_TYPE or status_code in (401, 403):
        return AuthenticationError
    if status_code in (400, 422):
        return BadRequestError
    if status_code == 404:
        return NotFoundError
    if status_code == 409 and code in JOB_NOT_FINISHED_CODES:
        return JobNotFinishedError
    if status_code == 413:
        return PayloadTooLargeError
    if status_code == 429:
        return RateLimitError
    if status_code == 503:
        return ServiceUnavailableError
    if status_code >= 500:
        return ServerError
    return APIStatusError


def _opt_str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def error_from_body(status: int, body: Any, *, headers: Optional[Mapping[str, str]] = None,
                    response: Any = None, fallback: str = "HTTP error") -> APIStatusError:
    """The :class:`APIStatusError` subclass for ``status`` with the details found in ``body``.

    Understands the handler's ``{"error": {"code", "message", "field", "request_id"}}`` body
    and TorchServe's own ``{"code": <int>, "type": "...", "message": "..."}`` body; a string
    ``body`` (non-JSON answer) becomes the message.

    Args:
        status: HTTP status (or an ``error`` event's ``status``).
        body: Decoded JSON, or the text of a non-JSON answer.
        headers: Response headers (``X-Request-ID`` is used when the body names no request id).
        response: The ``requests``/``httpx`` response, attached to the error.
        fallback: The message when the body has none (e.g. the reason phrase).

    Returns:
        The error (not raised).
    """
    code: Optional[str] = None
    field: Optional[str] = None
    request_id: Optional[str] = None
    message: Optional[str] = (body.strip() or None) if isinstance(body, str) else None

    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):  # our handler
            code = _opt_str(err.get("code"))
            message = _opt_str(err.get("message"))
            field = _opt_str(err.get("field"))
            request_id = _opt_str(err.get("request_id"))
        elif isinstance(err, str):
            message = err
        else:  # TorchServe frontend: "code" is the HTTP status, "type" the exception name
            code = _opt_str(body.get("type"))
            message = _opt_str(body.get("message"))
        request_id = request_id or _opt_str(body.get("request_id"))
    if headers is not None:
        request_id = request_id or headers.get("X-Request-ID")
    cls = _status_class(status, code)
    return cls(message or fallback, status_code=status, code=code, field=field, request_id=request_id,
               body=body, response=response)


def status_error(status: int, headers: Mapping[str, str], content: bytes, reason: Optional[str],
                 response: Any = None) -> APIStatusError:
    """The error for an HTTP 4xx/5xx answer.

    Args:
        status: The HTTP status code.
        headers: Response headers (case-insensitive mapping).
        content: The whole response body.
        reason: The reason phrase (the message when the body has none).
        response: The transport's response object, attached as ``error.response``.

    Returns:
        The matching subclass (not raised); ``body`` is the decoded JSON, else the text cut to
        ``MAX_ERROR_TEXT`` characters.
    """
    try:
        body: Any = json.loads(content)
    except ValueError:
        body = content.decode("utf-8", errors="replace")[:MAX_ERROR_TEXT]
    return error_from_body(status, body, headers=headers, response=response, fallback=reason or "HTTP error")


def stream_error(event: Mapping[str, Any], response: Any = None) -> APIStatusError:
    """The error for an in-band ``error`` event.

    The event (``{"event": "error", "error": {"code", "message", "field"}, "status": int}``)
    arrives after a 200 header, so its ``status`` (500 when absent or below 400) picks the
    class exactly as an HTTP status would.
    """
    status = event.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or status < 400:
        status = 500
    return error_from_body(status, dict(event), response=response, fallback="error event in the stream")


class Failure(enum.Enum):
    """A transport failure, as each client classifies its HTTP library's exceptions."""

    CONNECT_TIMEOUT = "connect_timeout"  # no connection within connect_timeout (retried)
    CONNECT = "connect"  # refused, reset, DNS, closed before an answer (retried)
    READ_TIMEOUT = "read_timeout"  # no answer within the read timeout (never retried)
    OTHER = "other"  # anything else the library reports (never retried)

def transport_error(kind: Failure, url: str, detail: Any = None, *, connect_timeout: float = 0.0,
                    read_timeout: float = 0.0) -> APIConnectionError:
    """The error for a request that got no HTTP answer.

    Args:
        kind: What went wrong.
        url: The request URL.
        detail: The library's reason, shown in the message.
        connect_timeout: Seconds, for the connect-timeout message.
        read_timeout: Seconds, for the read-timeout message.

    Returns:
        :class:`APITimeoutError` for timeouts, else :class:`APIConnectionError` (not raised).
    """
    if kind is Failure.CONNECT_TIMEOUT:
        return APITimeoutError(f"Connecting to {url} timed out after {connect_timeout:g} s", url=url)
    if kind is Failure.READ_TIMEOUT:
        return APITimeoutError(f"No answer from {url} within {read_timeout:g} s", url=url)
    if kind is Failure.CONNECT:
        return APIConnectionError(f"Could not connect to {url}: {detail}", url=url)
    return APIConnectionError(f"Request to {url} failed: {detail}", url=url)


def stream_transport_error(stalled: bool, url: str, detail: Any = None) -> APIConnectionError:
    """The error for a stream that stalled (``APITimeoutError``) or broke off mid-body."""
    if stalled:
        return APITimeoutError(f"The stream from {url} stalled (no data within the read timeout)", url=url)
    return APIConnectionError(f"The stream from {url} broke off: {detail}", url=url)

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
        ├── NotFoundError             404
        ├── PayloadTooLargeError      413
        ├── RateLimitError            429
        └── ServerError               >= 500
            └── ServiceUnavailableError   503
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional, Type

from ._constants import MAX_ERROR_TEXT, TORCHSERVE_INVALID_KEY_TYPE

if TYPE_CHECKING:
    import requests

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
    "PayloadTooLargeError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
]


class NSTError(Exception):
    """Base class of every error raised by ``nst_client``."""


class KeyFileError(NSTError):
    """The TorchServe key file could not be parsed or has no inference key."""


class MissingDependencyError(NSTError, ImportError):
    """An optional dependency is missing; the message names the ``pip install`` that adds it."""


class APIResponseValidationError(NSTError):
    """The server answered 2xx but the body does not follow the contract.

    Attributes:
        response: The ``requests.Response`` (``None`` only when there was none to attach).
        body: The decoded JSON body, or the raw text when it was not JSON.
    """

    def __init__(self, message: str, *, response: Optional["requests.Response"] = None,
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
        response: The ``requests.Response`` (``None`` only when constructed by hand).
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
        response: Optional["requests.Response"] = None,
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


class PayloadTooLargeError(APIStatusError):
    """HTTP 413: the request body exceeds the server's size limit."""


class RateLimitError(APIStatusError):
    """HTTP 429: too many requests."""


class ServerError(APIStatusError):
    """HTTP status >= 500."""


class ServiceUnavailableError(ServerError):
    """HTTP 503: e.g. no worker available, or TorchServe's ``Prediction failed``."""


def _status_class(status_code: int, code: Optional[str]) -> Type[APIStatusError]:
    if code == TORCHSERVE_INVALID_KEY_TYPE or status_code in (401, 403):
        return AuthenticationError
    if status_code in (400, 422):
        return BadRequestError
    if status_code == 404:
        return NotFoundError
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


def _error_from_body(
    status: int, body: Any, *, response: Optional["requests.Response"], fallback: str
) -> APIStatusError:
    """The :class:`APIStatusError` subclass for ``status`` with the details found in ``body``.

    Understands both the handler's ``{"error": {"code", "message", "field"}}`` body and
    TorchServe's own ``{"code": <int>, "type": "...", "message": "..."}`` body; a string
    ``body`` (non-JSON answer) becomes the message. ``fallback`` is the message otherwise.
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

    if response is not None:
        request_id = request_id or response.headers.get("X-Request-ID")
    cls = _status_class(status, code)
    return cls(
        message or fallback,
        status_code=status,
        code=code,
        field=field,
        request_id=request_id,
        body=body,
        response=response,
    )


def make_status_error(response: "requests.Response") -> APIStatusError:
    """Build the matching :class:`APIStatusError` subclass from an error response.

    Args:
        response: A response whose status is 4xx or 5xx.

    Returns:
        The error instance (not raised).
    """
    try:
        body: Any = response.json()
    except (ValueError, json.JSONDecodeError):
        body = response.text[:MAX_ERROR_TEXT]
    return _error_from_body(response.status_code, body, response=response,
                            fallback=response.reason or "HTTP error")


def make_stream_error(event: Any, response: Optional["requests.Response"] = None) -> APIStatusError:
    """Build the matching :class:`APIStatusError` subclass from an in-band ``error`` event.

    The event (``{"event": "error", "error": {"code", "message", "field"}, "status": int}``)
    arrives after a 200 header, so its ``status`` (500 when absent) picks the class, exactly
    as an HTTP status would.

    Args:
        event: The decoded ``error`` event.
        response: The streaming response it arrived on.

    Returns:
        The error instance (not raised).
    """
    status = event.get("status") if isinstance(event, dict) else None
    if not isinstance(status, int) or isinstance(status, bool) or status < 400:
        status = 500
    return _error_from_body(status, event, response=response, fallback="error event in the stream")

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

Which answer maps to which class is decided in one place, ``nst_client._core``, for both
clients. ``response`` attributes hold the HTTP library's response: a ``requests.Response``
from ``StyleTransferClient``, an ``httpx.Response`` from ``AsyncStyleTransferClient``.
"""

from __future__ import annotations

from typing import Any, Optional

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


class PayloadTooLargeError(APIStatusError):
    """HTTP 413: the request body exceeds the server's size limit."""


class RateLimitError(APIStatusError):
    """HTTP 429: too many requests."""


class ServerError(APIStatusError):
    """HTTP status >= 500."""


class ServiceUnavailableError(ServerError):
    """HTTP 503: e.g. no worker available, or TorchServe's ``Prediction failed``."""

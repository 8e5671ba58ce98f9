"""The transport-free core shared by the sync and the async client (sans-IO).

Everything that decides *what* is sent and *what an answer means* lives here, once:

* request building: the stylize JSON body from the arguments, its read timeout, the headers
  (including ``Authorization`` from :class:`Credentials`), the management URL;
* error mapping: an HTTP error answer, an in-band stream ``error`` event, or a transport
  failure -> the :mod:`nst_client._exceptions` class;
* the retry policy (:class:`Attempts`): which failures are sent again, after how long
  (``Retry-After`` or capped exponential backoff with jitter), and the one re-read of the key
  file after an authentication error;
* answer parsing: JSON objects, :class:`StylizeResult`, :class:`ModelInfo`, and the NDJSON
  event stream (:class:`EventDecoder`).

No function here opens a socket or sleeps: :mod:`nst_client._client` (``requests``) and
:mod:`nst_client._async` (``httpx``) only move bytes and map their libraries' exceptions to a
:class:`Failure`. The one I/O done here is re-reading a small key file (:meth:`Credentials.reread`).
"""

from __future__ import annotations

import collections.abc
import email.utils
import enum
import json
import os
import random
import time
import urllib.parse
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

from ._auth import ENV_MANAGEMENT_TOKEN, MANAGEMENT_KEY_SECTION, read_key_file, resolve_credentials
from ._constants import (
    DEADLINE_READ_MARGIN,
    INITIAL_RETRY_DELAY,
    KEY_FILE_SECTION,
    MAX_ERROR_TEXT,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    NDJSON_CONTENT_TYPE,
    NON_RETRYABLE_TORCHSERVE_TYPES,
    RETRY_JITTER,
    RETRYABLE_STATUS_CODES,
    RETRYABLE_TORCHSERVE_MESSAGES,
    TORCHSERVE_INVALID_KEY_TYPE,
)
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    NSTError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
)
from ._images import b64decode, b64encode, to_image_bytes
from ._stream import PreviewEvent, ProgressEvent, ResultEvent, StreamEvent
from ._types import ImageInput, ModelInfo, StyleInput, StylizeResult
from ._version import __version__

# TorchServe's management API listens on this port by default; ``management_url`` defaults to
# the inference URL's scheme and host with this port.
DEFAULT_MANAGEMENT_PORT = 8081
ENV_MANAGEMENT_URL = "NST_MANAGEMENT_URL"
# The optional extra that brings httpx (AsyncStyleTransferClient).
ASYNC_EXTRA_INSTALL = "pip install 'nst-client[async]'"
USER_AGENT = f"nst-client/{__version__}"

#: The named keyword parameters of ``stylize`` that go into the request's ``params`` object,
#: in the order of the signature (both clients send exactly these, when not ``None``).
STYLIZE_PARAMS: Tuple[str, ...] = (
    "image_size", "steps", "content_weight", "style_weight", "tv_weight", "init", "seed",
    "output_format", "style_blend_weights", "style_scale", "color_control", "pooling",
    "content_layers", "style_layers", "style_layer_weights", "optimizer", "learning_rate",
    "lbfgs_history", "scales", "mode", "return_history", "time_budget_s",
)
#: The named keyword parameters of ``stylize`` sent as top-level image fields.
STYLIZE_IMAGES: Tuple[str, ...] = ("init_image", "content_mask", "style_masks")

StyleMasks = Optional[Union[List[ImageInput], Tuple[ImageInput, ...]]]


# ---------------------------------------------------------------------------- credentials


class Credentials:
    """One bearer token and, when it was read from a key file, that file (re-read on an
    authentication error: TorchServe keys expire and change on restart).

    Attributes:
        token: The bearer token, or ``None`` (no ``Authorization`` header is sent).
        key_file: The key file the token came from, else ``None``.
        section: The key file section: ``"inference"`` or ``"management"``.
    """

    def __init__(self, token: Optional[str], key_file: Optional[Path], section: str = KEY_FILE_SECTION) -> None:
        self.token = token
        self.key_file = key_file
        self.section = section

    @classmethod
    def inference(cls, token: Optional[str], key_file: Optional[Union[str, os.PathLike[str]]]) -> Credentials:
        """The inference key: ``token``, else ``$NST_TOKEN``, else the key file (see ``_auth``).

        Raises:
            FileNotFoundError: An explicitly named key file does not exist.
            KeyFileError: The key file is malformed.
        """
        return cls(*resolve_credentials(token, key_file), section=KEY_FILE_SECTION)

    @classmethod
    def management(cls, token: Optional[str], key_file: Optional[Union[str, os.PathLike[str]]]) -> Credentials:
        """The management key: ``token``, else ``$NST_MANAGEMENT_TOKEN``, else the key file's
        ``["management"]["key"]`` (key file found as for the inference key).

        Raises:
            FileNotFoundError: An explicitly named key file does not exist.
            KeyFileError: The key file is malformed or has no management key.
        """
        found = resolve_credentials(token, key_file, section=MANAGEMENT_KEY_SECTION, env_token=ENV_MANAGEMENT_TOKEN)
        return cls(*found, section=MANAGEMENT_KEY_SECTION)

    def headers(self) -> Dict[str, str]:
        """``{"Authorization": "Bearer <token>"}``, or ``{}`` without a token."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def reread(self) -> bool:
        """Re-read the key file; True if it now holds a different key (then in use).

        Returns False without a key file, or when it cannot be read or is unchanged.
        """
        if self.key_file is None:
            return False
        try:
            key = read_key_file(self.key_file, self.section)
        except (OSError, NSTError):
            return False
        if key == self.token:
            return False
        self.token = key
        return True


class ManagementCredentials:
    """The management key, looked up at client construction (same key file, same cwd as the
    inference key) but failing only when :meth:`get` is called: a client that never calls
    ``info()`` needs no management key.

    Args:
        token: The ``management_token`` argument.
        key_file: The ``key_file`` argument.
    """

    def __init__(self, token: Optional[str], key_file: Optional[Union[str, os.PathLike[str]]]) -> None:
        self._credentials: Optional[Credentials] = None
        self._error: Optional[BaseException] = None
        try:
            self._credentials = Credentials.management(token, key_file)
        except (OSError, NSTError) as exc:
            self._error = exc

    def get(self) -> Credentials:
        """The management credentials.

        Raises:
            FileNotFoundError: An explicitly named key file does not exist.
            KeyFileError: The key file is malformed or has no management key.
        """
        if self._credentials is None:
            assert self._error is not None
            raise self._error.with_traceback(None)
        return self._credentials


def request_headers(credentials: Credentials, *, json_body: bool = False, stream: bool = False) -> Dict[str, str]:
    """Every header of one request.

    Args:
        credentials: Supplies ``Authorization`` (read at each attempt, so a re-read key is used).
        json_body: The request carries a JSON body (adds ``Content-Type``).
        stream: The caller accepts NDJSON events (``Accept: application/x-ndjson, application/json``).

    Returns:
        The headers.
    """
    headers = {"User-Agent": USER_AGENT,
               "Accept": f"{NDJSON_CONTENT_TYPE}, application/json" if stream else "application/json"}
    if json_body:
        headers["Content-Type"] = "application/json"
    headers.update(credentials.headers())
    return headers


def management_url_for(base_url: str) -> str:
    """The default management API root for an inference API root: same scheme and host, port 8081.

    Example: ``"https://nst.example:8443/x"`` -> ``"https://nst.example:8081"``.
    """
    parts = urllib.parse.urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme or 'http'}://{host}:{DEFAULT_MANAGEMENT_PORT}"


# ------------------------------------------------------------------------ request bodies


def _encode(image: ImageInput, name: str) -> str:
    """Base64 text of one image input; ``name`` labels errors (``"style[1]"``...)."""
    return b64encode(to_image_bytes(image, name=name))


def _as_list(value: Any) -> Any:
    """A non-string sequence (tuple, range...) as a list, so it is sent as a JSON list."""
    if isinstance(value, collections.abc.Sequence) and not isinstance(value, (str, bytes, bytearray)):
        return list(value)
    return value


def pick(values: Mapping[str, Any], names: Sequence[str]) -> Dict[str, Any]:
    """``{name: values[name]}`` for each of ``names`` (a method's ``locals()`` -> its named parameters)."""
    return {name: values[name] for name in names}


def stylize_body(
    content: ImageInput,
    style: StyleInput,
    *,
    init_image: Optional[ImageInput] = None,
    content_mask: Optional[ImageInput] = None,
    style_masks: StyleMasks = None,
    params: Mapping[str, Any],
) -> Tuple[bytes, Dict[str, Any]]:
    """The JSON request body of a stylize call (see ``docs/api.md``).

    Parameters that are ``None`` are left out (the server fills in its defaults); tuples and
    other non-string sequences become JSON lists. Nothing is read or encoded before the
    structural checks pass.

    Args:
        content: Content image (path, encoded bytes or PIL image).
        style: One style image (sent as a base64 string) or a list/tuple (a JSON list).
        init_image: Top-level ``init_image``.
        content_mask: Top-level ``content_mask``.
        style_masks: Top-level ``style_masks``: one mask per style.
        params: The ``params`` object before ``None`` values are dropped.

    Returns:
        ``(body, params)``: the UTF-8 JSON body, and the ``params`` object it carries.

    Raises:
        TypeError: An image input has an unsupported type, or ``style_masks`` is not a list/tuple.
        FileNotFoundError: An input path does not exist.
        ValueError: An input is empty, ``style`` is an empty list, ``style_masks`` does not have
            one mask per style, or a parameter is not JSON-serialisable (NaN, an object...).
    """
    n_styles = len(style) if isinstance(style, (list, tuple)) else 1
    if n_styles == 0:
        raise ValueError("style: at least one style image is required")
    if style_masks is not None:
        if not isinstance(style_masks, (list, tuple)):
            raise TypeError(
                f"style_masks must be a list or tuple of images (one per style), "
                f"not {type(style_masks).__name__}")
        if len(style_masks) != n_styles:
            raise ValueError(
                f"style_masks has {len(style_masks)} mask(s) but there are {n_styles} "
                f"style image(s); give exactly one mask per style")

    sent = {k: _as_list(v) for k, v in params.items() if v is not None}
    payload: Dict[str, Any] = {"content": _encode(content, "content")}
    if isinstance(style, (list, tuple)):
        payload["style"] = [_encode(s, f"style[{i}]") for i, s in enumerate(style)]
    else:
        payload["style"] = _encode(style, "style")
    payload["params"] = sent
    if init_image is not None:
        payload["init_image"] = _encode(init_image, "init_image")
    if content_mask is not None:
        payload["content_mask"] = _encode(content_mask, "content_mask")
    if style_masks is not None:
        payload["style_masks"] = [_encode(m, f"style_masks[{i}]") for i, m in enumerate(style_masks)]
    try:
        data = json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"params are not valid JSON: {exc}") from exc
    return data.encode("utf-8"), sent


def stream_params(params: Mapping[str, Any], progress_every: Optional[int],
                  preview_every: Optional[int]) -> Dict[str, Any]:
    """``params`` of a streamed call: ``stream = true`` and the two event intervals."""
    return {**params, "stream": True, "progress_every": progress_every, "preview_every": preview_every}


def read_timeout_for(params: Mapping[str, Any], timeout: float) -> float:
    """The read timeout (seconds) of a stylize call: ``timeout``, or with ``time_budget_s``
    ``min(timeout, time_budget_s + DEADLINE_READ_MARGIN)``."""
    budget = params.get("time_budget_s")
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        return min(timeout, float(budget) + DEADLINE_READ_MARGIN)
    return timeout


# -------------------------------------------------------------------------- error mapping


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


#: Transport failures after which the request is sent again (within ``max_retries``). A read
#: timeout is not: the server may still be working on the request.
RETRYABLE_FAILURES = frozenset({Failure.CONNECT_TIMEOUT, Failure.CONNECT})


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


# --------------------------------------------------------------------------- retry policy


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
    """The retry policy of one call. After each failed attempt the client asks it what to do:
    it returns the seconds to wait before sending again, or raises the error.

    Example (what both clients do)::

        attempts = Attempts(max_retries, credentials)
        while True:
            try:
                response = send(headers=request_headers(credentials))
            except LibraryConnectError as exc:
                delay = attempts.after_failure(Failure.CONNECT, transport_error(...), exc)
            else:
                if response.status_code < 400:
                    return response
                delay = attempts.after_status(status_error(...))
            sleep(delay)
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


# ------------------------------------------------------------------------ answer parsing


def media_type(headers: Mapping[str, str]) -> str:
    """The lower-cased media type of ``Content-Type`` without parameters (``""`` if absent)."""
    return headers.get("Content-Type", "").split(";")[0].strip().lower()


def json_object(content: bytes, headers: Mapping[str, str], response: Any = None) -> Dict[str, Any]:
    """Decode a 2xx body that must be a JSON object.

    Raises:
        APIResponseValidationError: The body is not JSON, or not an object.
    """
    try:
        body = json.loads(content)
    except ValueError as exc:
        raise APIResponseValidationError(
            f"Expected a JSON object, got {headers.get('Content-Type')!r}", response=response,
            body=content.decode("utf-8", errors="replace")[:MAX_ERROR_TEXT]) from exc
    if not isinstance(body, dict):
        raise APIResponseValidationError("Expected a JSON object", response=response, body=body)
    return body


def stylize_result(body: Dict[str, Any], response: Any = None) -> StylizeResult:
    """The :class:`StylizeResult` of a 200 stylize answer.

    Raises:
        APIResponseValidationError: No decodable image, or a malformed ``history``.
    """
    try:
        return StylizeResult.from_response(body)
    except ValueError as exc:
        raise APIResponseValidationError(f"Malformed stylize response: {exc}", response=response, body=body) from exc


def model_info(content: bytes, headers: Mapping[str, str], response: Any = None) -> ModelInfo:
    """The :class:`ModelInfo` of a 200 ``GET /models/<name>?customized=true`` answer.

    Raises:
        APIResponseValidationError: The body is not a non-empty JSON list of model descriptions,
            or ``customizedMetadata`` is not a JSON object (or a string holding one).
    """
    try:
        body = json.loads(content)
    except ValueError as exc:
        raise APIResponseValidationError(
            f"Expected a JSON list of model descriptions, got {headers.get('Content-Type')!r}",
            response=response, body=content.decode("utf-8", errors="replace")[:MAX_ERROR_TEXT]) from exc
    if not isinstance(body, list) or not body or not isinstance(body[0], dict):
        raise APIResponseValidationError("Expected a non-empty JSON list of model descriptions",
                                         response=response, body=body)
    try:
        return ModelInfo.from_description(body[0])
    except ValueError as exc:
        raise APIResponseValidationError(f"Malformed model description: {exc}", response=response,
                                         body=body) from exc


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f'"{key}" is not an integer')
    return value


def _float(obj: Mapping[str, Any], key: str, *, optional: bool = False) -> Optional[float]:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f'"{key}" is not a number')
    return float(value)


def parse_event(obj: Mapping[str, Any], response: Any = None) -> Optional[StreamEvent]:
    """Turn one decoded NDJSON line into an event.

    Args:
        obj: The decoded line.
        response: The streaming response (attached to a raised error).

    Returns:
        The event, or ``None`` for an event type this SDK does not know (skipped, so a newer
        server can add events).

    Raises:
        APIStatusError: ``obj`` is an ``error`` event (the subclass its ``status`` maps to).
        ValueError: A known event lacks a field or has one of the wrong type.
    """
    kind = obj.get("event")
    if kind == "progress":
        losses = obj.get("losses")
        if not isinstance(losses, dict):
            raise ValueError('"losses" is not an object')
        return ProgressEvent(
            iteration=_int(obj, "iteration"), of=_int(obj, "of"), losses=dict(losses),
            elapsed_s=float(_float(obj, "elapsed_s") or 0.0), eta_s=_float(obj, "eta_s", optional=True),
        )
    if kind == "preview":
        image = obj.get("image")
        if not isinstance(image, str) or not image:
            raise ValueError('preview has no "image" string')
        return PreviewEvent(iteration=_int(obj, "iteration"), width=_int(obj, "width"),
                            height=_int(obj, "height"), image_bytes=b64decode(image))
    if kind == "result":
        body = {k: v for k, v in obj.items() if k != "event"}
        return ResultEvent(StylizeResult.from_response(body))
    if kind == "error":
        raise stream_error(obj, response)
    return None


class EventDecoder:
    """The events of a 200 streamed answer, from its body bytes in any chunking.

    Feed each chunk as it arrives to :meth:`feed` and the end of the body to :meth:`close`.
    An ``application/x-ndjson`` body is split into lines (``\\n`` or ``\\r\\n``; blank lines
    skipped), each a JSON event; an ``application/json`` body (a server or proxy that did not
    stream) is read whole as the plain stylize answer and gives just its :class:`ResultEvent`.
    After the result event :attr:`done` is set and further bytes are ignored.

    Args:
        headers: The response headers (``Content-Type`` picks the mode).
        response: The transport's response, attached to raised errors.
    """

    def __init__(self, headers: Mapping[str, str], response: Any = None) -> None:
        self.plain = media_type(headers) == "application/json"
        self.response = response
        self.done = False
        self._buffer = b""

    def feed(self, chunk: bytes) -> List[StreamEvent]:
        """The events completed by ``chunk``, in order.

        Raises:
            APIStatusError: An ``error`` event.
            APIResponseValidationError: A line that is not a JSON object, or a malformed event.
        """
        if self.done or not chunk:
            return []
        self._buffer += chunk
        if self.plain:
            return []
        cut = self._buffer.rfind(b"\n") + 1
        complete, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return self._lines(complete)

    def close(self) -> List[StreamEvent]:
        """The events left at the end of the body (a last line without newline, or the plain
        JSON answer).

        Raises:
            APIResponseValidationError: As :meth:`feed`, or the body ended without a result event.
            APIStatusError: An ``error`` event.
        """
        rest, self._buffer = self._buffer, b""
        events = [] if self.done else self._lines(rest)
        if not self.done:
            raise APIResponseValidationError("The stream ended without a result event", response=self.response)
        return events

    def _lines(self, data: bytes) -> List[StreamEvent]:
        lines = [data] if self.plain else data.splitlines()
        events: List[StreamEvent] = []
        for line in lines:
            if self.done:
                break
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise APIResponseValidationError(
                    f"Stream line is not JSON ({NDJSON_CONTENT_TYPE} expected)",
                    response=self.response, body=line[:MAX_ERROR_TEXT]) from exc
            if not isinstance(obj, dict):
                raise APIResponseValidationError("Stream line is not a JSON object", response=self.response, body=obj)
            if self.plain:
                obj = {**obj, "event": "result"}
            try:
                event = parse_event(obj, self.response)
            except ValueError as exc:
                raise APIResponseValidationError(
                    f"Malformed {obj.get('event')!r} event: {exc}", response=self.response, body=obj) from exc
            if event is not None:
                events.append(event)
            if isinstance(event, ResultEvent):
                self.done = True
        return events

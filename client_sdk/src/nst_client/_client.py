"""The synchronous client."""

from __future__ import annotations

import email.utils
import json
import os
import random
import time
from typing import Any, Dict, Literal, Mapping, Optional, Union

import requests

from ._auth import resolve_token
from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    ENV_BASE_URL,
    INITIAL_RETRY_DELAY,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    NON_RETRYABLE_TORCHSERVE_TYPES,
    RETRY_JITTER,
    RETRYABLE_STATUS_CODES,
)
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    NSTError,
    make_status_error,
)
from ._images import b64encode, to_image_bytes
from ._types import ImageInput, StylizeResult
from ._version import __version__

__all__ = ["StyleTransferClient"]


def _sleep(seconds: float) -> None:
    """Indirection so tests can observe retry delays without waiting."""
    time.sleep(seconds)


def _parse_retry_after(headers: Mapping[str, str]) -> Optional[float]:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), else ``None``."""
    value = headers.get("Retry-After")
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


def _is_read_timeout(exc: requests.exceptions.ConnectionError) -> bool:
    """requests reports some body-read timeouts as ConnectionError(ReadTimeoutError)."""
    from urllib3.exceptions import ReadTimeoutError

    return any(isinstance(a, ReadTimeoutError) for a in exc.args)


class StyleTransferClient:
    """Client for the neural-style-transfer TorchServe service.

    Configuration is resolved once, at construction:

    * ``base_url``: argument, else ``NST_URL``, else ``http://127.0.0.1:8080``.
    * token: argument, else ``NST_TOKEN``, else ``["inference"]["key"]`` of the key file
      (``key_file`` argument, else ``NST_KEY_FILE``, else ``./key_file.json`` if it exists);
      if none is found no ``Authorization`` header is sent.

    Use as a context manager, or call :meth:`close`, to release the HTTP connection pool.

    Example::

        with StyleTransferClient() as client:
            result = client.stylize("photo.jpg", "starry_night.jpg", image_size=512, steps=300)
            result.save("out.png")
    """

    def __init__(
        self,
        *,
        base_url: Optional[str] = None,
        model: str = DEFAULT_MODEL,
        token: Optional[str] = None,
        key_file: Optional[Union[str, "os.PathLike[str]"]] = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        """Create a client.

        Args:
            base_url: Inference API root, e.g. ``"http://host:8080"``.
            model: Registered TorchServe model name.
            token: Bearer token (TorchServe inference key).
            key_file: Path of a TorchServe ``key_file.json`` to read the inference key from.
            timeout: Read timeout in seconds: the longest wait for the server's answer.
            connect_timeout: TCP connect timeout in seconds.
            max_retries: Retries after the first attempt, for connection failures and HTTP
                429/502/503/504 only; ``0`` disables retrying.

        Raises:
            ValueError: A timeout is not positive or ``max_retries`` is negative.
            FileNotFoundError: An explicitly named key file does not exist.
            KeyFileError: The key file is malformed.
        """
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeout and connect_timeout must be positive (seconds)")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url: str = (base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
        self.model: str = model
        self.timeout: float = float(timeout)
        self.connect_timeout: float = float(connect_timeout)
        self.max_retries: int = int(max_retries)
        self._token: Optional[str] = resolve_token(token, key_file)
        self._session = requests.Session()
        self._session.headers.update(
            {"User-Agent": f"nst-client/{__version__}", "Accept": "application/json"}
        )
        if self._token:
            self._session.headers["Authorization"] = f"Bearer {self._token}"

    # ------------------------------------------------------------------ public API

    def stylize(
        self,
        content: ImageInput,
        style: ImageInput,
        *,
        image_size: Optional[int] = None,
        steps: Optional[int] = None,
        content_weight: Optional[float] = None,
        style_weight: Optional[float] = None,
        tv_weight: Optional[float] = None,
        init: Optional[Literal["content", "noise"]] = None,
        seed: Optional[int] = None,
        output_format: Optional[Literal["png", "jpeg"]] = None,
        **extra_params: Any,
    ) -> StylizeResult:
        """Render ``content`` in the style of ``style``.

        Only parameters that are not ``None`` are sent; the server fills in its defaults.
        Unknown keyword parameters are passed through unchanged (a server that does not
        know them answers ``BadRequestError``).

        Args:
            content: Content image: file path, encoded bytes, or ``PIL.Image.Image``.
            style: Style image, same forms as ``content``.
            image_size: Long side of the output, in pixels.
            steps: L-BFGS iterations.
            content_weight: Weight of the content loss.
            style_weight: Weight of the style loss.
            tv_weight: Weight of the total-variation loss.
            init: Starting image, ``"content"`` or ``"noise"``.
            seed: Random seed (noise init, random weights).
            output_format: ``"png"`` or ``"jpeg"``.
            **extra_params: Further server parameters, sent as given.

        Returns:
            The :class:`StylizeResult`.

        Raises:
            TypeError: ``content``/``style`` has an unsupported type.
            FileNotFoundError: An input path does not exist.
            ValueError: An input is empty, or a parameter is not JSON-serialisable (NaN...).
            APIStatusError: The server answered 4xx/5xx (see the subclasses).
            APIConnectionError: No answer (``APITimeoutError`` on timeout).
            APIResponseValidationError: A 200 answer without a decodable image.
        """
        known = {
            "image_size": image_size,
            "steps": steps,
            "content_weight": content_weight,
            "style_weight": style_weight,
            "tv_weight": tv_weight,
            "init": init,
            "seed": seed,
            "output_format": output_format,
        }
        params = {k: v for k, v in {**known, **extra_params}.items() if v is not None}
        payload = {
            "content": b64encode(to_image_bytes(content, name="content")),
            "style": b64encode(to_image_bytes(style, name="style")),
            "params": params,
        }
        try:
            data = json.dumps(payload, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"params are not valid JSON: {exc}") from exc

        response = self._request("POST", f"/predictions/{self.model}", data=data)
        body = self._json(response)
        try:
            return StylizeResult.from_response(body)
        except ValueError as exc:
            raise APIResponseValidationError(
                f"Malformed stylize response: {exc}", response=response, body=body
            ) from exc

    def health(self) -> Dict[str, Any]:
        """Call ``GET /ping``.

        Returns:
            The decoded body, e.g. ``{"status": "Healthy"}``.

        Raises:
            APIStatusError: Non-2xx answer (TorchServe answers 500 when unhealthy).
            APIConnectionError: No answer.
            APIResponseValidationError: The body is not a JSON object.
        """
        return self._json(self._request("GET", "/ping"))

    def close(self) -> None:
        """Close the underlying HTTP session. Safe to call more than once."""
        self._session.close()

    def __enter__(self) -> "StyleTransferClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        auth = "set" if self._token else "none"
        return f"StyleTransferClient(base_url={self.base_url!r}, model={self.model!r}, token={auth})"

    # ------------------------------------------------------------------ internals

    def _request(self, method: str, path: str, *, data: Optional[str] = None) -> requests.Response:
        url = self.base_url + path
        headers = {"Content-Type": "application/json"} if data is not None else None
        attempt = 0
        while True:
            response: Optional[requests.Response] = None
            cause: Optional[BaseException] = None
            try:
                response = self._session.request(
                    method, url, data=data, headers=headers,
                    timeout=(self.connect_timeout, self.timeout),
                )
            except requests.exceptions.ConnectTimeout as exc:
                error: NSTError = APITimeoutError(
                    f"Connecting to {url} timed out after {self.connect_timeout:g} s", url=url)
                cause = exc
            except requests.exceptions.ReadTimeout as exc:
                # Never retried: the server may still be working on the request.
                raise APITimeoutError(f"No answer from {url} within {self.timeout:g} s", url=url) from exc
            except requests.exceptions.ConnectionError as exc:
                if _is_read_timeout(exc):
                    raise APITimeoutError(f"No answer from {url} within {self.timeout:g} s", url=url) from exc
                reason = getattr(exc.args[0], "reason", None) if exc.args else None
                error = APIConnectionError(f"Could not connect to {url}: {reason or exc}", url=url)
                cause = exc
            except requests.exceptions.RequestException as exc:
                raise APIConnectionError(f"Request to {url} failed: {exc}", url=url) from exc
            else:
                if response.status_code < 400:
                    return response
                error = make_status_error(response)
                if (response.status_code not in RETRYABLE_STATUS_CODES
                        or getattr(error, "code", None) in NON_RETRYABLE_TORCHSERVE_TYPES):
                    raise error

            if attempt >= self.max_retries:
                raise error from cause
            _sleep(self._retry_delay(attempt, response))
            attempt += 1

    @staticmethod
    def _retry_delay(attempt: int, response: Optional[requests.Response]) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        if response is not None:
            retry_after = _parse_retry_after(response.headers)
            if retry_after is not None and 0 <= retry_after <= MAX_RETRY_AFTER:
                return retry_after
        delay = min(INITIAL_RETRY_DELAY * (2.0 ** attempt), MAX_RETRY_DELAY)
        return delay * (1.0 - RETRY_JITTER * random.random())

    @staticmethod
    def _json(response: requests.Response) -> Dict[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise APIResponseValidationError(
                f"Expected a JSON object, got {response.headers.get('Content-Type')!r}",
                response=response, body=response.text[:500]) from exc
        if not isinstance(body, dict):
            raise APIResponseValidationError("Expected a JSON object", response=response, body=body)
        return body

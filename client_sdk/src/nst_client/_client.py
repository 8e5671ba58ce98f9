"""The synchronous client."""

from __future__ import annotations

import collections.abc
import email.utils
import json
import os
import random
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import requests

from ._auth import read_key_file, resolve_credentials
from ._constants import (
    DEADLINE_READ_MARGIN,
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    ENV_BASE_URL,
    INITIAL_RETRY_DELAY,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    NDJSON_CONTENT_TYPE,
    NON_RETRYABLE_TORCHSERVE_TYPES,
    RETRY_JITTER,
    RETRYABLE_STATUS_CODES,
    RETRYABLE_TORCHSERVE_MESSAGES,
)
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    AuthenticationError,
    NSTError,
    make_status_error,
)
from ._images import b64encode, to_image_bytes
from ._stream import StreamEvent, consume, iter_events, require_tqdm
from ._types import (
    ColorControl,
    ImageInput,
    InitMode,
    OptimizerName,
    OutputFormat,
    Pooling,
    RenderMode,
    StyleInput,
    StylizeResult,
)
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


def _encode(image: ImageInput, name: str) -> str:
    """Base64 text of one image input; ``name`` labels errors (``"style[1]"``...)."""
    return b64encode(to_image_bytes(image, name=name))


def _as_list(value: Any) -> Any:
    """A non-string sequence (tuple, range...) as a list, so it is sent as a JSON list."""
    if isinstance(value, collections.abc.Sequence) and not isinstance(value, (str, bytes, bytearray)):
        return list(value)
    return value


def _retryable(error: NSTError) -> bool:
    """Whether an error answer may succeed when sent again (see the retry constants)."""
    status = getattr(error, "status_code", None)
    if getattr(error, "message", None) in RETRYABLE_TORCHSERVE_MESSAGES:
        return True
    return status in RETRYABLE_STATUS_CODES and getattr(error, "code", None) not in NON_RETRYABLE_TORCHSERVE_TYPES


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
        self._token, self._key_file = resolve_credentials(token, key_file)
        self._session = requests.Session()
        self._session.headers.update(
            {"User-Agent": f"nst-client/{__version__}", "Accept": "application/json"}
        )
        self._set_token(self._token)

    # ------------------------------------------------------------------ public API

    def stylize(
        self,
        content: ImageInput,
        style: StyleInput,
        *,
        image_size: Optional[int] = None,
        steps: Optional[int] = None,
        content_weight: Optional[float] = None,
        style_weight: Optional[float] = None,
        tv_weight: Optional[float] = None,
        init: Optional[InitMode] = None,
        seed: Optional[int] = None,
        output_format: Optional[OutputFormat] = None,
        init_image: Optional[ImageInput] = None,
        content_mask: Optional[ImageInput] = None,
        style_masks: Optional[Union[List[ImageInput], Tuple[ImageInput, ...]]] = None,
        style_blend_weights: Optional[Sequence[float]] = None,
        style_scale: Optional[float] = None,
        color_control: Optional[ColorControl] = None,
        pooling: Optional[Pooling] = None,
        content_layers: Optional[Sequence[str]] = None,
        style_layers: Optional[Sequence[str]] = None,
        style_layer_weights: Optional[Sequence[float]] = None,
        optimizer: Optional[OptimizerName] = None,
        learning_rate: Optional[float] = None,
        lbfgs_history: Optional[int] = None,
        scales: Optional[Union[int, Sequence[int]]] = None,
        mode: Optional[RenderMode] = None,
        return_history: Optional[bool] = None,
        time_budget_s: Optional[float] = None,
        progress: bool = False,
        **extra_params: Any,
    ) -> StylizeResult:
        """Render ``content`` in the style of ``style`` (one image or several).

        Only parameters that are not ``None`` are sent; the server fills in its defaults and
        checks value ranges (see ``docs/api.md`` for each parameter's meaning). Lists and
        tuples are sent as JSON lists. Unknown keyword parameters are passed through
        unchanged (a server that does not know them answers ``BadRequestError``).

        Args:
            content: Content image: file path, encoded bytes, or ``PIL.Image.Image``.
            style: One style image (same forms as ``content``; sent as a base64 string), or
                a list/tuple of them (sent as a JSON list of base64 strings, even if it has
                a single element).
            image_size: Long side of the output, in pixels.
            steps: Optimiser iterations.
            content_weight: Weight of the content loss.
            style_weight: Weight of the style loss.
            tv_weight: Weight of the total-variation loss.
            init: Starting image: ``"content"``, ``"noise"``, ``"style"`` or ``"image"``
                (the latter uses ``init_image``).
            seed: Random seed (noise init, random weights).
            output_format: ``"png"`` or ``"jpeg"``.
            init_image: Starting image for ``init="image"``; top-level ``init_image`` field.
            content_mask: Image whose distinct colours label regions of the content (spatial
                control); top-level ``content_mask`` field.
            style_masks: One mask image per style, in style order (top-level
                ``style_masks`` list); its length must equal the number of styles.
            style_blend_weights: Relative weight of each style (one per style; unitless).
            style_scale: Size of the style image relative to the output (unitless factor).
            color_control: Colour preservation: ``"none"``, ``"luminance"`` or
                ``"histogram"``.
            pooling: VGG19 pooling layers: ``"max"`` or ``"avg"``.
            content_layers: VGG19 layer names for the content loss, e.g. ``["relu4_2"]``.
            style_layers: VGG19 layer names for the style loss, e.g. ``["relu1_1", ...]``.
            style_layer_weights: Weight of each style layer (one per ``style_layers`` entry).
            optimizer: ``"lbfgs"`` or ``"adam"``.
            learning_rate: Optimiser step size (Adam), in image units (pixel values 0..1)
                per step.
            lbfgs_history: L-BFGS history size, in (gradient, step) pairs kept.
            scales: Coarse-to-fine schedule: the number of levels (``int``), or the long side
                of each level in pixels (list of ints).
            mode: ``"stylize"``, ``"reconstruct_content"`` or ``"reconstruct_style"``.
            return_history: Ask for per-iteration losses (:attr:`StylizeResult.history`).
            time_budget_s: Seconds of optimization after which the server stops early and
                answers with the image so far (:attr:`StylizeResult.stopped` is then
                ``"time_budget"``). The read timeout of this call becomes
                ``min(timeout, time_budget_s + DEADLINE_READ_MARGIN)``, so a deadline that the
                server cannot keep surfaces as an ``APITimeoutError`` soon after.
            progress: Show a tqdm progress bar on ``sys.stderr`` while the server works: the
                call then goes through :meth:`stylize_stream` (``progress_every`` and
                ``preview_every`` may be passed too). Needs the ``progress`` extra
                (``pip install 'nst-client[progress]'``).
            **extra_params: Further server parameters, sent as given.

        Returns:
            The :class:`StylizeResult`.

        Raises:
            MissingDependencyError: ``progress=True`` but tqdm is not installed (raised
                before anything is sent; it is an ``ImportError`` too).
            TypeError: An image input has an unsupported type, or ``style_masks`` is not a
                list/tuple.
            FileNotFoundError: An input path does not exist.
            ValueError: An input is empty, ``style`` is an empty list, ``style_masks`` does
                not have one mask per style, or a parameter is not JSON-serialisable (NaN...).
            APIStatusError: The server answered 4xx/5xx (see the subclasses).
            APIConnectionError: No answer (``APITimeoutError`` on timeout).
            APIResponseValidationError: A 200 answer without a decodable image, or with a
                malformed ``history``; with ``progress``, a malformed stream.
        """
        known: Dict[str, Any] = {
            "image_size": image_size,
            "steps": steps,
            "content_weight": content_weight,
            "style_weight": style_weight,
            "tv_weight": tv_weight,
            "init": init,
            "seed": seed,
            "output_format": output_format,
            "style_blend_weights": style_blend_weights,
            "style_scale": style_scale,
            "color_control": color_control,
            "pooling": pooling,
            "content_layers": content_layers,
            "style_layers": style_layers,
            "style_layer_weights": style_layer_weights,
            "optimizer": optimizer,
            "learning_rate": learning_rate,
            "lbfgs_history": lbfgs_history,
            "scales": scales,
            "mode": mode,
            "return_history": return_history,
            "time_budget_s": time_budget_s,
        }
        images: Dict[str, Any] = {"init_image": init_image, "content_mask": content_mask, "style_masks": style_masks}
        if progress:
            require_tqdm()  # fail before a minutes-long job is started
            return consume(self.stylize_stream(content, style, **images, **known, **extra_params), progress=True)
        data, read_timeout = self._stylize_body(content, style, **images, params={**known, **extra_params})
        response = self._request("POST", f"/predictions/{self.model}", data=data, read_timeout=read_timeout)
        body = self._json(response)
        try:
            return StylizeResult.from_response(body)
        except ValueError as exc:
            raise APIResponseValidationError(
                f"Malformed stylize response: {exc}", response=response, body=body
            ) from exc

    def stylize_stream(
        self,
        content: ImageInput,
        style: StyleInput,
        *,
        progress_every: Optional[int] = None,
        preview_every: Optional[int] = None,
        init_image: Optional[ImageInput] = None,
        content_mask: Optional[ImageInput] = None,
        style_masks: Optional[Union[List[ImageInput], Tuple[ImageInput, ...]]] = None,
        **params: Any,
    ) -> Iterator[StreamEvent]:
        """Like :meth:`stylize`, but yield progress (and preview) events while the server works.

        The request is the one :meth:`stylize` sends, with ``params.stream = true`` and the
        two intervals below. It is sent when this method is called, so local input errors and
        errors answered before streaming begins (bad parameters, authentication, ...) are
        raised here, with the same retries as :meth:`stylize`. The client's ``timeout`` is
        then the longest wait between two chunks of the stream.

        Example::

            for event in client.stylize_stream("photo.jpg", "style.jpg", steps=300, preview_every=50):
                if isinstance(event, ProgressEvent):
                    print(event.iteration, event.of, event.losses["total"], event.eta_s)
                elif isinstance(event, PreviewEvent):
                    event.save(f"preview_{event.iteration}.jpg")
                else:  # ResultEvent, always the last one
                    event.result.save("out.png")

        Args:
            content: Content image, as for :meth:`stylize`.
            style: One style image or a list/tuple of them, as for :meth:`stylize`.
            progress_every: Iterations between progress events (>= 1; server default 10).
            preview_every: Iterations between preview events (>= 0; ``0``, the server
                default, sends none).
            init_image: As for :meth:`stylize`.
            content_mask: As for :meth:`stylize`.
            style_masks: As for :meth:`stylize`.
            **params: Any other keyword parameter of :meth:`stylize` (``steps``,
                ``image_size``, ...), or further server parameters, sent the same way.

        Returns:
            An iterator of :class:`ProgressEvent` and :class:`PreviewEvent` in the server's
            order, ending with one :class:`ResultEvent`. Closing it early closes the
            connection.

        Raises:
            TypeError, FileNotFoundError, ValueError: As for :meth:`stylize` (at the call).
            APIStatusError: A 4xx/5xx answer (at the call), or an ``error`` event in the
                stream (while iterating; the subclass its ``status`` maps to, with the
                event's ``code``, ``field`` and ``message``).
            APIConnectionError: No answer, or the stream broke off (``APITimeoutError``
                when no data came within the read timeout).
            APIResponseValidationError: A malformed event, or a stream that ended without
                a result event (while iterating).
        """
        params = {**params, "stream": True, "progress_every": progress_every, "preview_every": preview_every}
        data, read_timeout = self._stylize_body(
            content, style, init_image=init_image, content_mask=content_mask, style_masks=style_masks,
            params=params)
        response = self._request("POST", f"/predictions/{self.model}", data=data,
                                 read_timeout=read_timeout, stream=True)
        return iter_events(response)

    def _stylize_body(
        self,
        content: ImageInput,
        style: StyleInput,
        *,
        init_image: Optional[ImageInput],
        content_mask: Optional[ImageInput],
        style_masks: Optional[Union[List[ImageInput], Tuple[ImageInput, ...]]],
        params: Dict[str, Any],
    ) -> Tuple[str, float]:
        """The JSON request body of a stylize call and its read timeout (see :meth:`stylize`)."""
        # Structural checks first, so nothing is read or sent for a malformed call.
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

        params = {k: _as_list(v) for k, v in params.items() if v is not None}

        payload: Dict[str, Any] = {"content": _encode(content, "content")}
        if isinstance(style, (list, tuple)):
            payload["style"] = [_encode(s, f"style[{i}]") for i, s in enumerate(style)]
        else:
            payload["style"] = _encode(style, "style")
        payload["params"] = params
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

        read_timeout = self.timeout
        time_budget_s = params.get("time_budget_s")
        if isinstance(time_budget_s, (int, float)):
            read_timeout = min(self.timeout, float(time_budget_s) + DEADLINE_READ_MARGIN)
        return data, read_timeout

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

    def _request(self, method: str, path: str, *, data: Optional[str] = None,
                 read_timeout: Optional[float] = None, stream: bool = False) -> requests.Response:
        """Send with retries; return the first answer below 400, else raise its error.

        With ``stream`` the body is left unread (``requests``' ``stream=True``), and the
        caller must close the returned response.
        """
        read_timeout = self.timeout if read_timeout is None else read_timeout
        url = self.base_url + path
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if stream:
            headers["Accept"] = f"{NDJSON_CONTENT_TYPE}, application/json"
        attempt = 0
        reread_key = self._key_file is not None
        while True:
            response: Optional[requests.Response] = None
            cause: Optional[BaseException] = None
            try:
                response = self._session.request(
                    method, url, data=data, headers=headers or None,
                    timeout=(self.connect_timeout, read_timeout), stream=stream,
                )
            except requests.exceptions.ConnectTimeout as exc:
                error: NSTError = APITimeoutError(
                    f"Connecting to {url} timed out after {self.connect_timeout:g} s", url=url)
                cause = exc
            except requests.exceptions.ReadTimeout as exc:
                # Never retried: the server may still be working on the request.
                raise APITimeoutError(f"No answer from {url} within {read_timeout:g} s", url=url) from exc
            except requests.exceptions.ConnectionError as exc:
                if _is_read_timeout(exc):
                    raise APITimeoutError(f"No answer from {url} within {read_timeout:g} s", url=url) from exc
                reason = getattr(exc.args[0], "reason", None) if exc.args else None
                error = APIConnectionError(f"Could not connect to {url}: {reason or exc}", url=url)
                cause = exc
            except requests.exceptions.RequestException as exc:
                raise APIConnectionError(f"Request to {url} failed: {exc}", url=url) from exc
            else:
                if response.status_code < 400:
                    return response
                error = make_status_error(response)
                response.close()
                if isinstance(error, AuthenticationError) and reread_key and self._reread_key_file():
                    # TorchServe keys expire (token_expiration_min) and change on restart: a
                    # client that read its key from the key file tries the current key once.
                    reread_key = False
                    continue
                if not _retryable(error):
                    raise error

            if attempt >= self.max_retries:
                raise error from cause
            _sleep(self._retry_delay(attempt, response))
            attempt += 1

    def _set_token(self, token: Optional[str]) -> None:
        self._token = token
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        else:
            self._session.headers.pop("Authorization", None)

    def _reread_key_file(self) -> bool:
        """Re-read the key file; True if it now holds a different key (then in use)."""
        assert self._key_file is not None
        try:
            key = read_key_file(self._key_file)
        except (OSError, NSTError):
            return False
        if key == self._token:
            return False
        self._set_token(key)
        return True

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

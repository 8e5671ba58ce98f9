"""The synchronous client, on ``requests``.

What is sent, how answers and failures map to errors, and when to retry are decided by
``nst_client._core``, which the async client shares; this module only moves the bytes.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import requests

from . import _core
from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    ENV_BASE_URL,
    STREAM_CHUNK_SIZE,
)
from ._core import Attempts, Credentials, Failure
from ._stream import StreamEvent, consume, require_tqdm
from ._types import (
    ColorControl,
    ImageInput,
    InitMode,
    ModelInfo,
    OptimizerName,
    OutputFormat,
    Pooling,
    RenderMode,
    StyleInput,
    StylizeResult,
)

__all__ = ["StyleTransferClient"]


def _sleep(seconds: float) -> None:
    """Indirection so tests can observe retry delays without waiting."""
    time.sleep(seconds)


def _is_read_timeout(exc: requests.exceptions.ConnectionError) -> bool:
    """requests reports some body-read timeouts as ConnectionError(ReadTimeoutError)."""
    from urllib3.exceptions import ReadTimeoutError

    return any(isinstance(a, ReadTimeoutError) for a in exc.args)


def _failure(exc: requests.exceptions.RequestException) -> Tuple[Failure, Any]:
    """Classify a ``requests`` exception raised before an answer arrived: ``(kind, detail)``."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Failure.CONNECT_TIMEOUT, exc
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return Failure.READ_TIMEOUT, exc
    if isinstance(exc, requests.exceptions.ConnectionError):
        if _is_read_timeout(exc):
            return Failure.READ_TIMEOUT, exc
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return Failure.CONNECT, reason or exc
    return Failure.OTHER, exc


def _iter_events(response: requests.Response) -> Iterator[StreamEvent]:
    """The events of a 200 streamed answer (see ``_core.EventDecoder``); closes the response
    when finished or closed. Transport failures mid-body become SDK errors."""
    with response:
        decoder = _core.EventDecoder(response.headers, response)
        try:
            for chunk in response.iter_content(chunk_size=STREAM_CHUNK_SIZE):
                yield from decoder.feed(chunk)
                if decoder.done:
                    return
        except requests.exceptions.ConnectionError as exc:
            raise _core.stream_transport_error(_is_read_timeout(exc), response.url, exc) from exc
        except requests.exceptions.RequestException as exc:  # ChunkedEncodingError, ...
            raise _core.stream_transport_error(False, response.url, exc) from exc
        yield from decoder.close()


class StyleTransferClient:
    """Client for the neural-style-transfer TorchServe service.

    Configuration is resolved once, at construction:

    * ``base_url``: argument, else ``NST_URL``, else ``http://127.0.0.1:8080``.
    * token: argument, else ``NST_TOKEN``, else ``["inference"]["key"]`` of the key file
      (``key_file`` argument, else ``NST_KEY_FILE``, else ``./key_file.json`` if it exists);
      if none is found no ``Authorization`` header is sent.
    * ``management_url`` (for :meth:`info` only): argument, else ``NST_MANAGEMENT_URL``,
      else the base URL's scheme and host with port 8081.
    * management key (for :meth:`info` only): ``management_token`` argument, else
      ``NST_MANAGEMENT_TOKEN``, else ``["management"]["key"]`` of the key file (found as
      above); a missing or unusable one is reported by :meth:`info`, not here.

    Use as a context manager, or call :meth:`close`, to release the HTTP connection pool.
    :class:`AsyncStyleTransferClient` is the same client for ``asyncio``.

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
        key_file: Optional[Union[str, os.PathLike[str]]] = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        management_url: Optional[str] = None,
        management_token: Optional[str] = None,
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
            management_url: TorchServe management API root for :meth:`info`, e.g.
                ``"http://host:8081"``.
            management_token: TorchServe management key for :meth:`info`.

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
        self.management_url: str = (management_url or os.environ.get(_core.ENV_MANAGEMENT_URL)
                                    or _core.management_url_for(self.base_url)).rstrip("/")
        self.model: str = model
        self.timeout: float = float(timeout)
        self.connect_timeout: float = float(connect_timeout)
        self.max_retries: int = int(max_retries)
        self._credentials = Credentials.inference(token, key_file)
        self._management = _core.ManagementCredentials(management_token, key_file)
        self._session = requests.Session()

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
        # Every named parameter of this signature, by name (one list, _core.STYLIZE_PARAMS).
        known = _core.pick(locals(), _core.STYLIZE_PARAMS)
        images = _core.pick(locals(), _core.STYLIZE_IMAGES)
        if progress:
            require_tqdm()  # fail before a minutes-long job is started
            return consume(self.stylize_stream(content, style, **images, **known, **extra_params), progress=True)
        data, params = _core.stylize_body(content, style, **images, params={**known, **extra_params})
        response = self._request("POST", f"/predictions/{self.model}", data=data,
                                 read_timeout=_core.read_timeout_for(params, self.timeout))
        return _core.stylize_result(_core.json_object(response.content, response.headers, response), response)

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
        data, sent = _core.stylize_body(
            content, style, init_image=init_image, content_mask=content_mask, style_masks=style_masks,
            params=_core.stream_params(params, progress_every, preview_every))
        response = self._request("POST", f"/predictions/{self.model}", data=data,
                                 read_timeout=_core.read_timeout_for(sent, self.timeout), stream=True)
        return _iter_events(response)

    def health(self) -> Dict[str, Any]:
        """Call ``GET /ping``.

        Returns:
            The decoded body, e.g. ``{"status": "Healthy"}``.

        Raises:
            APIStatusError: Non-2xx answer (TorchServe answers 500 when unhealthy).
            APIConnectionError: No answer.
            APIResponseValidationError: The body is not a JSON object.
        """
        response = self._request("GET", "/ping")
        return _core.json_object(response.content, response.headers, response)

    def info(self) -> ModelInfo:
        """Describe the served model: ``GET {management_url}/models/{model}?customized=true``.

        TorchServe asks the handler for its description (weights provenance, device, limits,
        parameter defaults), so the answer waits for a free worker: it can take as long as
        the request being served. Sent with the management key and the same retries as
        every call.

        Returns:
            The :class:`ModelInfo`, with TorchServe's version and worker states.

        Raises:
            FileNotFoundError: An explicitly named key file does not exist.
            KeyFileError: The key file has no management key.
            APIStatusError: Non-2xx answer (e.g. ``AuthenticationError`` for a wrong
                management key, ``NotFoundError`` for an unknown model).
            APIConnectionError: No answer (the management API is not reachable at
                ``management_url``).
            APIResponseValidationError: The answer is not a model description.
        """
        response = self._request("GET", f"/models/{self.model}?customized=true",
                                 base_url=self.management_url, credentials=self._management.get())
        return _core.model_info(response.content, response.headers, response)

    def close(self) -> None:
        """Close the underlying HTTP session. Safe to call more than once."""
        self._session.close()

    def __enter__(self) -> StyleTransferClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        auth = "set" if self._credentials.token else "none"
        return f"StyleTransferClient(base_url={self.base_url!r}, model={self.model!r}, token={auth})"

    # ------------------------------------------------------------------ internals

    def _request(self, method: str, path: str, *, data: Optional[bytes] = None,
                 read_timeout: Optional[float] = None, stream: bool = False,
                 base_url: Optional[str] = None, credentials: Optional[Credentials] = None) -> requests.Response:
        """Send with the retry policy of ``_core.Attempts``; return the first answer below
        400, else raise its error.

        Args:
            method: HTTP method.
            path: Path below ``base_url`` (with its query).
            data: JSON body.
            read_timeout: Seconds; the client's ``timeout`` when ``None``.
            stream: Leave the body unread (``requests``' ``stream=True``); the caller must
                close the returned response.
            base_url: API root; the inference ``base_url`` when ``None``.
            credentials: Whose token to send; the inference key when ``None``.
        """
        read_timeout = self.timeout if read_timeout is None else read_timeout
        url = (base_url or self.base_url) + path
        credentials = credentials or self._credentials
        attempts = Attempts(self.max_retries, credentials)
        while True:
            headers = _core.request_headers(credentials, json_body=data is not None, stream=stream)
            try:
                response = self._session.request(
                    method, url, data=data, headers=headers,
                    timeout=(self.connect_timeout, read_timeout), stream=stream,
                )
            except requests.exceptions.RequestException as exc:
                kind, detail = _failure(exc)
                failed = _core.transport_error(kind, url, detail, connect_timeout=self.connect_timeout,
                                               read_timeout=read_timeout)
                delay = attempts.after_failure(kind, failed, exc)
            else:
                if response.status_code < 400:
                    return response
                with response:
                    try:
                        content = response.content
                    except requests.exceptions.RequestException:
                        content = b""  # the error body broke off: the status still says enough
                    error = _core.status_error(response.status_code, response.headers, content,
                                               response.reason, response)
                delay = attempts.after_status(error)
            if delay > 0:
                _sleep(delay)

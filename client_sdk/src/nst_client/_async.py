"""The asyncio client, on ``httpx`` (the ``async`` extra: ``pip install 'nst-client[async]'``).

It shares everything but the transport with :class:`StyleTransferClient`: request building,
error mapping, the retry policy and the stream decoding are ``nst_client._core``'s. httpx is
imported when a client is created, so ``import nst_client`` works without it.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, AsyncGenerator, Dict, List, Optional, Sequence, Tuple, Union

from . import _core
from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    ENV_BASE_URL,
)
from ._core import Attempts, Credentials, Failure
from ._exceptions import MissingDependencyError
from ._stream import StreamEvent, aconsume, require_tqdm
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

if TYPE_CHECKING:
    import httpx

__all__ = ["AsyncStyleTransferClient"]


def _httpx() -> Any:
    """The ``httpx`` module.

    Raises:
        MissingDependencyError: httpx is not installed (an ``ImportError`` too).
    """
    try:
        import httpx
    except ImportError as exc:
        raise MissingDependencyError(
            f"AsyncStyleTransferClient needs httpx: {_core.ASYNC_EXTRA_INSTALL}") from exc
    return httpx


async def _sleep(seconds: float) -> None:
    """Indirection so tests can observe retry delays without waiting."""
    await asyncio.sleep(seconds)


def _failure(exc: Exception) -> Failure:
    """Classify an httpx exception raised before an answer arrived (as ``requests``' are in
    the sync client: a connect timeout or a connection that failed or closed is retried, a
    read timeout never)."""
    hx = _httpx()
    if isinstance(exc, hx.ConnectTimeout):
        return Failure.CONNECT_TIMEOUT
    if isinstance(exc, hx.TimeoutException):  # read, write (pool waits are unlimited)
        return Failure.READ_TIMEOUT
    if isinstance(exc, (hx.NetworkError, hx.RemoteProtocolError, hx.ProxyError)):
        return Failure.CONNECT
    return Failure.OTHER


async def _aiter_events(response: httpx.Response) -> AsyncGenerator[StreamEvent, None]:
    """The events of a 200 streamed answer (see ``_core.EventDecoder``); closes the response
    when finished or closed (``aclose()``). Transport failures mid-body become SDK errors."""
    hx = _httpx()
    try:
        decoder = _core.EventDecoder(response.headers, response)
        url = str(response.url)
        try:
            async for chunk in response.aiter_bytes():
                for event in decoder.feed(chunk):
                    yield event
                if decoder.done:
                    return
        except hx.TimeoutException as exc:
            raise _core.stream_transport_error(True, url, exc) from exc
        except hx.TransportError as exc:
            raise _core.stream_transport_error(False, url, exc) from exc
        for event in decoder.close():
            yield event
    finally:
        await response.aclose()


class AsyncStyleTransferClient:
    """The :class:`StyleTransferClient` for ``asyncio``, built on httpx.

    Same constructor, same configuration order (base URL, token, key file, management URL
    and key), same requests, errors, retries and timeouts; the methods are coroutines.
    Calls may run concurrently on one client (they share its connection pool). Use it in
    one event loop, as ``async with``, or call :meth:`aclose`.

    Example::

        async with AsyncStyleTransferClient() as client:
            results = await asyncio.gather(*(client.stylize("photo.jpg", s, steps=100)
                                             for s in ("starry_night.jpg", "the_scream.jpg")))

    Raises:
        MissingDependencyError: httpx is not installed (``pip install 'nst-client[async]'``).
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
        """Create a client; the arguments are :class:`StyleTransferClient`'s.

        Raises:
            MissingDependencyError: httpx is not installed.
            ValueError: A timeout is not positive or ``max_retries`` is negative.
            FileNotFoundError: An explicitly named key file does not exist.
            KeyFileError: The key file is malformed.
        """
        hx = _httpx()
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
        # Redirects are followed as requests does; each request sets its own timeouts.
        self._client = hx.AsyncClient(follow_redirects=True)

    # ------------------------------------------------------------------ public API

    async def stylize(
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
        """Render ``content`` in the style of ``style``: :meth:`StyleTransferClient.stylize`
        (same arguments, request, result and errors) as a coroutine.

        Reading and encoding the input images runs in a worker thread
        (``asyncio.to_thread``), so large inputs do not block the event loop.
        ``progress=True`` shows the same tqdm bar, fed by :meth:`stylize_stream`.
        """
        # Every named parameter of this signature, by name (one list, _core.STYLIZE_PARAMS).
        known = _core.pick(locals(), _core.STYLIZE_PARAMS)
        images = _core.pick(locals(), _core.STYLIZE_IMAGES)
        if progress:
            require_tqdm()  # fail before a minutes-long job is started
            events = await self.stylize_stream(content, style, **images, **known, **extra_params)
            try:
                return await aconsume(events, progress=True)
            finally:
                await events.aclose()
        data, params = await asyncio.to_thread(
            _core.stylize_body, content, style, **images, params={**known, **extra_params})
        response = await self._request("POST", f"/predictions/{self.model}", data=data,
                                       read_timeout=_core.read_timeout_for(params, self.timeout))
        return _core.stylize_result(_core.json_object(response.content, response.headers, response), response)

    async def stylize_stream(
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
    ) -> AsyncGenerator[StreamEvent, None]:
        """:meth:`StyleTransferClient.stylize_stream` for asyncio: awaiting it sends the
        request (raising what is answered before streaming begins, after the same retries) and
        returns an async iterator of the same events.

        Example::

            events = await client.stylize_stream("photo.jpg", "style.jpg", steps=300, progress_every=10)
            async for event in events:
                if isinstance(event, ProgressEvent):
                    print(event.iteration, event.of)
                elif isinstance(event, ResultEvent):
                    event.result.save("out.png")

        Returns:
            An async generator of :class:`ProgressEvent` and :class:`PreviewEvent` in the
            server's order, ending with one :class:`ResultEvent`. ``await events.aclose()``
            closes the connection early.

        Raises:
            Everything :meth:`StyleTransferClient.stylize_stream` raises, at the same moments.
        """
        data, sent = await asyncio.to_thread(
            _core.stylize_body, content, style, init_image=init_image, content_mask=content_mask,
            style_masks=style_masks, params=_core.stream_params(params, progress_every, preview_every))
        response = await self._request("POST", f"/predictions/{self.model}", data=data,
                                       read_timeout=_core.read_timeout_for(sent, self.timeout), stream=True)
        return _aiter_events(response)

    async def health(self) -> Dict[str, Any]:
        """``GET /ping``, as :meth:`StyleTransferClient.health` (same result and errors)."""
        response = await self._request("GET", "/ping")
        return _core.json_object(response.content, response.headers, response)

    async def info(self) -> ModelInfo:
        """Describe the served model, as :meth:`StyleTransferClient.info` (same request,
        result and errors)."""
        response = await self._request("GET", f"/models/{self.model}?customized=true",
                                       base_url=self.management_url, credentials=self._management.get())
        return _core.model_info(response.content, response.headers, response)

    async def aclose(self) -> None:
        """Close the connection pool. Safe to call more than once."""
        await self._client.aclose()

    async def __aenter__(self) -> AsyncStyleTransferClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        auth = "set" if self._credentials.token else "none"
        return f"AsyncStyleTransferClient(base_url={self.base_url!r}, model={self.model!r}, token={auth})"

    # ------------------------------------------------------------------ internals

    async def _request(self, method: str, path: str, *, data: Optional[bytes] = None,
                       read_timeout: Optional[float] = None, stream: bool = False,
                       base_url: Optional[str] = None,
                       credentials: Optional[Credentials] = None) -> httpx.Response:
        """Send with the retry policy of ``_core.Attempts``; return the first answer below
        400, else raise its error. Arguments as the sync client's ``_request``; with
        ``stream`` the body is left unread and the caller must ``aclose()`` the response."""
        hx = _httpx()
        read_timeout = self.timeout if read_timeout is None else read_timeout
        url = (base_url or self.base_url) + path
        credentials = credentials or self._credentials
        # httpx's read timeout is per socket read, as requests' is; waiting for a pooled
        # connection is not limited (concurrent calls beyond the pool size queue).
        timeout = hx.Timeout(read_timeout, connect=self.connect_timeout, pool=None)
        attempts = Attempts(self.max_retries, credentials)
        while True:
            headers = _core.request_headers(credentials, json_body=data is not None, stream=stream)
            try:
                request = self._client.build_request(method, url, content=data, headers=headers, timeout=timeout)
                response: httpx.Response = await self._client.send(request, stream=stream)
            except (hx.TransportError, hx.InvalidURL) as exc:
                kind = _failure(exc)
                failed = _core.transport_error(kind, url, exc, connect_timeout=self.connect_timeout,
                                               read_timeout=read_timeout)
                delay = attempts.after_failure(kind, failed, exc)
            else:
                if response.status_code < 400:
                    return response
                try:
                    content = await response.aread()
                except hx.TransportError:
                    content = b""  # the error body broke off: the status still says enough
                finally:
                    await response.aclose()
                error = _core.status_error(response.status_code, response.headers, content,
                                           response.reason_phrase, response)
                delay = attempts.after_status(error)
            if delay > 0:
                await _sleep(delay)

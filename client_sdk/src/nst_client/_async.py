"""The asyncio client, on ``httpx`` (the ``async`` extra: ``pip install 'nst-client[async]'``).

It shares everything but the transport with :class:`StyleTransferClient`: the constructor and
request building (``_base_client``, ``_request``), error mapping, the retry loop (``_retry``) and
the stream decoding (``_stream``). httpx is imported when a client is created, so
``import nst_client`` works without it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, AsyncGenerator, Dict

from ._base_client import BaseClient
from ._constants import ASYNC_EXTRA_INSTALL
from ._exceptions import Failure, MissingDependencyError, status_error, stream_transport_error
from ._images import ImageInput, StyleInput
from ._jobs import AsyncJob, job_status
from ._params import StreamArgs, StylizeArgs, keyword_signature
from ._plan import Plan, plan_result
from ._request import Request
from ._results import ModelInfo, StylizeResult, json_object, model_info, stylize_result
from ._retry import Outcome, arun, attempts
from ._stream import EventDecoder, StreamEvent, aconsume, require_tqdm

if TYPE_CHECKING:
    import httpx
    from typing_extensions import Unpack

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
            f"AsyncStyleTransferClient needs httpx: {ASYNC_EXTRA_INSTALL}") from exc
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
    """The events of a 200 streamed answer (see ``_stream.EventDecoder``); closes the response
    when finished or closed (``aclose()``). Transport failures mid-body become SDK errors."""
    hx = _httpx()
    try:
        decoder = EventDecoder(response.headers, response)
        url = str(response.url)
        try:
            async for chunk in response.aiter_bytes():
                for event in decoder.feed(chunk):
                    yield event
                if decoder.done:
                    return
        except hx.TimeoutException as exc:
            raise stream_transport_error(True, url, exc) from exc
        except hx.TransportError as exc:
            raise stream_transport_error(False, url, exc) from exc
        for event in decoder.close():
            yield event
    finally:
        await response.aclose()


class AsyncStyleTransferClient(BaseClient):
    """The :class:`StyleTransferClient` for ``asyncio``, built on httpx.

    Same constructor, same configuration order (base URL, token, key file, management URL
    and key), same requests, errors, retries and timeouts; the methods are coroutines.
    Calls may run concurrently on one client (they share its connection pool). Use it in
    one event loop, as ``async with``, or call :meth:`aclose`.

    Example::

        async with AsyncStyleTransferClient() as client:
            results = await asyncio.gather(*(client.stylize("photo.jpg", s, iterations=100)
                                             for s in ("starry_night.jpg", "the_scream.jpg")))

    Raises:
        MissingDependencyError: httpx is not installed (``pip install 'nst-client[async]'``).
    """

    def _require_transport(self) -> None:
        _httpx()

    def _open(self) -> None:
        # Redirects are followed as requests does; each request sets its own timeouts.
        self._client = _httpx().AsyncClient(follow_redirects=True)

    @keyword_signature(StylizeArgs)
    async def stylize(self, content: ImageInput, style: StyleInput, *, progress: bool = False,
                      **params: Unpack[StylizeArgs]) -> StylizeResult:
        """Render ``content`` in the style of ``style``: :meth:`StyleTransferClient.stylize`
        (same arguments, request, result and errors) as a coroutine.

        Reading and encoding the input images runs in a worker thread
        (``asyncio.to_thread``), so large inputs do not block the event loop.
        ``progress=True`` shows the same tqdm bar, fed by :meth:`stylize_stream`.
        """
        if progress:
            require_tqdm()  # fail before a minutes-long job is started
            events = await self.stylize_stream(content, style, **params)
            try:
                return await aconsume(events, progress=True)
            finally:
                await events.aclose()
        request = await asyncio.to_thread(self._stylize_request, content, style, params)
        response = await self._send(request)
        return stylize_result(json_object(response.content, response.headers, response), response)

    @keyword_signature(StreamArgs)
    async def stylize_stream(self, content: ImageInput, style: StyleInput,
                             **params: Unpack[StreamArgs]) -> AsyncGenerator[StreamEvent, None]:
        """:meth:`StyleTransferClient.stylize_stream` for asyncio: awaiting it sends the
        request (raising what is answered before streaming begins, after the same retries) and
        returns an async iterator of the same events.

        Example::

            events = await client.stylize_stream("photo.jpg", "style.jpg", iterations=300, progress_every=10)
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
        request = await asyncio.to_thread(self._stylize_request, content, style, params, stream=True)
        return _aiter_events(await self._send(request))

    @keyword_signature(StylizeArgs)
    async def submit(self, content: ImageInput, style: StyleInput, **params: Unpack[StylizeArgs]) -> AsyncJob:
        """Submit a job, as :meth:`StyleTransferClient.submit` (same request, retries and
        errors); the :class:`AsyncJob`'s calls are coroutines."""
        request = await asyncio.to_thread(self._submit_request, content, style, params)
        response = await self._send(request)
        status = job_status(json_object(response.content, response.headers, response), response)
        return AsyncJob(self, status.id, status)

    @keyword_signature(StylizeArgs)
    async def plan(self, content: ImageInput, style: StyleInput, **params: Unpack[StylizeArgs]) -> Plan:
        """Ask for the plan of ``stylize(content, style, **params)`` without running it, as
        :meth:`StyleTransferClient.plan` (same request, :class:`Plan` and errors)."""
        request = await asyncio.to_thread(self._plan_request, content, style, params)
        response = await self._send(request)
        return plan_result(json_object(response.content, response.headers, response), response)

    def job(self, job_id: str) -> AsyncJob:
        """The :class:`AsyncJob` with this id (nothing is sent), as :meth:`StyleTransferClient.job`."""
        return AsyncJob(self, job_id)

    async def health(self) -> Dict[str, Any]:
        """``GET /ping``, as :meth:`StyleTransferClient.health` (same result and errors)."""
        response = await self._send(self._health_request())
        return json_object(response.content, response.headers, response)

    async def info(self) -> ModelInfo:
        """Describe the served model, as :meth:`StyleTransferClient.info` (same request,
        result and errors)."""
        response = await self._send(self._info_request())
        return model_info(response.content, response.headers, response)

    async def aclose(self) -> None:
        """Close the connection pool. Safe to call more than once."""
        await self._client.aclose()

    async def __aenter__(self) -> AsyncStyleTransferClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def _send(self, request: Request) -> httpx.Response:
        """Send ``request`` through the retry loop (``_retry.attempts``), as the sync client's
        ``_send``; with ``request.stream`` the caller must ``aclose()`` the response."""
        response: httpx.Response = await arun(attempts(request, self._retries(request), self.connect_timeout),
                                              lambda headers: self._attempt(request, headers), _sleep)
        return response

    async def _attempt(self, request: Request, headers: Dict[str, str]) -> Outcome:
        """Send ``request`` once and report what came back (an error answer's body read and closed)."""
        hx = _httpx()
        # httpx's read timeout is per socket read, as requests' is; waiting for a pooled
        # connection is not limited (concurrent calls beyond the pool size queue).
        timeout = hx.Timeout(request.read_timeout, connect=self.connect_timeout, pool=None)
        try:
            built = self._client.build_request(request.method, request.url, content=request.data,
                                               headers=headers, timeout=timeout)
            response: httpx.Response = await self._client.send(built, stream=request.stream)
        except (hx.TransportError, hx.InvalidURL) as exc:
            return Outcome(failure=_failure(exc), detail=exc, cause=exc)
        if response.status_code < 400:
            return Outcome(response=response)
        try:
            content = await response.aread()
        except hx.TransportError:
            content = b""  # the error body broke off: the status still says enough
        finally:
            await response.aclose()
        return Outcome(error=status_error(response.status_code, response.headers, content,
                                          response.reason_phrase, response))

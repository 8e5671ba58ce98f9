"""The synchronous client, on ``requests``.

What is sent (``_request``, ``_base_client``), what answers mean (``_exceptions``, ``_results``,
``_stream``) and when to retry (``_retry``) are shared with the async client; this module only
moves the bytes: one attempt (:meth:`StyleTransferClient._attempt`) and the stream's chunks.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Dict, Iterator, Tuple

import requests

from ._base_client import BaseClient
from ._constants import STREAM_CHUNK_SIZE
from ._exceptions import Failure, status_error, stream_transport_error
from ._images import ImageInput, StyleInput
from ._jobs import Job, job_status
from ._params import StreamArgs, StylizeArgs, keyword_signature
from ._plan import Plan, plan_result
from ._request import Request
from ._results import ModelInfo, StylizeResult, json_object, model_info, stylize_result
from ._retry import Outcome, attempts, run
from ._sessions import SessionPool
from ._stream import EventDecoder, StreamEvent, consume, require_tqdm

if TYPE_CHECKING:
    from typing_extensions import Unpack

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
    """The events of a 200 streamed answer (see ``_stream.EventDecoder``); closes the response
    when finished or closed. Transport failures mid-body become SDK errors."""
    with response:
        decoder = EventDecoder(response.headers, response)
        try:
            for chunk in response.iter_content(chunk_size=STREAM_CHUNK_SIZE):
                yield from decoder.feed(chunk)
                if decoder.done:
                    return
        except requests.exceptions.ConnectionError as exc:
            raise stream_transport_error(_is_read_timeout(exc), response.url, exc) from exc
        except requests.exceptions.RequestException as exc:  # ChunkedEncodingError, ...
            raise stream_transport_error(False, response.url, exc) from exc
        yield from decoder.close()


class StyleTransferClient(BaseClient):
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
    One client may serve several threads at once (each call in flight has a ``requests``
    session of its own); :func:`stylize_many` runs many calls N at a time over one client.
    :class:`AsyncStyleTransferClient` is the same client for ``asyncio``.

    Example::

        with StyleTransferClient() as client:
            result = client.stylize("photo.jpg", "starry_night.jpg", image_size=512, iterations=300)
            result.save("out.png")
    """

    def _open(self) -> None:
        self._sessions = SessionPool()

    @keyword_signature(StylizeArgs)
    def stylize(self, content: ImageInput, style: StyleInput, *, progress: bool = False,
                **params: Unpack[StylizeArgs]) -> StylizeResult:
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
            progress: Show a tqdm progress bar on ``sys.stderr`` while the server works: the
                call then goes through :meth:`stylize_stream` (``progress_every`` and
                ``preview_every`` are passed on to it, though type checkers know them on
                :meth:`stylize_stream` only). Needs the ``progress`` extra
                (``pip install 'nst-client[progress]'``).
            **params: The request parameters (``StylizeParams``, each documented with its unit
                in ``nst_client._params``), the image fields (``StylizeImages``:
                ``init_image``, ``content_mask``, ``style_masks``, sent top-level), and further
                server parameters, sent as given.

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

        ``dry_run`` is not a keyword of ``stylize``: :meth:`plan` asks for the plan, and
        ``dry_run=True`` passed here anyway raises ``ValueError`` (naming :meth:`plan`) before
        anything is sent. The same holds for :meth:`stylize_stream` and :meth:`submit`.
        """
        if progress:
            require_tqdm()  # fail before a minutes-long job is started
            return consume(self.stylize_stream(content, style, **params), progress=True)
        response = self._send(self._stylize_request(content, style, params))
        return stylize_result(json_object(response.content, response.headers, response), response)

    @keyword_signature(StreamArgs)
    def stylize_stream(self, content: ImageInput, style: StyleInput,
                       **params: Unpack[StreamArgs]) -> Iterator[StreamEvent]:
        """Like :meth:`stylize`, but yield progress (and preview) events while the server works.

        The request is the one :meth:`stylize` sends, with ``params.stream = true`` and the
        two intervals below. It is sent when this method is called, so local input errors and
        errors answered before streaming begins (bad parameters, authentication, ...) are
        raised here, with the same retries as :meth:`stylize`. The client's ``timeout`` is
        then the longest wait between two chunks of the stream.

        Example::

            for event in client.stylize_stream("photo.jpg", "style.jpg", iterations=300, preview_every=50):
                if isinstance(event, ProgressEvent):
                    print(event.iteration, event.of, event.losses["total"], event.eta_s)
                elif isinstance(event, PreviewEvent):
                    event.save(f"preview_{event.iteration}.jpg")
                else:  # ResultEvent, always the last one
                    event.result.save("out.png")

        Args:
            content: Content image, as for :meth:`stylize`.
            style: One style image or a list/tuple of them, as for :meth:`stylize`.
            **params: The keywords of :meth:`stylize` (request parameters, image fields, further
                server parameters), and the two intervals (``StreamParams``):
                ``progress_every``, iterations between progress events (>= 1; server default
                10), and ``preview_every``, iterations between preview events (>= 0; ``0``, the
                server default, sends none).

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
        response = self._send(self._stylize_request(content, style, params, stream=True))
        return _iter_events(response)

    @keyword_signature(StylizeArgs)
    def submit(self, content: ImageInput, style: StyleInput, **params: Unpack[StylizeArgs]) -> Job:
        """Submit ``stylize(content, style, **params)`` as a job: the server answers at once
        (202) with the job's id and place in the queue; follow it with the :class:`Job`.

        The body is :meth:`stylize`'s with ``job = {"action": "submit"}``. A full queue
        (503 ``queue_full``) is retried after its ``Retry-After``, within ``max_retries``.

        Example::

            job = client.submit("photo.jpg", "starry_night.jpg", image_size=512, iterations=300)
            print(job.id, job.last_status.position)
            job.wait(timeout=3600).save("out.png")

        Args:
            content: Content image, as for :meth:`stylize`.
            style: One style image or a list/tuple of them, as for :meth:`stylize`.
            **params: The keywords of :meth:`stylize` (request parameters, image fields,
                further server parameters); a job is never streamed.

        Returns:
            The :class:`Job`, its ``last_status`` the submit's answer.

        Raises:
            TypeError, FileNotFoundError, ValueError: As for :meth:`stylize`.
            ServiceUnavailableError: The queue stayed full (``code == "queue_full"``).
            APIStatusError, APIConnectionError: As for :meth:`stylize`.
            APIResponseValidationError: The answer holds no job status.
        """
        response = self._send(self._submit_request(content, style, params))
        status = job_status(json_object(response.content, response.headers, response), response)
        return Job(self, status.id, status)

    @keyword_signature(StylizeArgs)
    def plan(self, content: ImageInput, style: StyleInput, **params: Unpack[StylizeArgs]) -> Plan:
        """Ask what ``stylize(content, style, **params)`` would do and need, without running it:
        the server answers at once with its plan (each level's size in pixels, tiles, L-BFGS
        history, estimated peak memory in bytes and seconds), or with the 4xx the run would get.

        The body is :meth:`stylize`'s with ``params.dry_run = true``; the inputs are sent, as
        the output's size follows from the content image. Nothing is queued or optimized, so the
        read timeout is the client's ``timeout`` (not shortened by ``time_budget_s``).

        Example::

            plan = client.plan("photo.jpg", "starry_night.jpg", image_size=4096, scales=3)
            for level in plan.levels:
                print(level.side, level.tiles, level.peak_memory_bytes / 2**30, level.seconds)
            if plan.memory_budget_bytes is not None and plan.peak_memory_bytes > plan.memory_budget_bytes:
                ...

        Args:
            content: Content image, as for :meth:`stylize`.
            style: One style image or a list/tuple of them, as for :meth:`stylize`.
            **params: The keywords of :meth:`stylize` (request parameters, image fields, further
                server parameters); a plan is never streamed.

        Returns:
            The :class:`Plan`.

        Raises:
            TypeError, FileNotFoundError, ValueError: As for :meth:`stylize`; also ``stream``
                given, or ``dry_run`` given as anything but ``True``.
            BadRequestError: The run would be refused, e.g. ``code == "over_memory_budget"``
                (``field`` ``"params.image_size"`` or ``"params.tile_size"``) or ``out_of_range``.
            APIStatusError, APIConnectionError: As for :meth:`stylize`.
            APIResponseValidationError: The answer is not a well-formed plan (e.g. a server that
                does not know ``dry_run`` and answered with an image).
        """
        response = self._send(self._plan_request(content, style, params))
        return plan_result(json_object(response.content, response.headers, response), response)

    def job(self, job_id: str) -> Job:
        """The :class:`Job` with this id, e.g. to follow it again after a reconnect or from
        another process. Nothing is sent: its ``status()`` tells whether the server knows it.

        Raises:
            ValueError: ``job_id`` is not a non-empty string.
        """
        return Job(self, job_id)

    def health(self) -> Dict[str, Any]:
        """Call ``GET /ping``.

        Returns:
            The decoded body, e.g. ``{"status": "Healthy"}``.

        Raises:
            APIStatusError: Non-2xx answer (TorchServe answers 500 when unhealthy).
            APIConnectionError: No answer.
            APIResponseValidationError: The body is not a JSON object.
        """
        response = self._send(self._health_request())
        return json_object(response.content, response.headers, response)

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
        response = self._send(self._info_request())
        return model_info(response.content, response.headers, response)

    def close(self) -> None:
        """Close the HTTP sessions' connections. Safe to call more than once."""
        self._sessions.close()

    def __enter__(self) -> StyleTransferClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _send(self, request: Request) -> requests.Response:
        """Send ``request`` through the retry loop (``_retry.attempts``): the first answer below
        400; else its error is raised. With ``request.stream`` the body is left unread and the
        caller must close the response."""
        response: requests.Response = run(attempts(request, self._retries(request), self.connect_timeout),
                                          lambda headers: self._attempt(request, headers), _sleep)
        return response

    def _attempt(self, request: Request, headers: Dict[str, str]) -> Outcome:
        """Send ``request`` once and report what came back (an error answer's body read and closed)."""
        try:
            with self._sessions.borrow() as session:
                response = session.request(
                    request.method, request.url, data=request.data, headers=headers,
                    timeout=(self.connect_timeout, request.read_timeout), stream=request.stream,
                )
        except requests.exceptions.RequestException as exc:
            kind, detail = _failure(exc)
            return Outcome(failure=kind, detail=detail, cause=exc)
        if response.status_code < 400:
            return Outcome(response=response)
        with response:
            try:
                content = response.content
            except requests.exceptions.RequestException:
                content = b""  # the error body broke off: the status still says enough
            return Outcome(error=status_error(response.status_code, response.headers, content,
                                              response.reason, response))

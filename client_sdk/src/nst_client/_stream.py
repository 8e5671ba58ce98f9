"""Streamed progress: the typed events, the NDJSON decoder that makes them from a streamed
answer (for both clients), and their consumers (:func:`consume`, :func:`aconsume`, the tqdm bar).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, AsyncIterable, Callable, Dict, Iterable, List, Mapping, Optional, Union

from PIL import Image

from ._constants import MAX_ERROR_TEXT, NDJSON_CONTENT_TYPE, PROGRESS_EXTRA_INSTALL
from ._exceptions import APIResponseValidationError, MissingDependencyError, stream_error
from ._images import b64decode, open_image, save_encoded
from ._results import StylizeResult

__all__ = ["ProgressEvent", "PreviewEvent", "ResultEvent", "StreamEvent", "EventDecoder", "parse_event",
           "consume", "aconsume", "require_tqdm"]


@dataclass(frozen=True)
class ProgressEvent:
    """Where the optimization stands (sent every ``progress_every`` iterations).

    Attributes:
        iteration: Iterations done so far (``0`` is the start).
        of: Iterations planned in total.
        losses: Current losses, ``{"content", "style", "tv", "total"}``.
        elapsed_s: Seconds of optimization so far.
        eta_s: Estimated seconds left, ``None`` while unknown.
    """

    iteration: int
    of: int
    losses: Dict[str, float]
    elapsed_s: float
    eta_s: Optional[float]


@dataclass(frozen=True)
class PreviewEvent:
    """A downscaled JPEG of the image at ``iteration`` (sent every ``preview_every`` iterations).

    Attributes:
        iteration: The iteration the preview shows.
        width: Preview width in pixels.
        height: Preview height in pixels.
        image_bytes: The JPEG exactly as received.
    """

    iteration: int
    width: int
    height: int
    image_bytes: bytes = field(repr=False)

    @cached_property
    def image(self) -> Image.Image:
        """The preview as a loaded ``PIL.Image.Image`` (decoded on first access)."""
        return open_image(self.image_bytes)

    def save(self, path: Union[str, os.PathLike[str]]) -> Path:
        """Write the preview to ``path``: the JPEG bytes as received for ``.jpg``/``.jpeg``,
        otherwise re-encoded by Pillow according to the suffix.

        Args:
            path: Destination file; its parent directory must exist.

        Returns:
            The path written, as a ``Path``.

        Raises:
            ValueError: Pillow does not know the suffix.
            OSError: The file cannot be written.
        """
        return save_encoded(self.image_bytes, "jpeg", path, lambda: self.image)


@dataclass(frozen=True)
class ResultEvent:
    """The final event of a successful stream.

    Attributes:
        result: The same :class:`StylizeResult` a non-streamed call returns.
    """

    result: StylizeResult


#: One event of :meth:`StyleTransferClient.stylize_stream`.
StreamEvent = Union[ProgressEvent, PreviewEvent, ResultEvent]


def media_type(headers: Mapping[str, str]) -> str:
    """The lower-cased media type of ``Content-Type`` without parameters (``""`` if absent)."""
    return headers.get("Content-Type", "").split(";")[0].strip().lower()


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


def require_tqdm() -> Any:
    """The ``tqdm`` class.

    Raises:
        MissingDependencyError: tqdm is not installed (an ``ImportError`` too).
    """
    try:
        from tqdm import tqdm
    except ImportError as exc:
        raise MissingDependencyError(
            f"progress bars need tqdm: {PROGRESS_EXTRA_INSTALL}") from exc
    return tqdm


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


class _ProgressBar:
    """A tqdm bar on ``sys.stderr`` driven by stream events (total = ``of``; postfix: the
    current total/style/content losses). Without ``enabled`` it does nothing."""

    def __init__(self, enabled: bool) -> None:
        self._tqdm = require_tqdm() if enabled else None
        self._bar: Any = None

    def update(self, event: StreamEvent) -> None:
        """Advance the bar to ``event``'s iteration (a :class:`ResultEvent` completes it)."""
        if self._tqdm is None:
            return
        if isinstance(event, ProgressEvent):
            if self._bar is None:
                self._bar = self._tqdm(total=event.of, unit="it", file=sys.stderr, dynamic_ncols=True)
            self._bar.total = event.of
            self._bar.set_postfix({k: _fmt(event.losses[k]) for k in ("total", "style", "content")
                                   if k in event.losses}, refresh=False)
            self._bar.update(max(0, event.iteration - self._bar.n))
        elif isinstance(event, ResultEvent) and self._bar is not None and event.result.iterations is not None:
            self._bar.update(max(0, min(event.result.iterations, self._bar.total) - self._bar.n))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def consume(events: Iterable[StreamEvent], *, progress: bool = False,
            on_event: Optional[Callable[[StreamEvent], None]] = None) -> StylizeResult:
    """Run a stream to its end and return the result.

    Args:
        events: The events of :meth:`StyleTransferClient.stylize_stream`.
        progress: Show a tqdm bar on ``sys.stderr`` (total = ``of``; postfix: the current
            total/style/content losses).
        on_event: Called with every event, in order (e.g. to save previews).

    Returns:
        The :class:`StylizeResult` of the final ``ResultEvent``.

    Raises:
        MissingDependencyError: ``progress`` is set but tqdm is not installed.
        APIResponseValidationError: The events ended without a result.
        NSTError: Whatever the stream raises.
    """
    bar = _ProgressBar(progress)
    try:
        for event in events:
            if on_event is not None:
                on_event(event)
            bar.update(event)
            if isinstance(event, ResultEvent):
                return event.result
    finally:
        bar.close()
    raise APIResponseValidationError("The stream ended without a result event")


async def aconsume(events: AsyncIterable[StreamEvent], *, progress: bool = False,
                   on_event: Optional[Callable[[StreamEvent], None]] = None) -> StylizeResult:
    """:func:`consume` for the async iterator of :meth:`AsyncStyleTransferClient.stylize_stream`
    (same arguments, result and errors)."""
    bar = _ProgressBar(progress)
    try:
        async for event in events:
            if on_event is not None:
                on_event(event)
            bar.update(event)
            if isinstance(event, ResultEvent):
                return event.result
    finally:
        bar.close()
    raise APIResponseValidationError("The stream ended without a result event")

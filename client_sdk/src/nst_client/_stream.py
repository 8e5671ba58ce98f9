"""Streamed progress: typed events, the NDJSON reader, and the tqdm progress bar."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, Optional, Union

from PIL import Image

from ._constants import NDJSON_CONTENT_TYPE, PROGRESS_EXTRA_INSTALL, STREAM_CHUNK_SIZE
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    MissingDependencyError,
    make_stream_error,
)
from ._types import StylizeResult

if TYPE_CHECKING:
    import requests

__all__ = ["ProgressEvent", "PreviewEvent", "ResultEvent", "StreamEvent"]


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
        from ._images import open_image

        return open_image(self.image_bytes)

    def save(self, path: Union[str, "os.PathLike[str]"]) -> Path:
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
        from ._images import save_encoded

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


def _int(obj: Dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f'"{key}" is not an integer')
    return value


def _float(obj: Dict[str, Any], key: str, *, optional: bool = False) -> Optional[float]:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f'"{key}" is not a number')
    return float(value)


def parse_event(obj: Dict[str, Any], response: Optional["requests.Response"] = None) -> Optional[StreamEvent]:
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
        from ._images import b64decode

        image = obj.get("image")
        if not isinstance(image, str) or not image:
            raise ValueError('preview has no "image" string')
        return PreviewEvent(iteration=_int(obj, "iteration"), width=_int(obj, "width"),
                            height=_int(obj, "height"), image_bytes=b64decode(image))
    if kind == "result":
        body = {k: v for k, v in obj.items() if k != "event"}
        return ResultEvent(StylizeResult.from_response(body))
    if kind == "error":
        raise make_stream_error(obj, response)
    return None


def _lines(response: "requests.Response") -> Iterator[bytes]:
    """The non-empty lines of a streaming body; transport failures become SDK errors."""
    import requests

    from ._client import _is_read_timeout

    url = response.url
    try:
        for line in response.iter_lines(chunk_size=STREAM_CHUNK_SIZE):
            if line.strip():
                yield line
    except requests.exceptions.ConnectionError as exc:
        if _is_read_timeout(exc):
            raise APITimeoutError(f"The stream from {url} stalled (no data within the read timeout)",
                                  url=url) from exc
        raise APIConnectionError(f"The stream from {url} broke off: {exc}", url=url) from exc
    except requests.exceptions.RequestException as exc:  # ChunkedEncodingError, ...
        raise APIConnectionError(f"The stream from {url} broke off: {exc}", url=url) from exc


def iter_events(response: "requests.Response") -> Iterator[StreamEvent]:
    """Read the events of a 200 streaming answer, ending with its :class:`ResultEvent`.

    An answer that is plain JSON instead of NDJSON (a server or proxy that did not stream)
    is read as the normal response body and yields just its ``ResultEvent``. The response is
    closed when the iterator finishes or is closed.

    Args:
        response: The response, opened with ``stream=True``.

    Yields:
        Progress and preview events in the server's order, then one ``ResultEvent``.

    Raises:
        APIStatusError: The stream carried an ``error`` event.
        APIResponseValidationError: A line is not a JSON object, an event is malformed, or
            the stream ended without a ``result`` event.
        APIConnectionError: The connection broke or stalled (``APITimeoutError``) mid-stream.
    """
    with response:
        ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            lines: Iterable[bytes] = [response.content]
        else:
            lines = _lines(response)
        for line in lines:
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise APIResponseValidationError(
                    f"Stream line is not JSON ({NDJSON_CONTENT_TYPE} expected)",
                    response=response, body=line[:500]) from exc
            if not isinstance(obj, dict):
                raise APIResponseValidationError("Stream line is not a JSON object", response=response, body=obj)
            if ctype == "application/json":
                obj = {**obj, "event": "result"}
            try:
                event = parse_event(obj, response)
            except ValueError as exc:
                raise APIResponseValidationError(
                    f"Malformed {obj.get('event')!r} event: {exc}", response=response, body=obj) from exc
            if event is not None:
                yield event
            if isinstance(event, ResultEvent):
                return
        raise APIResponseValidationError("The stream ended without a result event", response=response)


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
    tqdm = require_tqdm() if progress else None
    bar: Any = None
    try:
        for event in events:
            if on_event is not None:
                on_event(event)
            if isinstance(event, ProgressEvent) and tqdm is not None:
                if bar is None:
                    bar = tqdm(total=event.of, unit="it", file=sys.stderr, dynamic_ncols=True)
                bar.total = event.of
                bar.set_postfix({k: _fmt(event.losses[k]) for k in ("total", "style", "content")
                                 if k in event.losses}, refresh=False)
                bar.update(max(0, event.iteration - bar.n))
            elif isinstance(event, ResultEvent):
                if bar is not None and event.result.iterations is not None:
                    bar.update(max(0, min(event.result.iterations, bar.total) - bar.n))
                return event.result
    finally:
        if bar is not None:
            bar.close()
    raise APIResponseValidationError("The stream ended without a result event")

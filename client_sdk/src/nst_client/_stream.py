"""Streamed progress: the typed events and the tqdm progress bar.

The NDJSON stream is decoded into these events by ``nst_client._core.EventDecoder``, for both
clients.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, AsyncIterable, Callable, Dict, Iterable, Optional, Union

from PIL import Image

from ._constants import PROGRESS_EXTRA_INSTALL
from ._exceptions import APIResponseValidationError, MissingDependencyError
from ._types import StylizeResult

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

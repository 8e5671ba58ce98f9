"""Many ``stylize`` calls over one :class:`StyleTransferClient`, N at a time: the SDK's one
executor, on the base install (threads; no ``httpx`` needed). ``nst-client sweep`` and
``batch`` run on it. With the ``async`` extra, ``asyncio.gather`` over an
:class:`AsyncStyleTransferClient` does the same job in an event loop.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Generator, Generic, Iterable, Iterator, Optional, Set, TypeVar, Union

from ._client import StyleTransferClient
from ._images import ImageInput, StyleInput
from ._results import StylizeResult

__all__ = ["StylizeCall", "StylizeOutcome", "stylize_many"]

T = TypeVar("T")


@dataclass(frozen=True)
class StylizeCall(Generic[T]):
    """One call of :func:`stylize_many`: ``client.stylize(content, style, **params)``.

    Attributes:
        content: Content image, as for :meth:`StyleTransferClient.stylize`.
        style: One style image or a list of them, as for :meth:`StyleTransferClient.stylize`.
        params: The other keywords of ``stylize`` (request parameters, image fields); not
            ``progress``.
        save_to: When set, the result is written there (:meth:`StylizeResult.save`) by the
            thread that made the call, through a temporary file in the same directory renamed
            over it, so that a half-written image never stands under that name; a failure to
            write is the call's failure.
        tag: The caller's own name for the call, handed back in its :class:`StylizeOutcome`.
    """

    content: ImageInput
    style: StyleInput
    params: Dict[str, Any] = field(default_factory=dict)
    save_to: Optional[Union[str, os.PathLike[str]]] = None
    tag: Optional[T] = None


@dataclass(frozen=True)
class StylizeOutcome(Generic[T]):
    """How one :class:`StylizeCall` ended: ``result`` or ``error``, exactly one of them set.

    Attributes:
        call: The call.
        result: Its result, on success.
        error: What it raised (an :class:`NSTError`, or ``OSError``/``ValueError``/``TypeError``
            for an input that cannot be read or a ``save_to`` that cannot be written).
        elapsed_s: Seconds from sending the call to its answer (the ``save_to`` write not included).
    """

    call: StylizeCall[T]
    result: Optional[StylizeResult] = None
    error: Optional[Exception] = None
    elapsed_s: float = 0.0


#: What :func:`stylize_many` returns: a generator of outcomes (``close()`` ends the run early).
Outcomes = Generator[StylizeOutcome[T], None, None]


def stylize_many(client: StyleTransferClient, calls: Iterable[StylizeCall[T]], *, concurrency: int = 1,
                 stop_on: Optional[Callable[[Exception], bool]] = None) -> Outcomes[T]:
    """Run ``calls`` over ``client``, at most ``concurrency`` in flight at once (each in a worker
    thread; the server queues what its workers cannot take), and yield each one's outcome as it
    finishes.

    Calls start in the order given, a new one each time one finishes. A failure is yielded as
    the call's :class:`StylizeOutcome` (never raised); when ``stop_on(error)`` is true no further
    call is started, the calls in flight still finish and are yielded, and the calls never
    started are not. Leaving the iteration early (``break``, an exception, Ctrl-C, or
    ``close()``; use ``contextlib.closing`` so that it happens at once) starts no further call
    either; the calls in flight cannot be withdrawn from the server, so they run to their end
    in their threads (``save_to`` still written) and their outcomes are dropped.

    Example::

        calls = [StylizeCall("photo.jpg", s, {"iterations": 100}, save_to=f"out_{i}.png", tag=s)
                 for i, s in enumerate(["starry_night.jpg", "the_scream.jpg", "kanagawa.jpg"])]
        with StyleTransferClient() as client, closing(stylize_many(client, calls, concurrency=2)) as done:
            for outcome in done:
                print(outcome.call.tag, outcome.error or f"{outcome.elapsed_s:.1f} s")

    Args:
        client: The client; its calls may run in several threads at once.
        calls: The calls, started in this order.
        concurrency: Most calls in flight at once, >= 1.
        stop_on: Which failures stop the run; ``None``: none does.

    Returns:
        A generator of :class:`StylizeOutcome`, in finishing order (those that finish together in
        the order their calls were given).

    Raises:
        ValueError: ``concurrency`` is below 1 (at the call, before anything is sent).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, not {concurrency}")
    return _run_many(client, iter(calls), concurrency, stop_on)


def _run_many(client: StyleTransferClient, todo: Iterator[StylizeCall[T]], concurrency: int,
              stop_on: Optional[Callable[[Exception], bool]]) -> Outcomes[T]:
    """:func:`stylize_many`'s generator: keeps ``concurrency`` calls submitted (never more, so
    that nothing waits in a queue that a stop would have to empty)."""
    executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="nst-stylize-many")
    order: Dict[Future[StylizeOutcome[T]], int] = {}
    pending: Set[Future[StylizeOutcome[T]]] = set()
    stopped = False
    try:
        while True:
            while not stopped and len(pending) < concurrency:
                call = next(todo, None)
                if call is None:
                    break
                future = executor.submit(_call, client, call)
                order[future] = len(order)
                pending.add(future)
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=order.__getitem__):
                outcome = future.result()
                if outcome.error is not None and stop_on is not None and stop_on(outcome.error):
                    stopped = True
                yield outcome
    finally:
        # Nothing is queued (see above); the calls in flight finish in their threads.
        executor.shutdown(wait=False)


def _call(client: StyleTransferClient, call: StylizeCall[T]) -> StylizeOutcome[T]:
    """Make one call (in a worker thread) and write its result to ``call.save_to``."""
    start = time.monotonic()
    try:
        result = client.stylize(call.content, call.style, **call.params)
    except Exception as exc:
        return StylizeOutcome(call, error=exc, elapsed_s=time.monotonic() - start)
    elapsed = time.monotonic() - start
    if call.save_to is not None:
        path = Path(call.save_to)
        tmp = path.with_name(path.name + ".part" + path.suffix)  # the suffix picks the encoding
        try:
            result.save(tmp)
            os.replace(tmp, path)
        except Exception as exc:
            return StylizeOutcome(call, error=exc, elapsed_s=elapsed)
    return StylizeOutcome(call, result=result, elapsed_s=elapsed)

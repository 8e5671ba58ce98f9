"""Run one checked request on the worker's engine, as the job the desk gives it: tensors, the
optimization (reporting progress to the job store and, with ``stream``, to the client), the
encoding, the metrics and the answer's body."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from nst.cache import StyleTargets
from nst.images import encode_image
from nst.records import Iterate, Stopping
from nst.stylize import stylize
from nst_http import response
from nst_http.budget import LoopClock, release_cached_memory
from nst_http.errors import RequestError, from_engine_error, internal_error, is_out_of_memory

from .exchange import BatchRequest, Chunk, Send
from .worker import Worker

logger = logging.getLogger(__name__)


def run_request(worker: Worker, item: BatchRequest, job_id: str, send: Send) -> dict[str, Any] | RequestError:
    """Run request ``item`` (checked: ``item.request`` is set) as job ``job_id`` and build its
    answer: the result body, or the :class:`RequestError` its failure maps to (a failure is
    this request's alone; see :func:`failed`)."""
    request = item.request
    assert request is not None
    try:
        start = time.perf_counter()
        content, styles, images = request.tensors(worker.device)
        cancel, clock = threading.Event(), LoopClock(request.plan, worker.speed_curve)
        keys = request.style_keys()  # None: nothing of this request is cached
        targets = None if keys is None else StyleTargets(worker.style_cache, keys)
        result = stylize(content, styles, worker.features, request.options(), **images, plan=request.plan,
                         style_targets=targets, stopping=Stopping(cancel),
                         callback=watcher(worker, item, job_id, cancel, start, clock, send))
        optimized = time.perf_counter()
        worker.desk.measured(*clock.measured())
        image = encode_image(result.image, request.serving.output_format, alpha=request.output_alpha())
        encoded = time.perf_counter()
    except Exception as exc:
        return failed(item, exc)
    worker.metric("NSTIterations", result.iterations)
    worker.metric("NSTOutputPixels", result.image.shape[-1] * result.image.shape[-2])
    if result.iterations:
        worker.metric("NSTSecondsPerIteration", (optimized - start) / result.iterations, kind="gauge", unit="Seconds")
    worker.metric("NSTStyleCacheHits", result.cache_hits)
    worker.metric("NSTStyleCacheMisses", result.cache_misses)
    timings = {"decode": item.decode_ms, "optimize": (optimized - start) * 1e3, "encode": (encoded - optimized) * 1e3}
    logger.info("request %s: %s, %d iterations in %.0f ms", item.request_id, tuple(result.image.shape[-2:]),
                result.iterations, sum(timings.values()))
    return response.result_body(request, result, image, timings_ms=timings, weights=worker.provenance.label,
                                device=str(worker.device), request_id=item.request_id)


def watcher(worker: Worker, item: BatchRequest, job_id: str, cancel: threading.Event, started: float,
            clock: LoopClock, send: Send) -> Callable[[Iterate], None]:
    """A stylize() callback that records the job's progress in the store (and, for a submitted
    job, a preview every ``progress_every`` iterations), sets ``cancel`` when the store says the
    job was cancelled, and with ``stream`` sends the request's events as NDJSON chunks."""
    request = item.request
    assert request is not None
    submitted = item.job is not None

    def callback(it: Iterate) -> None:
        clock.tick(it)
        progress = response.progress_event(it, time.perf_counter() - started, request.plan)
        due = response.preview_due(request, it, submitted=submitted)
        preview = response.preview_event(it, request.serving.preview_size) if due else None
        if worker.desk.report(job_id, progress, preview):
            cancel.set()
        for event in response.stream_events(request, it, progress, preview) if request.serving.stream else ():
            first, item.streaming = not item.streaming, True
            send(Chunk(item.index, item.request_id, response.ndjson_line(event), response.NDJSON if first else None))

    return callback


def failed(item: BatchRequest, exc: Exception) -> RequestError:
    """The answer to request ``item``'s run, which raised ``exc``. After CUDA ran out of memory,
    the failed run's tensors (the locals of the frames it raised through) are dropped and the
    allocator's cache emptied, so that the worker serves the next request."""
    assert item.request is not None
    known = from_engine_error(exc, item.request.output_size)
    if known is None or known.status >= 500:
        logger.exception("request %s failed", item.request_id)
    if is_out_of_memory(exc):
        traceback.clear_frames(exc.__traceback__)
        release_cached_memory()
    return known or internal_error(item.request_id)

"""The service's stages over the requests of one batch: :meth:`StyleTransferService.batch`
(which KServe envelope, if any, unwrapped it), :meth:`~StyleTransferService.parse`,
:meth:`~StyleTransferService.answer` and :meth:`~StyleTransferService.replies`, which map onto
TorchServe's ``handle``, ``preprocess``, ``inference`` and ``postprocess``. Each request
succeeds or fails alone."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from nst_http import kserve, response
from nst_http.errors import PHRASES, RequestError, internal_error
from nst_http.jobs import SUBMIT, parse_job
from nst_http.request import decode_body, parse_request

from .exchange import BatchRequest, Metric, Reply, Send
from .run import run_request
from .worker import Worker, load_worker

logger = logging.getLogger(__name__)


class StyleTransferService:
    """Answers ``POST /predictions/nst`` (see ``docs/api.md``), plain or under TorchServe's
    KServe envelopes, for one worker (:class:`Worker`)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    @classmethod
    def start(cls, model_dir: Path, weights_file: str, config: dict[str, Any], *, gpu_id: int | None, name: str,
              metric: Metric) -> StyleTransferService:
        """Load a worker (:func:`nst_service.worker.load_worker`, whose errors it raises) and serve it."""
        return cls(load_worker(model_dir, weights_file, config, gpu_id=gpu_id, name=name, metric=metric))

    def describe(self) -> str:
        """The model's ``customizedMetadata`` (JSON text; see :meth:`Worker.describe`)."""
        return self.worker.describe()

    def batch(self, data: Sequence[Any] | None, *, input_names: Any, request_count: int,
              request_id: Callable[[int], str | None]) -> list[BatchRequest]:
        """The requests of TorchServe's batch ``data``, after noting which KServe envelope, if
        any, unwrapped it (see :mod:`nst_http.kserve`). ``request_id(i)``: TorchServe's id of the
        ``i``-th HTTP request (under an envelope every entry came in the first)."""
        envelope = kserve.envelope_of(data, input_names, request_count)
        if envelope == kserve.KSERVE_V1 and not data:
            return [BatchRequest(0, None, envelope, request_id(0), answer=kserve.NO_INSTANCES)]
        return [BatchRequest(i, raw, envelope, request_id(0 if envelope else i)) for i, raw in enumerate(data or [])]

    def parse(self, items: list[BatchRequest]) -> list[BatchRequest]:
        """Parse and check every request; a bad one gets its :class:`RequestError` as its answer."""
        worker = self.worker
        for item in items:
            if item.answer is not None:
                continue
            start = time.perf_counter()
            try:
                body = decode_body(kserve.row_body(item.envelope, item.index, item.raw))
                item.job = parse_job(body)
                if item.job is None or item.job.action == SUBMIT:
                    item.request = parse_request(body, defaults=worker.defaults, limits=worker.limits,
                                                 budget=worker.budget.working, network=worker.provenance.network)
                    kserve.check_row(item.envelope, stream=item.request.serving.stream)
                    if item.job is not None and item.request.serving.stream:
                        raise RequestError(400, "invalid_choice", "params.stream with a job: watch a job with its "
                                           "status calls", "params.stream")
            except RequestError as exc:
                item.answer = exc
            except Exception:
                logger.exception("request %s: validation failed unexpectedly", item.request_id)
                item.answer = internal_error(item.request_id)
            item.decode_ms = (time.perf_counter() - start) * 1e3
        return items

    def answer(self, items: list[BatchRequest], send: Send) -> list[BatchRequest]:
        """Answer every valid request: a job call at once, a submit once queued, a plain request
        once its job (queued like every other) has run, streaming its events through ``send``."""
        worker = self.worker
        for item in items:
            if item.answer is not None:
                continue
            try:
                run = partial(run_request, worker, item, send=send)
                work = worker.speed_curve.work(item.request.plan) if item.request is not None else 0
                if item.request is not None and item.request.serving.dry_run:
                    item.answer = response.plan_body(
                        item.request, seconds_per_work=worker.desk.seconds_per_work, curve=worker.speed_curve,
                        budget=worker.budget, weights=worker.provenance.label, device=str(worker.device),
                        request_id=item.request_id)
                elif item.job is None:
                    item.answer = worker.desk.wait(run, work)
                elif item.job.action == SUBMIT:
                    item.answer = worker.desk.submit(run, work)
                    item.status = 202
                else:
                    item.answer = worker.desk.call(item.job)
            except Exception:
                logger.exception("request %s failed", item.request_id)
                item.answer = internal_error(item.request_id)
        return items

    def replies(self, items: list[BatchRequest]) -> list[Reply]:
        """One reply per request (under an envelope: one for the one HTTP request; see
        :func:`nst_http.kserve.enveloped`), counting each outcome in ``NSTRequests``."""
        for item in items:
            status = item.answer.status if isinstance(item.answer, RequestError) else 200
            outcome = "ok" if status < 400 else "client_error" if status < 500 else "server_error"
            self.worker.metric("NSTRequests", 1, Outcome=outcome)
            if isinstance(item.answer, RequestError):
                logger.info("request %s (row %d) refused: %s %s", item.request_id, item.index, status, item.answer.code)
        if items[0].envelope:
            answers = [item.answer for item in items if item.answer is not None]
            out, failed = kserve.enveloped(items[0].envelope, answers, items[0].request_id)
            head = Reply(out[0], "application/json") if failed is None else Reply(
                out[0], "application/json", failed.status, failed.phrase, failed.headers)
            return [head, *(Reply(entry) for entry in out[1:])]  # the HTTP request's status and headers: index 0's
        return [_reply(item) for item in items]

    def close(self) -> None:
        """Stop the worker's job thread and close its store."""
        self.worker.desk.close()


def _reply(item: BatchRequest) -> Reply:
    """Request ``item``'s reply: the stream's last line, or a JSON body with its status."""
    assert item.answer is not None
    if item.streaming:  # the status line (200) went out with the first chunk: the end is in-band
        return Reply(response.ndjson_line(response.final_event(item.answer, item.request_id)))
    if isinstance(item.answer, RequestError):
        body = json.dumps(item.answer.body(request_id=item.request_id))
        return Reply(body, "application/json", item.answer.status, item.answer.phrase, item.answer.headers)
    status = None if item.status == 200 else item.status
    return Reply(json.dumps(item.answer), "application/json", status, PHRASES.get(item.status, ""))

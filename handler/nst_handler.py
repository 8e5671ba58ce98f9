"""TorchServe handler: the adapter between TorchServe and the HTTP contract (``nst_http``) and
the engine (``nst``).

The only TorchServe-aware module: it reads the worker's context (device, config, request ids),
sets statuses and content types, sends stream chunks and emits metrics. What a request and an
answer are is ``nst_http``'s; how a picture is made is ``nst``'s. Each row of a batch travels
through the three stages as one :class:`Row`, and succeeds or fails alone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import torch
from nst.cache import StyleCache
from nst.images import encode_image
from nst.records import Iterate
from nst.stylize import stylize
from nst.weights import PROVENANCE_FILE, load_features, read_provenance
from nst_http import kserve, response
from nst_http.batch import Row
from nst_http.budget import LoopClock, measure_budget, measure_speed, release_cached_memory
from nst_http.desk import JobDesk
from nst_http.errors import PHRASES, RequestError, from_engine_error, internal_error, is_out_of_memory
from nst_http.jobs import SUBMIT, JobSettings, parse_job
from nst_http.params import Limits, parse_params
from nst_http.request import decode_body, parse_request
from ts.handler_utils.utils import send_intermediate_predict_response
from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler

logger = logging.getLogger(__name__)


class NSTHandler(BaseHandler):
    """Serves ``POST /predictions/nst`` (see ``docs/api.md``), also through TorchServe's KServe
    envelopes (``service_envelope=kserve`` or ``kservev2``).

    Configuration comes from the ``handler:`` section of ``model-config.yaml``: ``limits``
    (:class:`nst_http.params.Limits` fields), ``defaults`` (parameter defaults), ``torch_threads``
    and ``style_cache_size`` (entries of the per-worker style-target LRU cache; 0 disables it).
    """

    def initialize(self, context: Any) -> None:
        """Load the VGG features (the network and input convention their provenance records)
        from the archive onto ``cuda:<gpu_id>`` or the CPU. ``BaseHandler.initialize`` is not
        called: we load a state dict ourselves (``weights_only=True``, so the archive cannot run
        code on load).

        Raises:
            ValueError: the weights file does not match its provenance, or the handler config is invalid.
        """
        self.context = context
        props = context.system_properties
        model_dir = Path(props["model_dir"])
        config = (context.model_yaml_config or {}).get("handler", {}) or {}
        self.limits = Limits(**config.get("limits", {}))
        self.defaults = dict(config.get("defaults", {}))
        self.provenance = read_provenance(model_dir / PROVENANCE_FILE)
        try:  # unknown names, bad values and layers the served network lacks fail here
            self.effective_defaults = parse_params(self.defaults, limits=self.limits, network=self.provenance.network)
        except RequestError as exc:
            raise ValueError(f"model-config.yaml handler.defaults: {exc.message}") from None
        self.style_cache = StyleCache(int(config.get("style_cache_size", 32)))
        if config.get("torch_threads"):
            torch.set_num_threads(int(config["torch_threads"]))
        self.device = worker_device(props.get("gpu_id"))
        weights_path = model_dir / context.manifest["model"]["serializedFile"]
        self.features = load_features(weights_path, self.provenance).to(self.device)
        self.budget = measure_budget(self.limits.memory_budget_mb, self.device)
        jobs = JobSettings.from_config(config.get("jobs") or {}, os.environ)
        self.desk = JobDesk(jobs, f"{socket.gethostname()}:{_worker_slot()}", str(self.device),
                            on_state=lambda state: self._metric("NSTJobs", 1, State=state),
                            on_wait=lambda s: self._metric("NSTJobQueueSeconds", s, kind=MetricTypes.GAUGE,
                                                           unit="Seconds"))
        self.speed_curve, *first = measure_speed(self.features, self.device)  # figures for the first estimates
        self.desk.measured(*first)
        logger.info("NST model loaded: weights %s (%s, %s input) on %s, %d torch threads, memory budget %.1f GiB "
                    "(%.1f GiB held), %.3g s per megapixel-iteration at %d px, x (pixels / that) ^ %.3f",
                    self.provenance.label, self.provenance.network, self.provenance.input_convention, self.device,
                    torch.get_num_threads(), self.budget.total / 2**30, self.budget.baseline / 2**30,
                    (self.desk.seconds_per_work or 0) * 1e6, self.speed_curve.reference, self.speed_curve.exponent)
        self.initialized = True

    def handle(self, data: list[Any] | None, context: Any) -> list[Any]:
        """``BaseHandler.handle`` over :class:`Row` records, after noting which KServe envelope,
        if any, unwrapped the batch (see :mod:`nst_http.kserve`).

        Returns:
            One entry per row: JSON text without an envelope and under ``kservev2``, a JSON
            object (dict) under ``kserve``.
        """
        self.context = context
        if self._is_describe():  # GET /models/nst?customized=true: no rows to read
            return super().handle(data, context)
        envelope = kserve.envelope_of(data, getattr(context, "input_names", None), len(context.request_ids or {}))
        if envelope == kserve.KSERVE_V1 and not data:
            return self.postprocess([Row(0, None, envelope, context.get_request_id(0), answer=kserve.NO_INSTANCES)])
        rows = [Row(i, raw, envelope, context.get_request_id(0 if envelope else i)) for i, raw in enumerate(data or [])]
        return super().handle(rows, context)

    def preprocess(self, data: list[Row]) -> list[Row]:
        """Parse and check every row; a bad row gets its :class:`RequestError` as its answer."""
        for row in data:
            start = time.perf_counter()
            try:
                body = decode_body(kserve.row_body(row.envelope, row.index, row.raw))
                row.job = parse_job(body)
                if row.job is None or row.job.action == SUBMIT:
                    row.request = parse_request(body, defaults=self.defaults, limits=self.limits, budget=self.budget.working,
                                                network=self.provenance.network)
                    kserve.check_row(row.envelope, stream=row.request.serving.stream)
                    if row.job is not None and row.request.serving.stream:
                        raise RequestError(400, "invalid_choice", "params.stream with a job: watch a job with its "
                                           "status calls", "params.stream")
            except RequestError as exc:
                row.answer = exc
            except Exception:
                logger.exception("request %s: validation failed unexpectedly", row.request_id)
                row.answer = internal_error(row.request_id)
            row.decode_ms = (time.perf_counter() - start) * 1e3
        return data

    def inference(self, data: list[Row], *args: Any, **kwargs: Any) -> list[Row]:
        """Answer every valid row: a job call at once, a submit once queued, a plain request once
        its job (queued like every other) has run. A failure of one row is its answer alone."""
        for row in data:
            if row.answer is not None:
                continue
            try:
                run = partial(self._run, row)
                work = self.speed_curve.work(row.request.plan) if row.request is not None else 0
                if row.request is not None and row.request.serving.dry_run:
                    row.answer = response.plan_body(row.request, seconds_per_work=self.desk.seconds_per_work,
                                                     curve=self.speed_curve, budget=self.budget, weights=self.provenance.label,
                                                     device=str(self.device), request_id=row.request_id)
                elif row.job is None:
                    row.answer = self.desk.wait(run, work)
                elif row.job.action == SUBMIT:
                    row.answer = self.desk.submit(run, work)
                    row.status = 202
                else:
                    row.answer = self.desk.call(row.job)
            except Exception:
                logger.exception("request %s failed", row.request_id)
                row.answer = internal_error(row.request_id)
        return data

    def postprocess(self, data: list[Row]) -> list[Any]:
        """One answer per row with its status and content type (under an envelope: one status
        for the one HTTP request; see :func:`nst_http.kserve.enveloped`)."""
        for row in data:
            status = row.answer.status if isinstance(row.answer, RequestError) else 200
            self._metric("NSTRequests", 1, Outcome="ok" if status < 400 else "client_error" if status < 500 else "server_error")
            if isinstance(row.answer, RequestError):
                logger.info("request %s (row %d) refused: %s %s", row.request_id, row.index, status, row.answer.code)
        answers = [row.answer for row in data if row.answer is not None]
        if data[0].envelope:
            out, failed = kserve.enveloped(data[0].envelope, answers, data[0].request_id)
            self.context.set_response_content_type(0, "application/json")
            if failed is not None:
                self.context.set_response_status(failed.status, failed.phrase, 0)
                for key, value in failed.headers.items():
                    self.context.set_response_header(0, key, value)
            return out
        return [self._answer(row) for row in data]

    def _answer(self, row: Row) -> str:
        """Row ``row``'s answer as text: the stream's last line, or a JSON body with its status."""
        assert row.answer is not None
        if row.streaming:  # the status line (200) went out with the first chunk: the end is in-band
            return response.ndjson_line(response.final_event(row.answer, row.request_id))
        self.context.set_response_content_type(row.index, "application/json")
        if isinstance(row.answer, RequestError):
            self.context.set_response_status(row.answer.status, row.answer.phrase, row.index)
            for key, value in row.answer.headers.items():
                self.context.set_response_header(row.index, key, value)
            return json.dumps(row.answer.body(request_id=row.request_id))
        if row.status != 200:
            self.context.set_response_status(row.status, PHRASES.get(row.status, ""), row.index)
        return json.dumps(row.answer)

    def describe_handle(self) -> str:
        """``customizedMetadata`` of ``GET /models/nst?customized=true``: the served weights'
        provenance, the network's layer names, the device, the limits (the memory budget as in
        force: configured, or the device's share) and the effective defaults."""
        return json.dumps({"weights": asdict(self.provenance), "layers": list(self.features.layer_names),
                           "device": str(self.device), "limits": asdict(self.limits) | {"memory_budget_mb": self.budget.total // 2**20},
                           "defaults": self.effective_defaults})

    def _watcher(self, row: Row, job_id: str, cancel: threading.Event, started: float,
                 clock: LoopClock) -> Callable[[Iterate], None]:
        """A stylize() callback that records the job's progress in the store (and, for a
        submitted job, a preview every ``progress_every`` iterations), sets ``cancel`` when the
        store says the job was cancelled, and with ``stream`` sends the row's events as NDJSON
        chunks through TorchServe's intermediate responses (each resets ``responseTimeout``)."""
        assert row.request is not None
        request = row.request
        submitted = row.job is not None

        def callback(it: Iterate) -> None:
            clock.tick(it)
            progress = response.progress_event(it, time.perf_counter() - started, request.plan)
            due = response.preview_due(request, it, submitted=submitted)
            preview = response.preview_event(it, request.serving.preview_size) if due else None
            if self.desk.report(job_id, progress, preview):
                cancel.set()
            for event in response.stream_events(request, it, progress, preview) if request.serving.stream else ():
                if not row.streaming:
                    self.context.set_response_content_type(row.index, response.NDJSON)
                    row.streaming = True
                send_intermediate_predict_response({row.index: response.ndjson_line(event)}, {row.index: row.request_id},
                                                   "Intermediate Prediction success", 200, self.context)

        return callback

    def _metric(self, name: str, value: float, *, kind: MetricTypes = MetricTypes.COUNTER, unit: str = "Count",
                **dims: str) -> None:
        """Emit a model metric declared in ``handler/metrics.yaml`` (same name and dimensions)."""
        dimensions = [Dimension("ModelName", self.context.model_name), Dimension("Level", "Model")]
        dimensions += [Dimension(k, v) for k, v in dims.items()]
        self.context.metrics.add_metric(name, value, unit, None, dimensions, kind)

    def _run(self, row: Row, job_id: str) -> dict[str, Any] | RequestError:
        """Run the engine on one checked row (job ``job_id``) and build its answer."""
        request = row.request
        assert request is not None
        try:
            start = time.perf_counter()
            content, styles, images = request.tensors(self.device)
            cancel, clock = threading.Event(), LoopClock(request.plan, self.speed_curve)
            result = stylize(content, styles, self.features, request.options(), **images, plan=request.plan,
                             cache=self.style_cache, style_keys=request.style_keys(), cancel=cancel,
                             callback=self._watcher(row, job_id, cancel, start, clock))
            optimized = time.perf_counter()
            self.desk.measured(*clock.measured())
            image = encode_image(result.image, request.serving.output_format, alpha=request.output_alpha())
            encoded = time.perf_counter()
        except Exception as exc:
            return self._failed(row, exc)
        self._metric("NSTIterations", result.iterations)
        self._metric("NSTOutputPixels", result.image.shape[-1] * result.image.shape[-2])
        if result.iterations:
            self._metric("NSTSecondsPerIteration", (optimized - start) / result.iterations, kind=MetricTypes.GAUGE,
                         unit="Seconds")
        self._metric("NSTStyleCacheHits", result.cache_hits)
        self._metric("NSTStyleCacheMisses", result.cache_misses)
        timings = {"decode": row.decode_ms, "optimize": (optimized - start) * 1e3, "encode": (encoded - optimized) * 1e3}
        logger.info("request %s: %s, %d iterations in %.0f ms", row.request_id, tuple(result.image.shape[-2:]),
                    result.iterations, sum(timings.values()))
        return response.result_body(request, result, image, timings_ms=timings, weights=self.provenance.label,
                                    device=str(self.device), request_id=row.request_id)

    def _failed(self, row: Row, exc: Exception) -> RequestError:
        """The answer to row ``row``'s run, which raised ``exc``. After CUDA ran out of memory,
        the failed run's tensors (the locals of the frames it raised through) are dropped and
        the allocator's cache emptied, so that the worker serves the next request."""
        assert row.request is not None
        known = from_engine_error(exc, row.request.output_size)
        if known is None or known.status >= 500:
            logger.exception("request %s failed", row.request_id)
        if is_out_of_memory(exc):
            traceback.clear_frames(exc.__traceback__)
            release_cached_memory()
        return known or internal_error(row.request_id)


def worker_device(gpu_id: int | None) -> torch.device:
    """The device of a worker that TorchServe gave ``gpu_id`` (``None`` on a CPU host):
    ``cuda:<gpu_id>`` where CUDA is available, else the CPU."""
    return torch.device(f"cuda:{gpu_id}" if gpu_id is not None and torch.cuda.is_available() else "cpu")


def _worker_slot() -> str:
    """This worker's place among TorchServe's workers (its socket name, which a restarted worker
    gets again), so that a restarted worker can report its predecessor's jobs failed."""
    argv = sys.argv
    if "--sock-name" in argv[:-1]:
        return argv[argv.index("--sock-name") + 1]
    return f"pid-{os.getpid()}"

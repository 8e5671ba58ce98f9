"""TorchServe handler: JSON request -> Gatys style transfer on the worker's device -> JSON response.

The only TorchServe-aware module. Request validation lives in ``nst.api`` and the optimization in
``nst.stylize``; this class wires them to TorchServe's context (device, config, statuses).

It also serves requests that arrive through TorchServe's KServe envelopes
(``service_envelope=kserve`` or ``kservev2``, see ``docs/api.md``, "KServe envelopes").
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from nst.api import Limits, RequestError, StyleRequest, parse_params, parse_request
from nst.cache import StyleCache
from nst.images import encode_image, fit_long_side, to_tensor
from nst.masks import MaskError
from nst.stylize import Iterate, stylize
from nst.weights import PROVENANCE_FILE, load_features, read_provenance
from ts.handler_utils.utils import send_intermediate_predict_response
from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler

logger = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
PREVIEW_LONG_SIDE = 128  # pixels, long side of streamed preview images

#: The KServe envelopes TorchServe 0.12 can put in front of the handler (``service_envelope``).
KSERVE_V1, KSERVE_V2 = "kserve", "kservev2"

_PHRASES = {400: "Bad Request", 413: "Payload Too Large", 500: "Internal Server Error", 507: "Insufficient Storage"}


class NSTHandler(BaseHandler):
    """Serves ``POST /predictions/nst`` (see ``docs/api.md``); rows of a batch succeed or fail alone.

    Configuration comes from the ``handler:`` section of ``model-config.yaml``: ``limits``
    (:class:`nst.api.Limits` fields), ``defaults`` (parameter defaults), ``torch_threads`` and
    ``style_cache_size`` (entries of the per-worker style-target LRU cache; 0 disables it).
    """

    _envelope: str | None = None  # KSERVE_V1, KSERVE_V2 or None, set per batch by handle()

    def initialize(self, context: Any) -> None:
        """Load the VGG features (the network and input convention their provenance records)
        from the archive onto ``cuda:<gpu_id>`` or the CPU.

        ``BaseHandler.initialize`` is not called: it expects a whole model to load, and we load
        a state dict ourselves (``weights_only=True``, so the archive cannot run code on load).

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
        try:
            # Unknown names, bad values and layers the served network lacks fail here.
            parse_params(self.defaults, limits=self.limits, network=self.provenance.network)
        except RequestError as exc:
            raise ValueError(f"model-config.yaml handler.defaults: {exc.message}") from None
        self.style_cache = StyleCache(int(config.get("style_cache_size", 32)))
        if config.get("torch_threads"):
            torch.set_num_threads(int(config["torch_threads"]))
        gpu_id = props.get("gpu_id")
        if torch.cuda.is_available() and gpu_id is not None:
            self.device = torch.device(f"cuda:{gpu_id}")
        else:
            self.device = torch.device("cpu")

        weights_path = model_dir / context.manifest["model"]["serializedFile"]
        self.features = load_features(weights_path, self.provenance).to(self.device)
        logger.info(
            "NST model loaded: weights %s (%s, %s input) on %s, %d torch threads", self.provenance.label,
            self.provenance.network, self.provenance.input_convention, self.device, torch.get_num_threads(),
        )
        self.initialized = True

    # --- TorchServe's entry point: which envelope, if any, the rows came through --------------

    def handle(self, data: list[Any] | None, context: Any) -> list[Any]:
        """``BaseHandler.handle`` after noting whether a KServe envelope unwrapped this batch.

        Without an envelope every row is one HTTP request as TorchServe's frontend builds it: a
        dict holding the body under ``"body"`` (or ``"data"``). Under ``service_envelope=kserve``
        the rows are the elements of the request's ``"instances"`` array (``None`` when it has
        none); under ``kservev2`` they are the request's ``"inputs"`` and the envelope has set
        ``context.input_names``. Either way all rows belong to the one HTTP request the envelope
        read (it reads only the first request of a batch, so ``batchSize`` must stay 1).

        Returns:
            One entry per row: JSON text without an envelope and under ``kservev2`` (a v2
            ``BYTES`` element), a JSON object (dict) under ``kserve`` (a v1 prediction).
        """
        self.context = context
        if self._is_describe():  # GET /models/nst?customized=true: no rows to read
            return super().handle(data, context)
        self._envelope = _envelope_of(data, context)
        if self._envelope == KSERVE_V1 and not data:
            # The envelope found no "instances" (or an empty array); answer one error for the request.
            problem = RequestError(400, "missing_field", 'a KServe v1 request needs "instances": a non-empty array '
                                   "of request objects (see docs/api.md)", "instances")
            return self.postprocess([problem])
        return super().handle(data, context)

    # --- TorchServe's three stages, one list entry per request row -----------------------------

    def preprocess(self, data: list[Any]) -> list[StyleRequest | RequestError]:
        """Parse and validate every row; a bad row becomes its :class:`RequestError`."""
        rows: list[StyleRequest | RequestError] = []
        self._decode_ms: list[float] = []
        self._streaming: set[int] = set()  # rows whose first chunk has been sent
        for row in data:
            start = time.perf_counter()
            try:
                request = parse_request(self._body(len(rows), row), defaults=self.defaults, limits=self.limits,
                                        network=self.provenance.network)
                if self._envelope and request.params["stream"]:
                    raise RequestError(400, "invalid_choice", "params.stream is not available through a KServe "
                                       "envelope (one answer per request); use POST /predictions/nst", "params.stream")
                rows.append(request)
            except RequestError as exc:
                rows.append(exc)
            except Exception:
                request_id = self._request_id(len(rows))
                logger.exception("request %s: validation failed unexpectedly", request_id)
                rows.append(RequestError(500, "internal_error", f"internal error; see the server log for request {request_id}"))
            self._decode_ms.append((time.perf_counter() - start) * 1e3)
        return rows

    def inference(self, data: list[StyleRequest | RequestError], *args: Any, **kwargs: Any) -> list[dict[str, Any] | RequestError]:
        """Stylize every valid row; an unexpected failure of one row becomes a 500 for it alone."""
        return [row if isinstance(row, RequestError) else self._run(idx, row) for idx, row in enumerate(data)]

    def postprocess(self, data: list[dict[str, Any] | RequestError]) -> list[Any]:
        """JSON text per row, with its HTTP status and ``Content-Type: application/json``
        (under a KServe envelope: see :meth:`_postprocess_enveloped`)."""
        if self._envelope:
            return self._postprocess_enveloped(data)
        out = []
        for idx, row in enumerate(data):
            status = row.status if isinstance(row, RequestError) else 200
            outcome = "ok" if status < 400 else "client_error" if status < 500 else "server_error"
            self._metric("NSTRequests", 1, Outcome=outcome)
            if idx in self._streaming:
                # The status line (200) went out with the first chunk: the end is in-band.
                if isinstance(row, RequestError):
                    event = {"event": "error", "status": row.status, **row.body()}
                    event["error"]["request_id"] = self.context.get_request_id(idx)
                else:
                    event = {"event": "result", **row}
                out.append(json.dumps(event) + "\n")
                continue
            self.context.set_response_content_type(idx, "application/json")
            if isinstance(row, RequestError):
                self.context.set_response_status(row.status, _PHRASES.get(row.status, "Error"), idx)
                body = row.body()
                body["error"]["request_id"] = self.context.get_request_id(idx)
                logger.info("request %s refused: %s %s", self.context.get_request_id(idx), row.status, row.code)
                out.append(json.dumps(body))
            else:
                out.append(json.dumps(row))
        return out

    # --- KServe envelopes (docs/api.md, "KServe envelopes") -----------------------------------

    def _postprocess_enveloped(self, data: list[dict[str, Any] | RequestError]) -> list[Any]:
        """One entry per instance (v1) or input (v2) for the envelope to wrap.

        Every row belongs to one HTTP request (index 0), which gets one status: 200 when all rows
        succeeded, else the status of the first failed row. A failed row's entry is our error
        body, with ``error.status`` added so that each row still says how it failed.

        Returns:
            ``kserve``: dicts (the envelope answers ``{"predictions": [...]}``); ``kservev2``: JSON
            text (the envelope answers one ``BYTES`` output per input, holding that text).
        """
        out: list[Any] = []
        failed: RequestError | None = None
        for idx, row in enumerate(data):
            if isinstance(row, RequestError):
                self._metric("NSTRequests", 1, Outcome="client_error" if row.status < 500 else "server_error")
                failed = failed or row
                body = row.body()
                body["error"].update(request_id=self._request_id(idx), status=row.status)
                logger.info("request %s, %s %d refused: %s %s", self._request_id(idx),
                            "instance" if self._envelope == KSERVE_V1 else "input", idx, row.status, row.code)
            else:
                self._metric("NSTRequests", 1, Outcome="ok")
                body = row
            out.append(body if self._envelope == KSERVE_V1 else json.dumps(body))
        self.context.set_response_content_type(0, "application/json")
        if failed is not None:
            self.context.set_response_status(failed.status, _PHRASES.get(failed.status, "Error"), 0)
        return out

    def _body(self, idx: int, row: Any) -> Any:
        """The request body (JSON text, bytes or a parsed object) that row ``idx`` carries.

        Raises:
            RequestError: under ``kservev2``, an input that is not one ``BYTES`` element
                (field ``inputs[<idx>].datatype`` or ``inputs[<idx>].shape``).
        """
        if self._envelope == KSERVE_V1:
            return row  # an element of "instances": the request object itself
        if self._envelope == KSERVE_V2:
            # The envelope has replaced a BYTES input's "data" array by its first element.
            if row.get("datatype") != "BYTES":
                raise RequestError(400, "invalid_type", f"input {row.get('name')!r} has datatype "
                                   f"{row.get('datatype')!r}; send each request as a BYTES input holding the "
                                   "request's JSON text", f"inputs[{idx}].datatype")
            if list(row.get("shape") or []) != [1]:
                raise RequestError(400, "out_of_range", f"input {row.get('name')!r} has shape {row.get('shape')!r}; "
                                   "one request per input: shape must be [1] (send more inputs for more requests)",
                                   f"inputs[{idx}].shape")
            return row.get("data")
        return row.get("body", row.get("data")) if isinstance(row, dict) else row

    def _request_id(self, idx: int) -> str | None:
        """TorchServe's id of the HTTP request that row ``idx`` came in (under an envelope every
        row came in the batch's first request)."""
        return self.context.get_request_id(0 if self._envelope else idx)

    def describe_handle(self) -> str:
        """What ``GET /models/nst?customized=true`` shows as ``customizedMetadata``: the served
        weights' provenance (with the network and its input convention), the network's layer
        names, the device, the limits and the effective parameter defaults."""
        return json.dumps({
            "weights": asdict(self.provenance),
            "layers": list(self.features.layer_names),
            "device": str(self.device),
            "limits": asdict(self.limits),
            "defaults": parse_params(self.defaults, limits=self.limits, network=self.provenance.network),
        })

    def _stream_progress(self, idx: int, params: dict[str, Any], started: float) -> Callable[[Iterate], None]:
        """A stylize() callback that streams progress and preview events as NDJSON chunks.

        Each chunk goes out through TorchServe's intermediate responses and resets its
        ``responseTimeout``, so a long job stays alive while it reports.
        """
        def send(event: dict[str, Any]) -> None:
            if idx not in self._streaming:
                self.context.set_response_content_type(idx, NDJSON)
                self._streaming.add(idx)
            line = json.dumps(event) + "\n"
            send_intermediate_predict_response({idx: line}, {idx: self.context.get_request_id(idx)},
                                               "Intermediate Prediction success", 200, self.context)

        def callback(it: Iterate) -> None:
            if it.iteration % params["progress_every"] == 0 or it.iteration == it.steps:
                elapsed = time.perf_counter() - started
                eta = elapsed / it.iteration * (it.steps - it.iteration) if it.iteration else None
                send({"event": "progress", "iteration": it.iteration, "of": it.steps, "losses": dict(it.losses),
                      "elapsed_s": round(elapsed, 3), "eta_s": None if eta is None else round(eta, 3)})
            every = params["preview_every"]
            if every and it.iteration % every == 0 and it.image is not None:
                h, w = it.image.shape[-2:]
                pw, ph = fit_long_side(w, h, min(PREVIEW_LONG_SIDE, max(w, h)))
                small = torch.nn.functional.interpolate(it.image, size=(ph, pw), mode="area")
                send({"event": "preview", "iteration": it.iteration, "width": pw, "height": ph,
                      "image": base64.b64encode(encode_image(small, "jpeg", jpeg_quality=80)).decode("ascii")})

        return callback

    def _metric(self, name: str, value: float, *, kind: MetricTypes = MetricTypes.COUNTER, unit: str = "Count",
                **dims: str) -> None:
        """Emit a model metric declared in ``handler/metrics.yaml`` (same name and dimensions)."""
        dimensions = [Dimension("ModelName", self.context.model_name), Dimension("Level", "Model")]
        dimensions += [Dimension(k, v) for k, v in dims.items()]
        self.context.metrics.add_metric(name, value, unit, None, dimensions, kind)

    @staticmethod
    def _style_keys(request: StyleRequest, style_side: int) -> list[tuple[Any, ...]] | None:
        """What each style's cached Grams depend on besides the computation: its bytes and the
        size the handler resized it to, plus the content (colour control recolours the style
        by it) and the masks when they are used."""
        if not request.digests:
            return None  # nothing names the inputs: no caching
        d = request.digests
        colored = request.params["color_control"] != "none"
        return [
            (style, style_side, d["content"] if colored else None,
             (d["content_mask"], d["style_masks"][i]) if "content_mask" in d else None)
            for i, style in enumerate(d["style"])
        ]

    # --- one request ------------------------------------------------------------------------

    def _run(self, idx: int, request: StyleRequest) -> dict[str, Any] | RequestError:
        request_id = self._request_id(idx)
        params = request.params
        try:
            start = time.perf_counter()
            size = params["image_size"]
            content = to_tensor(request.content, size, self.device)
            # Styles at the finest level's size; the engine resizes them for coarser levels.
            style_side = max(1, round(size * params["style_scale"]))
            styles = [to_tensor(s, style_side, self.device) for s in request.styles]
            init_image = None if request.init_image is None else to_tensor(request.init_image, size, self.device)
            masks: dict[str, Any] = {}
            if request.content_mask is not None and request.style_masks is not None:
                # Label maps keep their own resolution: the engine labels, then resizes regions.
                masks = {
                    "content_mask": to_tensor(request.content_mask, None, self.device),
                    "style_masks": [to_tensor(m, None, self.device) for m in request.style_masks],
                }
            progress = self._stream_progress(idx, params, time.perf_counter()) if params["stream"] else None
            result = stylize(content, styles, self.features, request.options(), init_image=init_image, **masks,
                             cache=self.style_cache, style_keys=self._style_keys(request, style_side),
                             callback=progress)
            optimized = time.perf_counter()
            data = encode_image(result.image, params["output_format"])
            encoded = time.perf_counter()
        except MaskError as exc:
            return RequestError(400, "invalid_mask", str(exc), "content_mask")
        except torch.cuda.OutOfMemoryError:
            logger.exception("request %s: out of GPU memory", request_id)
            return RequestError(507, "out_of_memory", "the GPU ran out of memory; try a smaller image_size")
        except Exception:
            logger.exception("request %s failed", request_id)
            return RequestError(500, "internal_error", f"internal error; see the server log for request {request_id}")
        height, width = result.image.shape[-2:]
        optimize_s = optimized - start
        self._metric("NSTIterations", result.iterations)
        self._metric("NSTOutputPixels", width * height)
        if result.iterations:
            self._metric("NSTSecondsPerIteration", optimize_s / result.iterations, kind=MetricTypes.GAUGE, unit="Seconds")
        self._metric("NSTStyleCacheHits", result.cache_hits)
        self._metric("NSTStyleCacheMisses", result.cache_misses)
        timings = {
            "decode": self._decode_ms[idx],
            "optimize": optimize_s * 1e3,
            "encode": (encoded - optimized) * 1e3,
        }
        timings["total"] = sum(timings.values())
        logger.info(
            "request %s: %dx%d, %d iterations in %.0f ms", request_id, width, height, result.iterations, timings["total"]
        )
        response = {
            "image": base64.b64encode(data).decode("ascii"),
            "format": params["output_format"],
            "width": width,
            "height": height,
            "iterations": result.iterations,
            "stopped": result.stopped,
            "cache": result.cache,
            "losses": result.losses,
            "timings_ms": {k: round(v, 1) for k, v in timings.items()},
            "params": params,
            "weights": self.provenance.label,
            "device": str(self.device),
            "request_id": request_id,
        }
        if params["return_history"]:
            response["history"] = [{"iteration": it.iteration, **it.losses} for it in result.history]
        return response


def _envelope_of(data: list[Any] | None, context: Any) -> str | None:
    """Which KServe envelope (``KSERVE_V1``, ``KSERVE_V2``) unwrapped ``data``, or ``None``.

    TorchServe does not tell the handler its ``service_envelope``; the rows show it. The v2
    envelope sets ``context.input_names`` before it calls the handler. Without an envelope
    there is one row per HTTP request of the batch, each a dict from TorchServe's frontend
    holding the body under ``"body"`` (or ``"data"``); anything else is the v1 envelope's
    ``"instances"``: ``None`` or empty when the request has none, else request objects (which
    have neither field), one or more for the one HTTP request the envelope reads.
    """
    if getattr(context, "input_names", None) is not None:
        return KSERVE_V2
    if (not data or len(data) != len(context.request_ids or {})
            or any(not isinstance(row, dict) or ("body" not in row and "data" not in row) for row in data)):
        return KSERVE_V1
    return None

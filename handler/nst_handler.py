"""TorchServe handler: JSON request -> Gatys style transfer on the worker's device -> JSON response.

The only TorchServe-aware module. Request validation lives in ``nst.api`` and the optimization in
``nst.stylize``; this class wires them to TorchServe's context (device, config, statuses).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch
from ts.handler_utils.utils import send_intermediate_predict_response
from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler

from nst.api import Limits, RequestError, StyleRequest, parse_params, parse_request
from nst.cache import StyleCache
from nst.images import encode_image, fit_long_side, to_tensor
from nst.masks import MaskError
from nst.stylize import Iterate, stylize
from nst.vgg import build_vgg19_features
from nst.weights import PROVENANCE_FILE, read_provenance, sha256_of

logger = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
PREVIEW_LONG_SIDE = 128  # pixels, long side of streamed preview images

_PHRASES = {400: "Bad Request", 413: "Payload Too Large", 500: "Internal Server Error", 507: "Insufficient Storage"}


class NSTHandler(BaseHandler):
    """Serves ``POST /predictions/nst`` (see ``docs/api.md``); rows of a batch succeed or fail alone.

    Configuration comes from the ``handler:`` section of ``model-config.yaml``: ``limits``
    (:class:`nst.api.Limits` fields), ``defaults`` (parameter defaults), ``torch_threads`` and
    ``style_cache_size`` (entries of the per-worker style-target LRU cache; 0 disables it).
    """

    def initialize(self, context: Any) -> None:
        """Load the VGG19 features from the archive onto ``cuda:<gpu_id>`` or the CPU.

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
        try:
            parse_params(self.defaults, limits=self.limits)  # unknown names and bad values fail here
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
        self.provenance = read_provenance(model_dir / PROVENANCE_FILE)
        if sha256_of(weights_path) != self.provenance.sha256:
            raise ValueError(f"{weights_path.name} does not match the sha256 in {PROVENANCE_FILE}")
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        self.features = build_vgg19_features(state).to(self.device)
        logger.info(
            "NST model loaded: weights %s on %s, %d torch threads",
            self.provenance.label, self.device, torch.get_num_threads(),
        )
        self.initialized = True

    # --- TorchServe's three stages, one list entry per request row -----------------------------

    def preprocess(self, data: list[dict[str, Any]]) -> list[StyleRequest | RequestError]:
        """Parse and validate every row; a bad row becomes its :class:`RequestError`."""
        rows: list[StyleRequest | RequestError] = []
        self._decode_ms: list[float] = []
        self._streaming: set[int] = set()  # rows whose first chunk has been sent
        for row in data:
            start = time.perf_counter()
            body = row.get("body", row.get("data")) if isinstance(row, dict) else row
            try:
                rows.append(parse_request(body, defaults=self.defaults, limits=self.limits))
            except RequestError as exc:
                rows.append(exc)
            except Exception:  # noqa: BLE001 - one bad row must not fail the batch or the worker
                request_id = self.context.get_request_id(len(rows))
                logger.exception("request %s: validation failed unexpectedly", request_id)
                rows.append(RequestError(500, "internal_error", f"internal error; see the server log for request {request_id}"))
            self._decode_ms.append((time.perf_counter() - start) * 1e3)
        return rows

    def inference(self, data: list[StyleRequest | RequestError], *args: Any, **kwargs: Any) -> list[dict[str, Any] | RequestError]:
        """Stylize every valid row; an unexpected failure of one row becomes a 500 for it alone."""
        return [row if isinstance(row, RequestError) else self._run(idx, row) for idx, row in enumerate(data)]

    def postprocess(self, data: list[dict[str, Any] | RequestError]) -> list[str]:
        """JSON text per row, with its HTTP status and ``Content-Type: application/json``."""
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

    def describe_handle(self) -> str:
        """What ``GET /models/nst?customized=true`` shows as ``customizedMetadata``: the served
        weights' provenance, the device, the limits and the effective parameter defaults."""
        return json.dumps({
            "weights": asdict(self.provenance),
            "device": str(self.device),
            "limits": asdict(self.limits),
            "defaults": parse_params(self.defaults, limits=self.limits),
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
        request_id = self.context.get_request_id(idx)
        params = request.params
        try:
            start = time.perf_counter()
            size = params["image_size"]
            content = to_tensor(request.content, size, self.device)
            # Styles at the finest level's size; the engine resizes them for coarser levels.
            style_side = max(1, round(size * params["style_scale"]))
            styles = [to_tensor(s, style_side, self.device) for s in request.styles]
            init_image = None if request.init_image is None else to_tensor(request.init_image, size, self.device)
            masks = {}
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
        except Exception:  # noqa: BLE001 - one bad row must not fail the batch or the worker
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

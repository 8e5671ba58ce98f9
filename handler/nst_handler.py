"""TorchServe handler: maps TorchServe's context, stages, intermediate responses and metrics
onto the style-transfer service (:mod:`nst_service`), the only TorchServe-aware module.

What a request and an answer are is ``nst_http``'s; how a picture is made is ``nst``'s; running
a worker and answering a batch is ``nst_service``'s. This module adapts, and nothing more.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

from nst_service import BatchRequest, Chunk, StyleTransferService
from ts.handler_utils.utils import send_intermediate_predict_response
from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler


class NSTHandler(BaseHandler):
    """Serves ``POST /predictions/nst`` (see ``docs/api.md``), also through TorchServe's KServe
    envelopes (``service_envelope=kserve`` or ``kservev2``).

    Configuration comes from the ``handler:`` section of ``model-config.yaml`` (see
    :func:`nst_service.worker.load_worker`).
    """

    def initialize(self, context: Any) -> None:
        """Start the service on ``cuda:<gpu_id>`` or the CPU with the archive's weights.
        ``BaseHandler.initialize`` is not called: the service loads a state dict itself.

        Raises:
            ValueError: the weights file does not match its provenance, or the handler config is invalid.
        """
        self.context = context
        props = context.system_properties
        config = (context.model_yaml_config or {}).get("handler", {}) or {}
        self.service = StyleTransferService.start(
            Path(props["model_dir"]), context.manifest["model"]["serializedFile"], config,
            gpu_id=props.get("gpu_id"), name=f"{socket.gethostname()}:{_worker_slot()}", metric=self._metric)
        self.initialized = True

    def handle(self, data: list[Any] | None, context: Any) -> list[Any]:
        """``BaseHandler.handle`` (its stages, timing and metrics) over the batch's requests.

        Returns:
            One entry per request: JSON text without an envelope and under ``kservev2``, a JSON
            object (dict) under ``kserve``.
        """
        self.context = context
        if self._is_describe():  # GET /models/nst?customized=true: no requests to read
            return super().handle(data, context)
        items = self.service.batch(data, input_names=getattr(context, "input_names", None),
                                   request_count=len(context.request_ids or {}), request_id=context.get_request_id)
        return super().handle(items, context)

    def preprocess(self, data: list[BatchRequest]) -> list[BatchRequest]:
        """Parse and check every request (a bad one answers its 4xx alone)."""
        return self.service.parse(data)

    def inference(self, data: list[BatchRequest], *args: Any, **kwargs: Any) -> list[BatchRequest]:
        """Answer every valid request, streaming chunks as TorchServe's intermediate responses."""
        return self.service.answer(data, self._send)

    def postprocess(self, data: list[BatchRequest]) -> list[Any]:
        """Each reply's body, with its status, headers and content type set on the context."""
        replies = self.service.replies(data)
        for index, reply in enumerate(replies):
            if reply.content_type is not None:
                self.context.set_response_content_type(index, reply.content_type)
            if reply.status is not None:
                self.context.set_response_status(reply.status, reply.phrase, index)
            for key, value in reply.headers.items():
                self.context.set_response_header(index, key, value)
        return [reply.body for reply in replies]

    def describe_handle(self) -> str:
        """``customizedMetadata`` of ``GET /models/nst?customized=true``."""
        return self.service.describe()

    def _send(self, chunk: Chunk) -> None:
        """Send one stream chunk now (each resets TorchServe's ``responseTimeout``)."""
        if chunk.content_type is not None:
            self.context.set_response_content_type(chunk.index, chunk.content_type)
        send_intermediate_predict_response({chunk.index: chunk.text}, {chunk.index: chunk.request_id},
                                           "Intermediate Prediction success", 200, self.context)

    def _metric(self, name: str, value: float, *, kind: str = "counter", unit: str = "Count", **dims: str) -> None:
        """Emit a model metric declared in ``handler/metrics.yaml`` (same name and dimensions)."""
        dimensions = [Dimension("ModelName", self.context.model_name), Dimension("Level", "Model")]
        dimensions += [Dimension(k, v) for k, v in dims.items()]
        self.context.metrics.add_metric(name, value, unit, None, dimensions, MetricTypes(kind))


def _worker_slot() -> str:
    """This worker's place among TorchServe's workers (its socket name, which a restarted worker
    gets again), so that a restarted worker can report its predecessor's jobs failed."""
    argv = sys.argv
    if "--sock-name" in argv[:-1]:
        return argv[argv.index("--sock-name") + 1]
    return f"pid-{os.getpid()}"

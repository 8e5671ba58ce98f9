"""Part 6 of ``gpu_check.py``: requests through ``NSTHandler`` in-process, on the check's device.

The handler is built as TorchServe's worker builds it and as ``tests/handler`` does: a model
directory in a temporary folder (seeded random VGG19 weights and their provenance file), a real
``ts.context.Context`` per request (``gpu_id`` 0 on a GPU), a streamed request's chunks on a
socket pair. TorchServe's Python package comes from the machine or from ``.gpu-deps/``
(``make gpu-deps``); ``nst_handler`` (hence ``ts``) is imported only when the part runs.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from bench_engine import CONTENT, STYLE
from nst import weights

ROOT = Path(__file__).resolve().parents[1]


def make_context(model_dir: Path, config: dict, gpu_id: int | None) -> Any:
    """A one-row ``ts.context.Context`` as TorchServe's worker builds it (as tests/handler does)."""
    import ts
    from ts.context import Context, RequestProcessor
    from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

    metrics = MetricsCacheYamlImpl(config_file_path=str(Path(ts.__file__).parent / "configs" / "metrics.yaml"))
    metrics.initialize_cache()
    manifest = {"model": {"modelName": "nst", "serializedFile": weights.WEIGHTS_FILE, "handler": "nst_handler.py",
                          "modelVersion": "1.0"}}
    ctx = Context("nst", str(model_dir), manifest, 1, gpu_id, ts.__version__, metrics=metrics,
                  model_yaml_config=config)
    ctx.request_ids = {0: "r0"}
    ctx.request_processor = [RequestProcessor({})]
    return ctx


@contextmanager
def stream_reader(ctx: Any) -> Iterator[bytearray]:
    """Connect ``ctx`` to a socket pair whose far end is drained by a thread into the yielded buffer."""
    ours, worker_side = socket.socketpair()
    ctx.cl_socket, received = worker_side, bytearray()

    def drain() -> None:
        while chunk := ours.recv(1 << 16):
            received.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield received
    finally:
        worker_side.shutdown(socket.SHUT_WR)
        reader.join(10)
        ours.close()
        worker_side.close()


def key_fields(answer: dict) -> dict[str, Any]:
    """What a check needs of an answer: its weights, device, iterations, image size, error, job."""
    keys = ("weights", "device", "iterations", "width", "height", "format", "event", "error", "job")
    fields = {k: answer[k] for k in keys if k in answer}
    if "plan" in answer:
        plan = answer["plan"]
        fields["plan"] = {k: plan.get(k) for k in ("width", "height", "seconds", "peak_memory_bytes")}
    return fields


def ask(handler: Any, model_dir: Path, config: dict, gpu_id: int | None, body: dict,
        stream: bool = False) -> dict[str, Any]:
    """One request through ``handler.handle``: its status, content type, key fields and seconds."""
    ctx = make_context(model_dir, config, gpu_id)
    start = time.perf_counter()
    with stream_reader(ctx) if stream else nullcontext(bytearray()) as received:
        (text,) = handler.handle([{"body": body}], ctx)
    seconds = time.perf_counter() - start
    out = {"status": ctx.get_response_status(0)[0], "content_type": ctx.get_response_content_type(0),
           "seconds": seconds, **key_fields(json.loads(text))}
    if stream:  # the events inside TorchServe's binary frames on the worker's socket
        out["streamed_events"] = dict(Counter(e.decode() for e in re.findall(rb'"event": "(\w+)"', received)))
    return out


def handler_requests(device: torch.device, size: int, iterations: int) -> dict[str, Any]:
    """A plain, a streamed, a dry-run and a submitted-job request through ``NSTHandler``."""
    from nst_handler import NSTHandler  # imports ts here, not before the parts that run first

    gpu_id = (device.index or 0) if device.type == "cuda" else None
    images = {k: base64.b64encode(p.read_bytes()).decode() for k, p in (("content", CONTENT), ("style", STYLE))}
    body: dict[str, Any] = images | {"params": {"image_size": size, "iterations": iterations}}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        model_dir = Path(tmp) / "model"
        weights.save(weights.make_random(0), model_dir)
        config = yaml.safe_load((ROOT / "handler" / "model-config.yaml").read_text())
        config["handler"] |= {"defaults": {"image_size": size, "iterations": iterations},
                              "jobs": {"dir": str(Path(tmp) / "jobs"), "lease_s": 600}}
        handler = NSTHandler()
        start = time.perf_counter()
        handler.initialize(make_context(model_dir, config, gpu_id))
        out: dict[str, Any] = {"initialize_s": time.perf_counter() - start, "device": str(handler.service.worker.device),
                               "weights_device": str(next(handler.service.worker.features.parameters()).device)}
        try:
            call = partial(ask, handler, model_dir, config, gpu_id)
            out["plain"] = call(body)
            out["streamed"] = call(body | {"params": body["params"] | {"stream": True, "progress_every": 10}},
                                   stream=True)
            out["dry_run"] = call(body | {"params": body["params"] | {"dry_run": True}})
            out["job"] = job(call, body)
        finally:
            handler.service.close()
    return out


def job(call: Callable[[dict], dict], body: dict, timeout: float = 300.0) -> dict[str, Any]:
    """Submit ``body`` as a job, poll its status until it ends, fetch its result."""
    start = time.perf_counter()
    submitted = call(body | {"job": {"action": "submit"}})
    job_id, polls = submitted["job"]["id"], 0
    while True:
        status = call({"job": {"action": "status", "id": job_id}})
        polls += 1
        if status["job"]["state"] not in ("queued", "running") or time.perf_counter() - start > timeout:
            break
        time.sleep(0.05)
    result = call({"job": {"action": "result", "id": job_id}})
    return {"status": result["status"], "state": status["job"]["state"], "polls": polls, "submitted": submitted,
            "result": result, "seconds": time.perf_counter() - start}

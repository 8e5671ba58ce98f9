"""The answers of ``POST /predictions/nst``: the response body and the NDJSON stream events.

With ``params.stream`` the answer is a stream of ``progress`` and ``preview`` events ending with
a ``result`` event (the response body) or, once the first event has gone out with status 200, an
``error`` event. ``docs/api.md`` and ``docs/openapi.yaml`` document the shapes.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import torch
from nst.images import encode_image, scaled_to_long_side
from nst.plan import Plan
from nst.records import Iterate, Stylized

from .budget import FLAT, Budget, SpeedCurve
from .errors import RequestError
from .request import StyleRequest

NDJSON = "application/x-ndjson"
#: Phases of ``timings_ms`` besides ``total``, in order.
TIMED = ("decode", "optimize", "encode")


def result_body(request: StyleRequest, result: Stylized, image: bytes, *, timings_ms: dict[str, float],
                weights: str, device: str, request_id: str | None) -> dict[str, Any]:
    """The 200 body: the encoded ``image`` (bytes) as base64 with what the run did.

    Args:
        timings_ms: milliseconds per phase of :data:`TIMED`; ``total`` is added.
        weights: the label of the served weights (every answer says which weights made it).
    """
    height, width = result.image.shape[-2:]
    timings = {phase: timings_ms[phase] for phase in TIMED}
    timings["total"] = sum(timings.values())
    body = {
        "image": base64.b64encode(image).decode("ascii"),
        "format": request.serving.output_format,
        "width": width,
        "height": height,
        "iterations": result.iterations,
        "stopped": result.stopped,
        "cache": result.cache,
        "losses": result.losses,
        "timings_ms": {k: round(v, 1) for k, v in timings.items()},
        "params": request.params,
        "weights": weights,
        "device": device,
        "request_id": request_id,
    }
    if request.serving.return_history:
        body["history"] = [{"iteration": it.iteration, **it.losses} for it in result.history]
    return body


def plan_body(request: StyleRequest, *, seconds_per_work: float | None, curve: SpeedCurve = FLAT,
              budget: Budget | None, weights: str, device: str, request_id: str | None) -> dict[str, Any]:
    """The 200 body of a dry run (``params.dry_run``): what the run would do, and need.

    Each level's seconds are its pixel-iterations (:attr:`nst.plan.Level.work`, its cost
    included) at the worker's measured ``seconds_per_work`` scaled to the level's size by
    ``curve`` (``None`` before it has measured; then every ``seconds`` is ``None``); the peak
    memory is the largest level's (:mod:`nst.memory`) plus what the worker holds before any request.
    """
    plan = request.plan

    def seconds(work: float) -> float | None:
        return None if seconds_per_work is None else round(work * seconds_per_work, 1)

    baseline = 0 if budget is None else budget.baseline
    levels = [{"side": level.side, "width": level.size[1], "height": level.size[0], "iterations": level.iterations,
               "tile": level.tile, "tiles": level.tiles, "kept_tails": level.kept_tails,
               "lbfgs_history": level.history or plan.options.lbfgs_history,
               "peak_memory_bytes": baseline + level.peak_bytes,
               "seconds": seconds(level.work * curve.weight(level))} for level in plan.levels]
    height, width = plan.size
    return {"plan": {"width": width, "height": height, "levels": levels,
                     "peak_memory_bytes": baseline + plan.peak_bytes,
                     "memory_budget_bytes": None if budget is None else budget.total,
                     "seconds": seconds(curve.work(plan))},
            "params": request.params, "weights": weights, "device": device, "request_id": request_id}


def progress_event(it: Iterate, elapsed_s: float, plan: Plan) -> dict[str, Any]:
    """A ``progress`` event after ``elapsed_s`` seconds of ``plan``'s run, with an estimate of the
    rest: the time so far scaled by the pixel-iterations left over those done
    (:attr:`nst.plan.Plan.work`), so that the larger, slower fine levels count for what they cost."""
    done = plan.work_done(it.iteration)
    eta = elapsed_s * (plan.work - done) / done if done else None
    return {"event": "progress", "iteration": it.iteration, "of": it.iterations, "losses": dict(it.losses),
            "elapsed_s": round(elapsed_s, 3), "eta_s": None if eta is None else round(eta, 3)}


def preview_event(it: Iterate, long_side: int) -> dict[str, Any]:
    """A ``preview`` event: ``it.image`` shrunk to ``long_side`` pixels (``params.preview_size``;
    never enlarged), as JPEG."""
    assert it.image is not None
    h, w = it.image.shape[-2:]
    ph, pw = scaled_to_long_side((h, w), min(long_side, max(w, h)))
    small = it.image if (ph, pw) == (h, w) else torch.nn.functional.interpolate(it.image, size=(ph, pw), mode="area")
    return {"event": "preview", "iteration": it.iteration, "width": pw, "height": ph,
            "image": base64.b64encode(encode_image(small, "jpeg", jpeg_quality=80)).decode("ascii")}


def preview_due(request: StyleRequest, it: Iterate, *, submitted: bool) -> bool:
    """Whether evaluation ``it`` gets a preview: a stream's every ``preview_every`` iterations
    (none when 0), a submitted job's (for its status) every ``progress_every``."""
    serving = request.serving
    if it.image is None:
        return False
    streamed = serving.stream and serving.preview_every and it.iteration % serving.preview_every == 0
    return bool(streamed) or (submitted and it.iteration % serving.progress_every == 0)


def stream_events(request: StyleRequest, it: Iterate, progress: dict[str, Any],
                  preview: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Of the ``progress`` and ``preview`` events of evaluation ``it``, those a stream sends:
    ``progress`` every ``progress_every`` iterations and at the last, ``preview`` every
    ``preview_every`` (none when 0)."""
    serving, events = request.serving, []
    if it.iteration % serving.progress_every == 0 or it.iteration == it.iterations:
        events.append(progress)
    if preview is not None and serving.preview_every and it.iteration % serving.preview_every == 0:
        events.append(preview)
    return events


def final_event(answer: dict[str, Any] | RequestError, request_id: str | None) -> dict[str, Any]:
    """The event that ends a stream: ``result`` with the response body, or ``error`` with the
    error body and its status (the stream's own status, 200, went out with the first event)."""
    if isinstance(answer, RequestError):
        return {"event": "error", "status": answer.status, **answer.body(request_id=request_id)}
    return {"event": "result", **answer}


def ndjson_line(event: dict[str, Any]) -> str:
    """One event as a line of NDJSON."""
    return json.dumps(event) + "\n"

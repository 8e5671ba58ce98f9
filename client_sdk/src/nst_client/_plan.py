"""What a dry run's answer means: :class:`Plan` and :class:`PlanLevel`, and the parsing of the
body they come from (``PlanResponse`` in docs/openapi.yaml; a body that breaks it is an
``APIResponseValidationError``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from ._exceptions import APIResponseValidationError
from ._results import optional_field, required_field

__all__ = ["Plan", "PlanLevel", "plan_result"]

_NUMBER = (int, float)


@dataclass(frozen=True)
class PlanLevel:
    """One coarse-to-fine level of a :class:`Plan`.

    Attributes:
        side: The level's long side, in pixels.
        width: Its width, in pixels.
        height: Its height, in pixels.
        iterations: Optimiser iterations at this level.
        tile: Side of the square tile whose memory bounds each of its tiles (which may be
            bands), in pixels; ``None``: the whole image at once.
        tiles: Tiles per pass (``1`` for the whole image).
        kept_tails: Tiles whose deeper layers' computation the server keeps between its two
            passes over the tiles, where its memory budget leaves room: faster, for more
            memory (``0`` from a server that does not report it).
        lbfgs_history: L-BFGS (step, gradient change) pairs kept; fewer than asked where the
            memory budget needs it.
        peak_memory_bytes: Estimated peak memory of the worker at this level, in bytes.
        seconds: Estimated seconds of this level; ``None`` before the worker has measured its
            speed.
    """

    side: int
    width: int
    height: int
    iterations: int
    tile: Optional[int]
    tiles: int
    kept_tails: int
    lbfgs_history: int
    peak_memory_bytes: int
    seconds: Optional[float]

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> PlanLevel:
        """Build from one element of the plan's ``levels``.

        Raises:
            ValueError: A field is missing or has the wrong type.
        """
        seconds = optional_field(obj, "seconds", *_NUMBER)
        return cls(
            side=required_field(obj, "side", int), width=required_field(obj, "width", int),
            height=required_field(obj, "height", int), iterations=required_field(obj, "iterations", int),
            tile=optional_field(obj, "tile", int), tiles=required_field(obj, "tiles", int),
            kept_tails=optional_field(obj, "kept_tails", int) or 0,
            lbfgs_history=required_field(obj, "lbfgs_history", int),
            peak_memory_bytes=required_field(obj, "peak_memory_bytes", int),
            seconds=None if seconds is None else float(seconds),
        )


@dataclass(frozen=True)
class Plan:
    """What a stylize request would do and need, without running it (``plan()``: the server's
    answer to ``params.dry_run = true``).

    Attributes:
        width: Output width, in pixels.
        height: Output height, in pixels.
        levels: The coarse-to-fine levels, coarse first (one without ``scales``).
        peak_memory_bytes: Estimated peak memory of the worker, in bytes: the largest level's.
        memory_budget_bytes: The worker's memory budget, in bytes
            (``handler.limits.memory_budget_mb``), or ``None`` when the server reports none.
        seconds: Estimated seconds of the whole run (all levels); ``None`` before the worker
            has measured its speed.
        params: Effective parameters the run would use (the server's defaults filled in), as
            in a stylize answer.
        weights: VGG weights served (as :attr:`StylizeResult.weights`).
        device: Device the worker runs on, e.g. ``"cpu"`` or ``"cuda:0"``.
        request_id: TorchServe's request id, or ``None``.
        raw: The full decoded JSON response, including keys this SDK does not know.
    """

    width: int
    height: int
    levels: Tuple[PlanLevel, ...]
    peak_memory_bytes: int
    memory_budget_bytes: Optional[int]
    seconds: Optional[float]
    params: Dict[str, Any]
    weights: str
    device: str
    request_id: Optional[str]
    raw: Dict[str, Any] = field(repr=False)

    @classmethod
    def from_response(cls, body: Dict[str, Any]) -> Plan:
        """Build from the 200 answer of a dry run (``PlanResponse`` in docs/openapi.yaml).

        Raises:
            ValueError: ``plan`` is missing or not an object, it has no levels, or a field is
                missing or has the wrong type.
        """
        plan = required_field(body, "plan", dict)
        levels = required_field(plan, "levels", list)
        if not levels or not all(isinstance(level, dict) for level in levels):
            raise ValueError("'levels' is not a non-empty list of objects")
        seconds = optional_field(plan, "seconds", *_NUMBER)
        return cls(
            width=required_field(plan, "width", int), height=required_field(plan, "height", int),
            levels=tuple(PlanLevel.from_dict(level) for level in levels),
            peak_memory_bytes=required_field(plan, "peak_memory_bytes", int),
            memory_budget_bytes=optional_field(plan, "memory_budget_bytes", int),
            seconds=None if seconds is None else float(seconds),
            params=dict(required_field(body, "params", dict)),
            weights=required_field(body, "weights", str), device=required_field(body, "device", str),
            request_id=optional_field(body, "request_id", str), raw=body,
        )

    def to_dict(self) -> Dict[str, Any]:
        """The plan as plain JSON data, in the answer's shape (``raw`` without unknown keys):
        ``{"plan": {"width", "height", "levels": [...], "peak_memory_bytes",
        "memory_budget_bytes", "seconds"}, "params", "weights", "device", "request_id"}``."""
        return {"plan": {"width": self.width, "height": self.height, "levels": [asdict(lv) for lv in self.levels],
                         "peak_memory_bytes": self.peak_memory_bytes,
                         "memory_budget_bytes": self.memory_budget_bytes, "seconds": self.seconds},
                "params": self.params, "weights": self.weights, "device": self.device,
                "request_id": self.request_id}


def plan_result(body: Dict[str, Any], response: Any = None) -> Plan:
    """The :class:`Plan` of a 200 dry-run answer.

    Raises:
        APIResponseValidationError: The body is not a well-formed plan (e.g. a stylize answer
            from a server that ignored ``dry_run``).
    """
    try:
        return Plan.from_response(body)
    except ValueError as exc:
        raise APIResponseValidationError(f"Malformed plan response: {exc}", response=response, body=body) from exc

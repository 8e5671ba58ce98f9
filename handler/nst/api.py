"""The JSON request of ``POST /predictions/nst``: parameter table, validation and image decoding.

Pure Python over parsed JSON: it knows nothing of TorchServe or HTTP transport, so the handler
and the tests share one definition of what a valid request is. ``docs/api.md`` documents it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from PIL import Image

from .images import OUTPUT_FORMATS, ImageDecodeError, ImageTooLargeError, decode_image, fit_long_side
from .stylize import INITS, StylizeOptions
from .vgg import min_side

_OPTIONS = StylizeOptions()


@dataclass(frozen=True)
class Param:
    """One request parameter: JSON type, default, allowed range or choices, unit."""

    name: str
    kind: type  # int, float or str; an int is accepted where a float is expected
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    unit: str = ""


#: Every parameter of ``params``, with the engine's defaults. ``image_size`` and ``steps`` are
#: further capped by the server's limits (``handler.limits`` in ``model-config.yaml``).
PARAMS: Mapping[str, Param] = {
    p.name: p
    for p in (
        Param("image_size", int, 512, 16, None, unit="pixels"),
        Param("steps", int, _OPTIONS.steps, 1, None, unit="iterations"),
        Param("content_weight", float, _OPTIONS.content_weight, 0.0, 1e12),
        Param("style_weight", float, _OPTIONS.style_weight, 0.0, 1e12),
        Param("tv_weight", float, _OPTIONS.tv_weight, 0.0, 1e12),
        Param("init", str, _OPTIONS.init, choices=INITS),
        Param("seed", int, _OPTIONS.seed, 0, 2**63 - 1),
        Param("output_format", str, "png", choices=OUTPUT_FORMATS),
    )
}

BODY_FIELDS = ("content", "style", "params")


class RequestError(Exception):
    """A request the server refuses; becomes ``{"error": {code, message, field}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; set under ``handler.limits`` in ``model-config.yaml``."""

    max_image_side: int = 1024
    """Largest ``image_size`` (long side of the output), pixels."""
    max_steps: int = 2000
    """Largest ``steps``, iterations."""
    max_input_pixels: int = 25_000_000
    """Largest decoded input image, width x height pixels (checked from the header, before decoding)."""
    max_input_bytes: int = 20_000_000
    """Largest encoded input image, bytes (after base64 decoding)."""


@dataclass(frozen=True)
class StyleRequest:
    """A validated request: decoded RGB images and the effective parameters (all filled in)."""

    content: Image.Image
    style: Image.Image
    params: dict[str, Any]

    @property
    def output_size(self) -> tuple[int, int]:
        """``(width, height)`` of the output, pixels."""
        return fit_long_side(self.content.width, self.content.height, self.params["image_size"])

    def options(self) -> StylizeOptions:
        """The engine options these parameters select."""
        p = self.params
        return StylizeOptions(
            steps=p["steps"], content_weight=p["content_weight"], style_weight=p["style_weight"],
            tv_weight=p["tv_weight"], init=p["init"], seed=p["seed"],
        )


def _check_value(param: Param, value: Any, field: str, cap: float | None) -> Any:
    kind_ok = (
        isinstance(value, param.kind) and not isinstance(value, bool)
        or (param.kind is float and isinstance(value, int) and not isinstance(value, bool))
    )
    if not kind_ok:
        raise RequestError(400, "invalid_type", f"{field} must be a JSON {param.kind.__name__}, got {type(value).__name__} {value!r}", field)
    if param.choices is not None and value not in param.choices:
        raise RequestError(400, "invalid_choice", f"{field} must be one of {list(param.choices)}, got {value!r}", field)
    if param.kind is float:
        try:
            value = float(value)
        except OverflowError:  # a JSON integer literal beyond float range, e.g. 1 followed by 400 zeros
            value = float("inf") if value > 0 else float("-inf")
        if value != value or value in (float("inf"), float("-inf")):
            raise RequestError(400, "out_of_range", f"{field} must be a finite number, got {value}", field)
    maximum = min(m for m in (param.maximum, cap) if m is not None) if (param.maximum, cap) != (None, None) else None
    if (param.minimum is not None and value < param.minimum) or (maximum is not None and value > maximum):
        raise RequestError(
            400, "out_of_range", f"{field} must be in [{param.minimum}, {maximum}], got {value}", field
        )
    return value


def parse_params(raw: Any, *, defaults: Mapping[str, Any] | None = None, limits: Limits = Limits()) -> dict[str, Any]:
    """Validate the ``params`` object and fill in defaults.

    Args:
        raw: the JSON value of ``params`` (``None`` means all defaults).
        defaults: server-side overrides of :data:`PARAMS` defaults (``handler.defaults``).
        limits: caps on ``image_size`` and ``steps``.

    Returns:
        Every parameter of :data:`PARAMS` with its effective value.

    Raises:
        RequestError: 400 naming the field (``params.<name>``) for an unknown parameter, a
            wrong JSON type, a value out of range or not among the choices.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RequestError(400, "invalid_type", f"params must be a JSON object, got {type(raw).__name__}", "params")
    unknown = sorted(set(raw) - set(PARAMS))
    if unknown:
        raise RequestError(
            400, "unknown_param", f"unknown parameter {unknown[0]!r}; known: {', '.join(PARAMS)}", f"params.{unknown[0]}"
        )
    caps = {"image_size": limits.max_image_side, "steps": limits.max_steps}
    merged = {name: p.default for name, p in PARAMS.items()} | dict(defaults or {}) | raw
    return {
        name: _check_value(PARAMS[name], merged[name], f"params.{name}", caps.get(name)) for name in PARAMS
    }


_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)


def decode_b64_image(value: Any, field: str, limits: Limits) -> Image.Image:
    """Decode a base64 (or ``data:`` URL) image field to an RGB ``PIL.Image``.

    Raises:
        RequestError: 400 ``invalid_type``/``invalid_base64``/``invalid_image``, or 413
            ``image_too_large`` over ``limits.max_input_bytes`` or ``limits.max_input_pixels``.
    """
    if not isinstance(value, str):
        raise RequestError(400, "invalid_type", f"{field} must be a base64 string, got {type(value).__name__}", field)
    value = _DATA_URL.sub("", value, count=1)
    if len(value) * 3 // 4 > limits.max_input_bytes + 3:
        raise RequestError(413, "image_too_large", f"{field} is over the limit of {limits.max_input_bytes} bytes", field)
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "invalid_base64", f"{field} is not valid base64", field) from None
    try:
        return decode_image(data, max_pixels=limits.max_input_pixels)
    except ImageTooLargeError as exc:
        raise RequestError(413, "image_too_large", f"{field}: {exc}", field) from None
    except ImageDecodeError as exc:
        raise RequestError(400, "invalid_image", f"{field}: {exc}", field) from None


def parse_request(body: Any, *, defaults: Mapping[str, Any] | None = None, limits: Limits = Limits()) -> StyleRequest:
    """Validate one request body (parsed JSON, or raw bytes/str that should be JSON).

    Parameters are checked before any image is decoded, so a bad parameter costs nothing.

    Raises:
        RequestError: the first problem found, naming its field.
    """
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError) as exc:
            # ValueError covers JSONDecodeError, UnicodeDecodeError and an integer over Python's
            # 4300-digit limit; RecursionError, arrays or objects nested too deeply.
            raise RequestError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError(400, "invalid_body", f"request body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(BODY_FIELDS))
    if unknown:
        raise RequestError(400, "unknown_field", f"unknown field {unknown[0]!r}; known: {', '.join(BODY_FIELDS)}", unknown[0])
    for name in ("content", "style"):
        if name not in body:
            raise RequestError(400, "missing_field", f"{name} is required (a base64-encoded image)", name)
    params = parse_params(body.get("params"), defaults=defaults, limits=limits)
    content = decode_b64_image(body["content"], "content", limits)
    style = decode_b64_image(body["style"], "style", limits)
    w, h = fit_long_side(content.width, content.height, params["image_size"])
    needed = min_side(_OPTIONS.content_layers + _OPTIONS.style_layers)
    if min(w, h) < needed:
        raise RequestError(
            400, "image_too_small",
            f"the output would be {w}x{h} pixels; both sides must be at least {needed} pixels "
            "(raise params.image_size or use a less elongated content image)",
            "params.image_size",
        )
    sw, sh = fit_long_side(style.width, style.height, params["image_size"])
    if min(sw, sh) < needed:
        raise RequestError(
            400, "image_too_small",
            f"the style image would be {sw}x{sh} pixels at this image_size; both sides must be at least {needed}",
            "style",
        )
    return StyleRequest(content=content, style=style, params=params)

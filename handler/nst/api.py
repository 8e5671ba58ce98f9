"""The JSON request of ``POST /predictions/nst``: parameter table, validation and image decoding.

Pure Python over parsed JSON: it knows nothing of TorchServe or HTTP transport, so the handler
and the tests share one definition of what a valid request is. ``docs/api.md`` documents it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

from .images import OUTPUT_FORMATS, ImageDecodeError, ImageTooLargeError, decode_image, fit_long_side
from .stylize import COLOR_CONTROLS, INITS, MODES, OPTIMIZERS, StylizeOptions, pyramid_sides
from .vgg import DEFAULT_NETWORK, POOLINGS, VGG19_LAYERS, layer_names, min_side

_OPTIONS = StylizeOptions()


@dataclass(frozen=True)
class Param:
    """One request parameter: JSON type, default, allowed range or choices, unit.

    ``kind`` is ``int``, ``float``, ``str``, ``bool`` or ``list`` (then ``item`` is the element
    type and ``minimum``/``maximum``/``choices`` apply to each element). ``nullable`` allows
    JSON ``null``, meaning "not set".
    """

    name: str
    kind: type
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    item: type | None = None
    nullable: bool = False
    unit: str = ""


#: Every parameter of ``params``, with the engine's defaults. ``image_size`` and ``steps`` are
#: further capped by the server's limits (``handler.limits`` in ``model-config.yaml``).
#: ``scales`` is an integer or a list of integers and is checked by hand. The layer lists'
#: choices here are every network's names; a request is checked against the served network's
#: (:data:`LAYER_PARAMS`).
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
        Param("style_blend_weights", list, None, 0.0, 1e12, item=float, nullable=True),
        Param("style_scale", float, _OPTIONS.style_scale, 0.05, 8.0),
        Param("color_control", str, _OPTIONS.color_control, choices=COLOR_CONTROLS),
        Param("pooling", str, _OPTIONS.pooling, choices=POOLINGS),
        Param("content_layers", list, list(_OPTIONS.content_layers), choices=VGG19_LAYERS, item=str),
        Param("style_layers", list, list(_OPTIONS.style_layers), choices=VGG19_LAYERS, item=str),
        Param("style_layer_weights", list, None, 0.0, 1e12, item=float, nullable=True),
        Param("optimizer", str, _OPTIONS.optimizer, choices=OPTIMIZERS),
        Param("learning_rate", float, _OPTIONS.learning_rate, 1e-6, 1.0, unit="pixel values per iteration"),
        Param("lbfgs_history", int, _OPTIONS.lbfgs_history, 1, 1000, unit="iterations"),
        Param("scales", int, 1, 1, 8),
        Param("mode", str, _OPTIONS.mode, choices=MODES),
        Param("return_history", bool, False),
        Param("time_budget_s", float, None, 0.1, 86400.0, nullable=True, unit="seconds"),
        Param("stream", bool, False),
        Param("progress_every", int, 10, 1, 1_000_000, unit="iterations"),
        Param("preview_every", int, 0, 0, 1_000_000, unit="iterations"),
    )
}

#: Parameters whose items name layers of the served network (VGG16 lacks some of VGG19's).
LAYER_PARAMS = ("content_layers", "style_layers")

#: Top-level fields of the request body; every image is base64.
BODY_FIELDS = ("content", "style", "params", "init_image", "content_mask", "style_masks")
MAX_LEVELS = 8
#: Smallest side, in pixels, of a content, style or init image as sent.
MIN_INPUT_SIDE = 16


class RequestError(Exception):
    """A request the server refuses; becomes ``{"error": {code, message, field}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


def _bad(code: str, message: str, field: str | None) -> RequestError:
    return RequestError(400, code, message, field)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; set under ``handler.limits`` in ``model-config.yaml``."""

    max_image_side: int = 1024
    """Largest ``image_size`` (long side of the output), pixels; style images may be up to
    twice this after ``style_scale``."""
    max_steps: int = 2000
    """Largest ``steps``, iterations."""
    max_input_pixels: int = 25_000_000
    """Largest decoded input image, width x height pixels (checked from the header, before decoding)."""
    max_input_bytes: int = 20_000_000
    """Largest encoded input image, bytes (after base64 decoding)."""
    max_styles: int = 4
    """Most style images in one request."""


@dataclass(frozen=True)
class StyleRequest:
    """A validated request: decoded RGB images and the effective parameters (all filled in)."""

    content: Image.Image
    styles: list[Image.Image]
    params: dict[str, Any]
    init_image: Image.Image | None = None
    content_mask: Image.Image | None = None
    style_masks: list[Image.Image] | None = None
    digests: dict[str, Any] | None = None
    """sha256 (hex) of each image field as sent: ``content``, ``style`` (a list), and with masks
    ``content_mask`` and ``style_masks`` (a list); what the style cache keys on."""

    @property
    def style(self) -> Image.Image:
        """The first style image."""
        return self.styles[0]

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
            content_layers=tuple(p["content_layers"]), style_layers=tuple(p["style_layers"]),
            style_layer_weights=_tuple_or_none(p["style_layer_weights"]),
            style_blend_weights=_tuple_or_none(p["style_blend_weights"]),
            style_scale=p["style_scale"], color_control=p["color_control"], pooling=p["pooling"],
            optimizer=p["optimizer"], learning_rate=p["learning_rate"], lbfgs_history=p["lbfgs_history"],
            scales=tuple(p["scales"]) if len(p["scales"]) > 1 else (), mode=p["mode"],
            time_budget_s=p["time_budget_s"],
        )


def _tuple_or_none(value: list[float] | None) -> tuple[float, ...] | None:
    return None if value is None else tuple(value)


def _is(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False  # JSON true/false is not a number
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _to_float(value: Any, field: str) -> float:
    try:
        value = float(value)
    except OverflowError:  # a JSON integer literal beyond float range
        value = float("inf") if value > 0 else float("-inf")
    if value != value or value in (float("inf"), float("-inf")):
        raise _bad("out_of_range", f"{field} must be a finite number, got {value}", field)
    return value


def _check_scalar(param: Param, kind: type, value: Any, field: str, cap: float | None) -> Any:
    if not _is(value, kind):
        raise _bad("invalid_type", f"{field} must be a JSON {_json_type(kind)}, got {type(value).__name__} {value!r}", field)
    if param.choices is not None and value not in param.choices:
        if len(param.choices) > 10:
            message = f"{field}: unknown name {value!r}; valid names: {', '.join(param.choices)}"
        else:
            message = f"{field} must be one of {list(param.choices)}, got {value!r}"
        raise _bad("invalid_choice", message, field)
    if kind is float:
        value = _to_float(value, field)
    if kind in (int, float):
        maximum = min((m for m in (param.maximum, cap) if m is not None), default=None)
        if (param.minimum is not None and value < param.minimum) or (maximum is not None and value > maximum):
            raise _bad("out_of_range", f"{field} must be in [{param.minimum}, {maximum}], got {value}", field)
    return value


def _json_type(kind: type) -> str:
    return {int: "integer", float: "number", str: "string", bool: "boolean", list: "array"}[kind]


def _check_value(param: Param, value: Any, field: str, cap: float | None) -> Any:
    if value is None and param.nullable:
        return None
    if param.kind is not list:
        return _check_scalar(param, param.kind, value, field, cap)
    if not isinstance(value, list):
        raise _bad("invalid_type", f"{field} must be a JSON array, got {type(value).__name__} {value!r}", field)
    if not value:
        raise _bad("out_of_range", f"{field} must not be empty", field)
    assert param.item is not None
    return [_check_scalar(param, param.item, v, f"{field}[{i}]", cap) for i, v in enumerate(value)]


def _check_scales(value: Any, image_size: int) -> list[int]:
    """``scales``: a level count (1 .. 8) or increasing long sides; returns every level's long side."""
    field = "params.scales"
    if _is(value, int):
        if not 1 <= value <= MAX_LEVELS:
            raise _bad("out_of_range", f"{field} must be in [1, {MAX_LEVELS}] levels, got {value}", field)
        sides = list(pyramid_sides(image_size, value))
        if sides[0] < 1 or any(b <= a for a, b in zip(sides, sides[1:])):
            # Halving image_size that often rounds to 0 or repeats a side.
            raise _bad("out_of_range", f"{field}: {value} levels halving image_size = {image_size} give the long "
                       f"sides {sides}; each must be at least 1 pixel and larger than the previous", field)
        return sides
    if not isinstance(value, list) or not value or not all(_is(v, int) for v in value):
        raise _bad("invalid_type", f"{field} must be an integer (levels) or a non-empty array of integers (long sides)", field)
    if any(b <= a for a, b in zip(value, value[1:])) or value[0] < 16 or value[-1] > image_size:
        raise _bad(
            "out_of_range",
            f"{field} must be increasing long sides in [16, image_size = {image_size}], got {value}", field,
        )
    sides = value if value[-1] == image_size else [*value, image_size]
    if len(sides) > MAX_LEVELS:
        raise _bad("out_of_range", f"{field} gives {len(sides)} levels; at most {MAX_LEVELS}", field)
    return sides


def parse_params(raw: Any, *, defaults: Mapping[str, Any] | None = None, limits: Limits = Limits(),
                 network: str = DEFAULT_NETWORK) -> dict[str, Any]:
    """Validate the ``params`` object and fill in defaults.

    Args:
        raw: the JSON value of ``params`` (``None`` means all defaults).
        defaults: server-side overrides of :data:`PARAMS` defaults (``handler.defaults``).
        limits: caps on ``image_size`` and ``steps``.
        network: the served network (``"vgg16"`` or ``"vgg19"``), whose layers the layer
            parameters may name.

    Returns:
        Every parameter of :data:`PARAMS` with its effective value: ``scales`` as the list of
        every level's long side, weights normalized to sum 1, and ``mode``'s implied ``init`` and
        weights applied (so the response shows what actually ran).

    Raises:
        RequestError: 400 naming the field (``params.<name>``) for an unknown parameter, a
            wrong JSON type, a value out of range or not among the choices, or parameters that
            contradict each other.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _bad("invalid_type", f"params must be a JSON object, got {type(raw).__name__}", "params")
    unknown = sorted(set(raw) - set(PARAMS))
    if unknown:
        raise _bad("unknown_param", f"unknown parameter {unknown[0]!r}; known: {', '.join(PARAMS)}", f"params.{unknown[0]}")
    caps = {"image_size": limits.max_image_side, "steps": limits.max_steps}
    merged = {name: p.default for name, p in PARAMS.items()} | dict(defaults or {}) | raw
    served_layers = layer_names(network)
    checked = {name: replace(PARAMS[name], choices=served_layers) for name in LAYER_PARAMS}
    params = {
        name: _check_value(checked.get(name, PARAMS[name]), merged[name], f"params.{name}", caps.get(name))
        for name in PARAMS if name != "scales"
    }
    params["scales"] = _check_scales(merged["scales"], params["image_size"])
    if params["steps"] < len(params["scales"]):
        raise _bad("out_of_range", f"params.steps ({params['steps']}) must be at least the number of scales "
                   f"({len(params['scales'])}): every level runs at least one iteration", "params.steps")
    for name in ("content_layers", "style_layers"):
        twice = sorted({n for n in params[name] if params[name].count(n) > 1})
        if twice:
            raise _bad("out_of_range", f"params.{name} names {twice[0]} more than once", f"params.{name}")
    for name in ("style_blend_weights", "style_layer_weights"):
        if params[name] is not None and not sum(params[name]) > 0:
            raise _bad("out_of_range", f"params.{name} must have a positive sum", f"params.{name}")
    if params["style_layer_weights"] is not None and len(params["style_layer_weights"]) != len(params["style_layers"]):
        raise _bad("out_of_range", f"params.style_layer_weights has {len(params['style_layer_weights'])} weights "
                   f"for {len(params['style_layers'])} style_layers", "params.style_layer_weights")
    if params["style_scale"] * params["image_size"] > 2 * limits.max_image_side:
        raise _bad("out_of_range", f"params.style_scale x image_size must be at most {2 * limits.max_image_side} pixels",
                   "params.style_scale")
    # What `mode` implies, so that the echoed parameters are the ones that ran.
    effective = StylizeOptions(
        steps=params["steps"], content_weight=params["content_weight"], style_weight=params["style_weight"],
        tv_weight=params["tv_weight"], init=params["init"], mode=params["mode"],
    ).effective()
    params.update(init=effective.init, content_weight=effective.content_weight,
                  style_weight=effective.style_weight, tv_weight=effective.tv_weight)
    for name in ("style_blend_weights", "style_layer_weights"):
        if params[name] is not None:
            total = sum(params[name])
            params[name] = [w / total for w in params[name]]
    return params


_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)


def decode_b64_image(value: Any, field: str, limits: Limits) -> Image.Image:
    """Decode a base64 (or ``data:`` URL) image field to an RGB ``PIL.Image``.

    Raises:
        RequestError: 400 ``invalid_type``/``invalid_base64``/``invalid_image``, or 413
            ``image_too_large`` over ``limits.max_input_bytes`` or ``limits.max_input_pixels``.
    """
    if not isinstance(value, str):
        raise _bad("invalid_type", f"{field} must be a base64 string, got {type(value).__name__}", field)
    value = _DATA_URL.sub("", value, count=1)
    if len(value) * 3 // 4 > limits.max_input_bytes + 3:
        raise RequestError(413, "image_too_large", f"{field} is over the limit of {limits.max_input_bytes} bytes", field)
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("invalid_base64", f"{field} is not valid base64", field) from None
    try:
        return decode_image(data, max_pixels=limits.max_input_pixels)
    except ImageTooLargeError as exc:
        raise RequestError(413, "image_too_large", f"{field}: {exc}", field) from None
    except ImageDecodeError as exc:
        raise _bad("invalid_image", f"{field}: {exc}", field) from None


def _image_list(value: Any, field: str, limits: Limits) -> list[Image.Image]:
    """A base64 string or a non-empty JSON array of them (at most ``limits.max_styles``)."""
    if isinstance(value, str):
        return [decode_b64_image(value, field, limits)]
    if not isinstance(value, list) or not value:
        raise _bad("invalid_type", f"{field} must be a base64 string or a non-empty array of them", field)
    if len(value) > limits.max_styles:
        raise _bad("out_of_range", f"{field} has {len(value)} images; at most {limits.max_styles}", field)
    return [decode_b64_image(v, f"{field}[{i}]", limits) for i, v in enumerate(value)]


def parse_request(body: Any, *, defaults: Mapping[str, Any] | None = None, limits: Limits = Limits(),
                  network: str = DEFAULT_NETWORK) -> StyleRequest:
    """Validate one request body (parsed JSON, or raw bytes/str that should be JSON).

    Parameters are checked before any image is decoded, so a bad parameter costs nothing.
    ``network`` is the served one (see :func:`parse_params`).

    Raises:
        RequestError: the first problem found, naming its field.
    """
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError) as exc:
            # ValueError covers JSONDecodeError, UnicodeDecodeError and an integer over Python's
            # 4300-digit limit; RecursionError, arrays or objects nested too deeply.
            raise _bad("invalid_json", f"request body is not valid JSON: {exc}", None) from None
    if not isinstance(body, dict):
        raise _bad("invalid_body", f"request body must be a JSON object, got {type(body).__name__}", None)
    unknown = sorted(set(body) - set(BODY_FIELDS))
    if unknown:
        raise _bad("unknown_field", f"unknown field {unknown[0]!r}; known: {', '.join(BODY_FIELDS)}", unknown[0])
    for name in ("content", "style"):
        if name not in body:
            raise _bad("missing_field", f"{name} is required (a base64-encoded image)", name)
    params = parse_params(body.get("params"), defaults=defaults, limits=limits, network=network)

    n_styles = len(body["style"]) if isinstance(body["style"], list) else 1
    if params["style_blend_weights"] is not None and len(params["style_blend_weights"]) != n_styles:
        raise _bad("out_of_range", f"params.style_blend_weights has {len(params['style_blend_weights'])} weights "
                   f"for {n_styles} style images", "params.style_blend_weights")
    if params["init"] == "image" and body.get("init_image") is None:
        raise _bad("missing_field", 'init_image is required when params.init is "image"', "init_image")
    if body.get("init_image") is not None and params["init"] != "image":
        raise _bad("invalid_choice", 'init_image is only used with params.init = "image" '
                   f'(the effective init is {params["init"]!r}; reconstruction modes start from noise)', "params.init")
    has_mask, has_style_masks = body.get("content_mask") is not None, body.get("style_masks") is not None
    if has_mask != has_style_masks:
        missing = "style_masks" if has_mask else "content_mask"
        raise _bad("missing_field", f"spatial control needs both content_mask and style_masks; {missing} is missing", missing)
    if has_style_masks:
        masks = body["style_masks"]
        if not isinstance(masks, list):
            raise _bad("invalid_type", f"style_masks must be an array of base64 images, got {type(masks).__name__}",
                       "style_masks")
        if len(masks) != n_styles:
            raise _bad("out_of_range", f"style_masks must be an array with one mask per style image ({n_styles})",
                       "style_masks")

    content = decode_b64_image(body["content"], "content", limits)
    styles = _image_list(body["style"], "style", limits)
    init_image = decode_b64_image(body["init_image"], "init_image", limits) if body.get("init_image") is not None else None
    content_mask = style_masks = None
    if has_mask:
        content_mask = decode_b64_image(body["content_mask"], "content_mask", limits)
        style_masks = [decode_b64_image(m, f"style_masks[{i}]", limits) for i, m in enumerate(body["style_masks"])]

    # Images this small carry no content or style to speak of (a 1x1 image would be upscaled
    # into a flat colour); masks may be tiny, a one-colour mask being a whole region.
    for field, image in [("content", content), *[(f"style[{i}]" if len(styles) > 1 else "style", st)
                                                 for i, st in enumerate(styles)], ("init_image", init_image)]:
        if image is not None and min(image.size) < MIN_INPUT_SIDE:
            raise _bad("image_too_small", f"{field} is {image.width}x{image.height} pixels; both sides must be at "
                       f"least {MIN_INPUT_SIDE}", field)

    needed = min_side(params["content_layers"] + params["style_layers"])
    for level, side in enumerate(params["scales"]):
        w, h = fit_long_side(content.width, content.height, side)
        if min(w, h) < needed:
            field = "params.image_size" if level == len(params["scales"]) - 1 else "params.scales"
            raise _bad(
                "image_too_small",
                f"the output would be {w}x{h} pixels at long side {side}; both sides must be at least {needed} "
                f"pixels for these layers (raise {field.split('.')[-1]} or use a less elongated content image)",
                field,
            )
        for i, style in enumerate(styles):
            sw, sh = fit_long_side(style.width, style.height, max(1, round(side * params["style_scale"])))
            if min(sw, sh) < needed:
                raise _bad(
                    "image_too_small",
                    f"style image {i} would be {sw}x{sh} pixels at long side {side}; both sides must be at least {needed}",
                    "params.style_scale" if params["style_scale"] < 1 else "style",
                )
    def digest(value: str) -> str:
        return hashlib.sha256(value.encode("ascii", "replace")).hexdigest()

    style_fields = body["style"] if isinstance(body["style"], list) else [body["style"]]
    digests: dict[str, Any] = {"content": digest(body["content"]), "style": [digest(v) for v in style_fields]}
    if has_mask:
        digests["content_mask"] = digest(body["content_mask"])
        digests["style_masks"] = [digest(v) for v in body["style_masks"]]
    return StyleRequest(content=content, styles=styles, params=params, init_image=init_image,
                        content_mask=content_mask, style_masks=style_masks, digests=digests)

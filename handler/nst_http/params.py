"""The ``params`` object of a request: its table, its limits, and parsing it into options.

The engine's parameters are the fields of :class:`nst.options.StylizeOptions`; the serving-only
ones (how the answer is encoded and delivered) the fields of :class:`ServingOptions` below.
:data:`PARAMS`, the whole table, is derived from the two; ``docs/openapi.yaml`` and
``docs/api.md`` are checked against it by the tests. Each value is checked once, by the
dataclass that declares it; this module adds only what a request states differently (``scales``
as a level count) and the server's :class:`Limits`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from nst.images import OUTPUT_FORMATS, OutputFormat
from nst.options import MAX_LEVELS, OptionError, Spec, StylizeOptions, check_fields, declared, option
from nst.plan import level_sides
from nst.vgg import DEFAULT_NETWORK

from .errors import bad, from_option_error

#: Smallest long side, in pixels, a request may give in ``scales``.
MIN_SCALE_SIDE = 16


@dataclass(frozen=True)
class ServingOptions:
    """The request parameters that are not the engine's: the output's size and encoding and
    how the answer is delivered. Checked like :class:`nst.options.StylizeOptions`."""

    image_size: int = option(512, int, minimum=16, unit="pixels")
    """Long side of the output; capped by :attr:`Limits.max_image_side`."""
    output_format: OutputFormat = option("png", str, choices=OUTPUT_FORMATS)
    return_history: bool = option(False, bool)
    """Add the losses of every iteration to the response."""
    stream: bool = option(False, bool)
    """Answer as NDJSON progress events ending with the response body."""
    progress_every: int = option(10, int, minimum=1, maximum=1_000_000, unit="iterations")
    preview_every: int = option(0, int, minimum=0, maximum=1_000_000, unit="iterations")
    """0: no previews."""
    preview_size: int = option(128, int, minimum=16, maximum=8192, unit="pixels")
    """Long side of previews (streamed, and a submitted job's); a level smaller than it (the
    output, or a coarse-to-fine level) gives its own size: previews are never enlarged."""
    dry_run: bool = option(False, bool)
    """Answer at once with the plan (levels, tiles, estimated peak memory and seconds) instead
    of running it; a request the run would refuse gets the same 4xx."""

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class Param(Spec):
    """One row of :data:`PARAMS`: a parameter's :class:`nst.options.Spec` as a request states it
    (its ``wire`` form where it has one), with its name and default as JSON."""

    name: str = ""
    default: Any = None


def _param(name: str, default: Any, spec: Spec) -> Param:
    wire = spec.wire or spec
    default = spec.wire_default if spec.wire is not None else default
    return Param(**{f.name: getattr(wire, f.name) for f in fields(Spec)}, name=name,
                 default=list(default) if isinstance(default, tuple) else default)


_SERVING = tuple(name for name, _, _ in declared(ServingOptions))
_ENGINE = tuple(name for name, _, _ in declared(StylizeOptions))

#: Every parameter of ``params`` with its JSON type, default, range or choices and unit: the
#: serving options', then the engine's. The layer lists' choices are every network's names; a
#: request is checked against the served network's.
PARAMS: Mapping[str, Param] = {
    name: _param(name, default, spec)
    for cls in (ServingOptions, StylizeOptions) for name, default, spec in declared(cls)
}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; set under ``handler.limits`` in ``model-config.yaml``."""

    max_image_side: int = 4096
    """Largest ``image_size`` (long side of the output), pixels; style images may be up to
    twice this after ``style_scale``. Levels too large for the memory budget run in tiles."""
    max_iterations: int = 2000
    """Largest ``iterations`` (``max_steps`` before, still read: :data:`RENAMED`)."""
    max_input_pixels: int = 25_000_000
    """Largest decoded input image, width x height pixels (checked from the header, before decoding)."""
    max_input_bytes: int = 20_000_000
    """Largest encoded input image, bytes (after base64 decoding)."""
    max_styles: int = 4
    """Most style images in one request."""
    memory_budget_mb: int | None = None
    """The worker's peak memory, MiB (resident memory on the CPU, allocated memory on CUDA),
    within which every level is planned (:mod:`nst_http.budget`); ``None``: a third of the
    machine's RAM on the CPU; on CUDA, what the worker's GPU has free at start-up (and the worker
    holds), less a reserve for what the memory model leaves out (:func:`nst_http.budget.cuda_peak`)."""


DEFAULT_LIMITS = Limits()

#: Old spellings still accepted, and the name each now has: in a request's ``params``, in
#: ``handler.defaults`` and (``max_`` + the old name) in ``handler.limits``. docs/api.md,
#: "Renamed parameters", lists them; the SDK and the CLI keep the same (tests/contract).
RENAMED = {"steps": "iterations"}


def current_names(raw: Mapping[str, Any], where: str, *, prefix: str = "") -> dict[str, Any]:
    """``raw`` with every old spelling (``prefix`` + a key of :data:`RENAMED`) under its current name.

    Args:
        where: the object's name in an error (``"params"``, ``"handler.limits"``).

    Raises:
        RequestError: 400 ``invalid_choice`` naming the old spelling, when both spellings are given.
    """
    out = dict(raw)
    for old, new in RENAMED.items():
        if prefix + old in out:
            if prefix + new in out:
                raise bad("invalid_choice", f"{where}.{prefix}{old} is the old spelling of {where}.{prefix}{new}: "
                          "send one of them", f"{where}.{prefix}{old}")
            out[prefix + new] = out.pop(prefix + old)
    return out


def limits_from_config(config: Mapping[str, Any]) -> Limits:
    """``handler.limits`` of ``model-config.yaml`` as :class:`Limits` (old spellings read too).

    Raises:
        RequestError: both spellings of one limit; TypeError: an unknown limit.
    """
    return Limits(**current_names(config, "handler.limits", prefix="max_"))


@dataclass(frozen=True)
class Params:
    """A checked ``params`` object: the serving options and the engine's (as requested, before
    ``mode``)."""

    serving: ServingOptions
    options: StylizeOptions

    def echo(self, sides: tuple[int, ...] | None = None) -> dict[str, Any]:
        """The effective parameters, as the response's ``params`` shows them: every parameter,
        ``scales`` as every level's long side (``sides``, the plan's, where the images are known:
        a content reconstruction picks its own levels), weights normalized, and what ``mode``
        implies applied (so that they are the values that ran)."""
        effective = self.options.effective()
        values = {name: getattr(self.serving, name) for name in _SERVING}
        values |= {name: getattr(effective, name) for name in _ENGINE}
        values["scales"] = sides or effective.scales or (self.serving.image_size,)
        return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}


def _scales(value: Any, image_size: int) -> tuple[int, ...]:
    """The long sides of ``scales`` as the engine takes them (``()`` for one level), from a
    level count or increasing long sides (``image_size`` appended when it is not the last).

    Raises:
        RequestError: 400 ``params.scales``.
    """
    field = "params.scales"
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            sides = level_sides(value, image_size)
        except OptionError as exc:
            raise from_option_error(exc) from None
    elif isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        if any(b <= a for a, b in zip(value, value[1:])) or value[0] < MIN_SCALE_SIDE or value[-1] > image_size:
            raise bad("out_of_range", f"{field} must be increasing long sides in [{MIN_SCALE_SIDE}, image_size = "
                      f"{image_size}], got {value}", field)
        sides = tuple(value if value[-1] == image_size else [*value, image_size])
        if len(sides) > MAX_LEVELS:
            raise bad("out_of_range", f"{field} gives {len(sides)} levels; at most {MAX_LEVELS}", field)
    else:
        raise bad("invalid_type", f"{field} must be an integer (levels) or a non-empty array of integers (long sides)",
                  field)
    return sides if len(sides) > 1 else ()


def parse(raw: Any, *, defaults: Mapping[str, Any] | None = None, limits: Limits = DEFAULT_LIMITS,
          network: str = DEFAULT_NETWORK) -> Params:
    """Check the ``params`` object and fill in defaults.

    Args:
        raw: the JSON value of ``params`` (``None`` means all defaults).
        defaults: server-side overrides of :data:`PARAMS` defaults (``handler.defaults``).
        limits: caps on ``image_size``, ``iterations`` and the style images' size.
        network: the served network (``"vgg16"`` or ``"vgg19"``), whose layers the layer
            parameters may name.

    Raises:
        RequestError: 400 naming the field (``params.<name>``) for an unknown parameter, a
            wrong JSON type, a value out of range or not among the choices, or parameters that
            contradict each other.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise bad("invalid_type", f"params must be a JSON object, got {type(raw).__name__}", "params")
    raw = current_names(raw, "params")
    unknown = sorted(set(raw) - set(PARAMS))
    if unknown:
        raise bad("unknown_param", f"unknown parameter {unknown[0]!r}; known: {', '.join(PARAMS)}",
                  f"params.{unknown[0]}")
    merged = {name: p.default for name, p in PARAMS.items()} | current_names(defaults or {}, "handler.defaults") | raw
    try:
        serving = ServingOptions(**{name: merged[name] for name in _SERVING})
        _cap("image_size", serving.image_size, limits.max_image_side)
        engine = {name: merged[name] for name in _ENGINE} | {"scales": _scales(merged["scales"], serving.image_size)}
        options = StylizeOptions(**engine)
        _cap("iterations", options.iterations, limits.max_iterations)
        options.check_layers(network)
    except OptionError as exc:
        raise from_option_error(exc) from None
    if options.style_scale * serving.image_size > 2 * limits.max_image_side:
        raise bad("out_of_range", f"params.style_scale x image_size must be at most {2 * limits.max_image_side} "
                  "pixels", "params.style_scale")
    if serving.dry_run and serving.stream:
        raise bad("invalid_choice", "params.dry_run answers with the plan at once: it cannot be streamed "
                  "(drop params.stream)", "params.dry_run")
    return Params(serving, options)


def _cap(name: str, value: int, cap: int) -> None:
    if value > cap:
        raise OptionError("out_of_range", name, f"{{field}} must be in [{PARAMS[name].minimum}, {cap}], got {value}")


def parse_params(raw: Any, *, defaults: Mapping[str, Any] | None = None, limits: Limits = DEFAULT_LIMITS,
                 network: str = DEFAULT_NETWORK) -> dict[str, Any]:
    """:func:`parse`, as the effective parameters a response echoes (:meth:`Params.echo`).

    Raises:
        RequestError: see :func:`parse`.
    """
    return parse(raw, defaults=defaults, limits=limits, network=network).echo()

"""The options of one stylization, each declared once, with the rules that check them.

Every option is a field of :class:`StylizeOptions` declared with :func:`option`: its default,
JSON kind, unit, range and choices live in the field's metadata (a :class:`Spec`). Validation,
the HTTP layer's parameter table (``nst_http.params.PARAMS``), the model description's defaults,
``docs/openapi.yaml`` and the table in ``docs/api.md`` are derived from it or checked against it
by the tests. Errors are :class:`OptionError`, which names the offending field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .precision import DEFAULT_PRECISION, PRECISIONS
from .vgg import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, POOLINGS, VGG19_LAYERS, layer_names

INITS: tuple[str, ...] = ("content", "noise", "style", "image")
COLOR_CONTROLS: tuple[str, ...] = ("none", "luminance", "histogram", "original_colors")
#: The colour controls that recolour the style images by the content before the run (so their
#: Gram matrices depend on the content too); ``"original_colors"`` acts after it.
STYLE_RECOLOURING: tuple[str, ...] = ("luminance", "histogram")
OPTIMIZERS: tuple[str, ...] = ("lbfgs", "adam")
#: The style losses (:mod:`nst.losses`, :mod:`nst.wasserstein`).
STYLE_LOSSES: tuple[str, ...] = ("gram", "w2")
MODES: tuple[str, ...] = ("stylize", "reconstruct_content", "reconstruct_style")
#: The total variation weight of the reconstruction modes, relative to the reconstructed
#: term's: measured on HED's VGG16 at 256 px (``docs/quality.md``, "Reconstructions"), 0 leaves
#: the noise the pools cannot see, 1 gives ``relu2_2`` 23.5 dB and ``relu4_2`` 13.2 dB, 3 starts
#: to flatten ``relu2_2``'s detail.
RECONSTRUCTION_TV_WEIGHT = 1.0
#: Most coarse-to-fine levels (``scales``).
MAX_LEVELS = 8
#: Largest loss weight: beyond it float32 losses overflow.
MAX_WEIGHT = 1e12

_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", list: "array"}


@dataclass(frozen=True)
class Spec:
    """How one option is declared: its JSON kind, bounds or choices, and unit.

    ``kind`` is ``int``, ``float``, ``str``, ``bool`` or ``list`` (then ``item`` is the element
    type, the Python value a tuple, and ``minimum``/``maximum``/``choices`` apply to each
    element). ``nullable`` allows ``None`` (JSON ``null``), meaning "not set". ``wire``, when
    set, is the form a request gives the value in where that differs from the field's, with
    ``wire_default`` its default (``scales``: a level count or long sides, default 1 level; the
    field holds long sides, ``()`` for one level).
    """

    kind: type
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    item: type | None = None
    nullable: bool = False
    unit: str = ""
    wire: Spec | None = None
    wire_default: Any = None
    min_items: int = 1
    """Fewest elements of a ``list``."""


def option(default: Any, kind: type, **spec: Any) -> Any:
    """A dataclass field with ``default`` whose metadata declares it (see :class:`Spec`)."""
    return field(default=default, metadata={"spec": Spec(kind, **spec)})


def declared(cls: type) -> Iterator[tuple[str, Any, Spec]]:
    """``(name, default, spec)`` of every field of dataclass ``cls`` declared with :func:`option`,
    in declaration order (undeclared fields, such as engine-only settings, are skipped)."""
    for f in dataclasses.fields(cls):
        if "spec" in f.metadata:
            yield f.name, f.default, f.metadata["spec"]


class OptionError(ValueError):
    """An option value the rules refuse; names the field (``style_layers[1]`` for an item).

    ``code`` says how it failed: ``invalid_type``, ``invalid_choice``, ``out_of_range`` or
    ``image_too_small``. The message is a template whose ``{field}`` stands for the field's
    name, so that the HTTP layer can name it as the request does (``params.style_layers[1]``).
    """

    def __init__(self, code: str, field: str, template: str) -> None:
        self.code, self.field, self.template = code, field, template
        super().__init__(self.message())

    def message(self, prefix: str = "") -> str:
        """The message, naming the field as ``prefix + field``."""
        return self.template.replace("{field}", prefix + self.field)


def _is(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False  # true/false is not a number
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _to_float(value: Any, name: str) -> float:
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float range (JSON allows any length)
        value = float("inf") if value > 0 else float("-inf")
    if value != value or value in (float("inf"), float("-inf")):
        raise OptionError("out_of_range", name, f"{{field}} must be a finite number, got {value}")
    return value


def _check_scalar(spec: Spec, kind: type, value: Any, name: str) -> Any:
    if not _is(value, kind):
        raise OptionError("invalid_type", name,
                          f"{{field}} must be a JSON {_JSON_TYPES[kind]}, got {type(value).__name__} {value!r}")
    if spec.choices is not None and value not in spec.choices:
        if len(spec.choices) > 10:
            message = f"{{field}}: unknown name {value!r}; valid names: {', '.join(spec.choices)}"
        else:
            message = f"{{field}} must be one of {list(spec.choices)}, got {value!r}"
        raise OptionError("invalid_choice", name, message)
    if kind is float:
        value = _to_float(value, name)
    if kind in (int, float) and ((spec.minimum is not None and value < spec.minimum)
                                 or (spec.maximum is not None and value > spec.maximum)):
        bounds = f"at least {spec.minimum}" if spec.maximum is None else f"in [{spec.minimum}, {spec.maximum}]"
        raise OptionError("out_of_range", name, f"{{field}} must be {bounds}, got {value}")
    return value


def check_value(spec: Spec, value: Any, name: str) -> Any:
    """Return ``value`` checked against ``spec`` and normalized: an integer for a ``float`` as
    a float, a list or tuple for a ``list`` as a tuple.

    Raises:
        OptionError: a wrong type, a value out of range or not among the choices, an empty list.
    """
    if value is None and spec.nullable:
        return None
    if spec.kind is not list:
        return _check_scalar(spec, spec.kind, value, name)
    if not isinstance(value, (list, tuple)):
        raise OptionError("invalid_type", name, f"{{field}} must be a JSON array, got {type(value).__name__} {value!r}")
    if len(value) < spec.min_items:
        raise OptionError("out_of_range", name, "{field} must not be empty")
    assert spec.item is not None
    return tuple(_check_scalar(spec, spec.item, v, f"{name}[{i}]") for i, v in enumerate(value))


def check_fields(instance: Any) -> None:
    """Check and normalize, in place, every declared field of a frozen dataclass instance
    (see :func:`check_value`); call it first in ``__post_init__``.

    Raises:
        OptionError: the first field, in declaration order, that fails.
    """
    for name, _, spec in declared(type(instance)):
        object.__setattr__(instance, name, check_value(spec, getattr(instance, name), name))


def normalized(weights: Sequence[float]) -> tuple[float, ...]:
    """``weights`` divided by their sum (which must be positive; each weight is ``>= 0``)."""
    total = float(sum(weights))
    return tuple(w / total for w in weights)


_WEIGHT: dict[str, Any] = {"kind": float, "minimum": 0.0, "maximum": MAX_WEIGHT}
_WEIGHTS: dict[str, Any] = {"kind": list, "item": float, "minimum": 0.0, "maximum": MAX_WEIGHT, "nullable": True}
_LAYERS: dict[str, Any] = {"kind": list, "item": str, "choices": VGG19_LAYERS}


@dataclass(frozen=True)
class StylizeOptions:
    """What to optimize and how; every field a request parameter of the same name except
    ``gradient_checkpointing``. Weights multiply the normalized loss terms of :mod:`nst.losses`,
    so they mean the same at every image size and for either network.

    Construction checks every field (type, range, choices) and the rules between them, and
    normalizes: integers given for numbers become floats, lists tuples, and the blend and layer
    weights are divided by their sum.

    Raises:
        OptionError: the first field that fails, by name (a ``ValueError``).
    """

    iterations: int = option(300, int, minimum=1, unit="iterations")
    """Iterations in all (split across ``scales``); tolerances never end a run early."""
    content_weight: float = option(1.0, **_WEIGHT)
    """Weight of the content loss (Gatys et al. 2016, eq. 7, alpha)."""
    style_weight: float = option(10.0, **_WEIGHT)
    """Relative to ``content_weight`` (eq. 7, beta). Chosen on trained weights (``docs/quality.md``):
    about 1 keeps mostly the photograph with the style's texture, 10 is a strong painterly
    rendering with the content clearly readable, 100 mostly the painting."""
    tv_weight: float = option(10.0, **_WEIGHT)
    """Total variation; suppresses the high-frequency noise that matching Gram matrices leaves.
    On trained weights (``docs/quality.md``) 1 leaves that grain, 10 removes it without
    blurring the strokes, 100 blurs them."""
    init: str = option("content", str, choices=INITS)
    """Start from the content image, seeded uniform noise (the paper), the first style image
    (resized to the output), or a given ``init_image``."""
    seed: int = option(0, int, minimum=0, maximum=2**63 - 1)
    """Seeds the noise initialization."""
    style_blend_weights: tuple[float, ...] | None = option(None, **_WEIGHTS)
    """One per style image, normalized to sum 1; ``None``: equal (jcjohnson/neural-style)."""
    style_scale: float = option(1.0, float, minimum=0.05, maximum=8.0, unit="× the output's long side")
    """Style images are resized to ``style_scale`` x the output's long side before their
    features are taken: above 1 gives finer, below 1 coarser brush strokes (Gatys et al. 2017, sec. 5)."""
    color_control: str = option("none", str, choices=COLOR_CONTROLS)
    """``"luminance"``: transfer on luminance only and keep the content's colours;
    ``"histogram"``: match the style images' colours to the content's first (Gatys et al. 2017, sec. 4);
    ``"original_colors"``: optimize as usual, then give the output the content's chroma (YUV, as
    jcjohnson/neural-style's ``-original_colors 1``; :func:`nst.color.original_colors`)."""
    pooling: str = option("max", str, choices=POOLINGS)
    """``"avg"`` swaps VGG's max-pools for average pools (Gatys et al. 2016, sec. 2)."""
    content_layers: tuple[str, ...] = option(DEFAULT_CONTENT_LAYERS, **_LAYERS)
    """Layers whose features are matched to the content image's (averaged)."""
    style_layers: tuple[str, ...] = option(DEFAULT_STYLE_LAYERS, **_LAYERS)
    """Layers whose Gram matrices are matched to the style images' (Gatys et al. 2016, sec. 3)."""
    style_layer_weights: tuple[float, ...] | None = option(None, **_WEIGHTS)
    """One per style layer, normalized to sum 1; ``None``: equal."""
    style_loss: str = option("gram", str, choices=STYLE_LOSSES)
    """How the style layers' statistics are compared: ``"gram"``, the Gram matrices' normalized
    squared error (Gatys et al. 2016, eq. 4); ``"w2"``, the Wasserstein-2 distance between
    Gaussians with the features' means and covariances (Risser et al. 2017's remedy for the
    Gram loss's ambiguity between a feature's mean and its spread; crowsonkb/style-transfer-pytorch's
    default), :class:`nst.wasserstein.W2StyleLoss`."""
    optimizer: str = option("lbfgs", str, choices=OPTIMIZERS)
    learning_rate: float = option(0.02, float, minimum=1e-6, maximum=1.0, unit="pixel values per iteration")
    """Adam's step size, in pixel values (``[0, 1]``) per iteration; L-BFGS ignores it."""
    lbfgs_history: int = option(100, int, minimum=1, maximum=1000, unit="iterations")
    """L-BFGS memory (pairs of past gradients kept), as in jcjohnson/neural-style."""
    precision: str = option(DEFAULT_PRECISION, str, choices=PRECISIONS)
    """The arithmetic of the VGG passes (:mod:`nst.precision`). ``"fp32"``: strict IEEE float32
    convolutions and matrix products (TF32 off). ``"tf32"``: TensorFloat-32 tensor cores for
    convolutions and matrix products on GPUs that have them (NVIDIA Ampere and newer), float32
    elsewhere; the optimizer, the loss terms and the image stay float32. ``"bf16"``: the
    network's forward pass under ``torch.autocast`` with bfloat16 (on the CPU too, where it is
    slow and only for comparison), Gram matrices and losses still in float32. On a CPU,
    ``"fp32"`` and ``"tf32"`` compute the same."""
    scales: tuple[int, ...] = option((), list, item=int, minimum=1, unit="pixels", min_items=0,
                                     wire=Spec(int, minimum=1, maximum=MAX_LEVELS, unit="levels, or pixels (long sides)"), wire_default=1)
    """Long sides, in pixels, of the coarse-to-fine levels, increasing and ending at the
    output's long side; each level's result, upsampled, starts the next. ``()``: one level.
    (A request may also give a level count; ``nst_http.params`` turns it into sides.)"""
    mode: str = option("stylize", str, choices=MODES)
    """``"reconstruct_content"`` / ``"reconstruct_style"``: start from noise and match only the
    content / only the style representation (Gatys et al. 2016, fig. 1), with the total variation
    term at :data:`RECONSTRUCTION_TV_WEIGHT` (Mahendran & Vedaldi 2015's image prior); a content
    reconstruction without ``scales`` runs coarse to fine from 32 px (:func:`nst.plan.reconstruction_sides`)."""
    time_budget_s: float | None = option(None, float, minimum=0.1, maximum=86400.0, nullable=True, unit="seconds")
    """Seconds of optimization after which the run stops early with the image so far; it stops
    before an iteration that would likely overrun (estimated from the iterations so far).
    ``None``: no limit."""
    tile_size: int | None = option(None, int, minimum=16, maximum=8192, nullable=True, unit="pixels")
    """Side of the tiles every level larger than it is optimized in (:mod:`nst.tiled`: the
    same loss and gradient as the whole image, with peak memory bounded by one tile): no tile
    needs more memory than a square of this side, and where that allows fewer pixels to
    compute, the tiles are bands (:func:`nst.tiling.tile_grid`); ``None``: tiles only where
    the server's memory budget needs them."""
    gradient_checkpointing: bool | None = None
    """Keep only the loss layers' activations for the backward pass and recompute the rest
    (see :class:`nst.vgg.FeatureExtractor`): at 2048 px about 30% more time per iteration for
    30% less peak memory (``benchmarks/RESULTS.md``). ``None``: on for levels above
    ``nst.memory.CHECKPOINT_PIXELS`` pixels (:func:`nst.memory.checkpoints`). Not a request parameter."""

    bounded: bool = True
    """Keep the pixels in ``[0, 1]`` throughout: L-BFGS's steps projected onto the box
    (:class:`nst.optim.LBFGS` ``bounds``), Adam's clamped; ``False``: L-BFGS runs unbounded and
    only the result is clamped (jcjohnson/neural-style). Not a request parameter (the study's
    switch, ``docs/quality.md``)."""
    padding: str = "zeros"
    """How ``conv1_1`` pads the image (:data:`nst.vgg.PADDINGS`). Not a request parameter (the
    study's switch, ``docs/quality.md``)."""
    keep_best: bool = True
    """Return each level's lowest-loss image evaluated rather than its last iterate; ``False``:
    the last (Gatys et al.). Not a request parameter (the study's switch)."""

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("content_layers", "style_layers"):
            names: tuple[str, ...] = getattr(self, name)
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise OptionError("out_of_range", name, f"{{field}} names {twice[0]} more than once")
        for name in ("style_blend_weights", "style_layer_weights"):
            weights = getattr(self, name)
            if weights is not None:
                if not sum(weights) > 0:
                    raise OptionError("out_of_range", name, f"{{field}} must have a positive sum, got {list(weights)}")
                object.__setattr__(self, name, normalized(weights))
        if self.style_layer_weights is not None and len(self.style_layer_weights) != len(self.style_layers):
            raise OptionError("out_of_range", "style_layer_weights", f"{{field}} has {len(self.style_layer_weights)} "
                              f"weights for {len(self.style_layers)} style_layers")
        if any(b <= a for a, b in zip(self.scales, self.scales[1:])):
            raise OptionError("out_of_range", "scales", f"{{field}} must be increasing, got {list(self.scales)}")
        if self.iterations < max(1, len(self.scales)):
            raise OptionError("out_of_range", "iterations", f"{{field}} ({self.iterations}) must be at least the number of "
                              f"scales ({len(self.scales)}): every level runs at least one iteration")

    @property
    def levels(self) -> int:
        """Coarse-to-fine levels (1 without ``scales``)."""
        return max(1, len(self.scales))

    def effective(self) -> StylizeOptions:
        """The options after ``mode``: a reconstruction starts from noise and weights only its
        term. Made (and checked) once per instance."""
        made = self.__dict__.get("_effective")
        if made is None:
            made = self
            if self.mode == "reconstruct_content":
                weight = self.content_weight or 1.0
                made = replace(self, init="noise", content_weight=weight, style_weight=0.0,
                               tv_weight=weight * RECONSTRUCTION_TV_WEIGHT)
            elif self.mode == "reconstruct_style":
                weight = self.style_weight or 1.0
                made = replace(self, init="noise", style_weight=weight, content_weight=0.0,
                               tv_weight=weight * RECONSTRUCTION_TV_WEIGHT)
            object.__setattr__(self, "_effective", made)
        return made

    def check_layers(self, network: str) -> None:
        """Check that every layer named is one of ``network``'s (VGG16 lacks some of VGG19's).

        Raises:
            OptionError: ``invalid_choice`` naming the item (``style_layers[1]``); the message
                lists the network's layers.
        """
        valid = layer_names(network)
        for name in ("content_layers", "style_layers"):
            for i, layer in enumerate(getattr(self, name)):
                if layer not in valid:
                    raise OptionError("invalid_choice", f"{name}[{i}]",
                                      f"{{field}}: unknown name {layer!r}; valid names: {', '.join(valid)}")

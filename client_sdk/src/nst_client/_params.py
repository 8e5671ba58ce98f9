"""What ``stylize`` accepts as keywords, declared once.

:class:`StylizeParams` is the SDK's one declaration of the request parameters (the body's
``params`` object, ``docs/api.md``): each field's name, value type and, as ``typing.Annotated``
metadata, what the command line needs (:class:`Cli`). Everything else is derived from it:

* both clients' ``stylize(..., **params: Unpack[StylizeArgs])`` keywords, and their runtime
  signatures (:func:`keyword_signature`, so ``help()`` and ``inspect`` list every parameter);
* the request body: which keywords go into ``params`` and which are top-level image fields
  (``nst_client._request``);
* the CLI's request flags: name, type, choices, metavar and help (``nst_client.cli._flags``).

One parameter is declared apart, in :class:`PlanParams`: ``dry_run``, which makes the server
answer with its plan instead of an image. It is ``plan()``'s to send, so it is no keyword of
``stylize``, ``stylize_stream`` or ``submit`` (they refuse it at run time, naming ``plan()``);
it is still one of :data:`PARAMS`, the request parameters the spec lists and the CLI flags.

``tests/contract/test_sdk_params.py`` holds it equal to ``docs/openapi.yaml``'s ``Params``, which
the server side holds equal to its own declaration. To add a parameter, add a field here (and
its line to the docstring); the clients, the body and the CLI flag follow.

This module has no ``from __future__ import annotations``: the fields' types are read at run
time (``__annotations__``), so they must be objects, not strings.
"""

import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, List, Literal, Mapping, Optional, Sequence, Tuple, TypedDict, TypeVar, Union

from ._constants import DEFAULT_CLI_PREVIEW_EVERY
from ._images import ImageInput

__all__ = [
    "Cli", "Param", "StylizeParams", "StreamParams", "PlanParams", "StylizeImages", "StylizeArgs", "StreamArgs",
    "InitMode", "ColorControl", "Pooling", "StyleLoss", "OptimizerName", "Precision", "RenderMode", "OutputFormat",
    "PARAMS", "RENAMED", "STREAM_PARAMS", "PLAN_PARAMS", "STYLIZE_PARAMS", "STYLIZE_IMAGES", "DRY_RUN", "keyword_signature",
]

# Allowed values of the string-valued request parameters (public types; the CLI offers them as
# ``choices`` and the contract test compares them with the spec's enums).
InitMode = Literal["content", "noise", "style", "image"]
ColorControl = Literal["none", "luminance", "histogram", "original_colors"]
Pooling = Literal["max", "avg"]
StyleLoss = Literal["gram", "w2"]
OptimizerName = Literal["lbfgs", "adam"]
Precision = Literal["fp32", "tf32", "bf16"]
RenderMode = Literal["stylize", "reconstruct_content", "reconstruct_style"]
OutputFormat = Literal["png", "jpeg", "webp", "tiff16"]


@dataclass(frozen=True)
class Cli:
    """How the command line offers one parameter (``typing.Annotated`` metadata of its field).

    The flag's type follows from the field's type: ``int``/``float`` as such, a ``Literal`` as
    ``choices``, ``bool`` as a switch, a list as comma-separated items (``0.7,0.3``), and
    ``int`` or a list of ints (``scales``) as either.

    Attributes:
        help: The flag's help text.
        metavar: The value's placeholder in ``--help``, naming its unit or form: ``PX`` (pixels),
            ``S`` (seconds), ``N`` (a count), ``W`` (a weight), ``F`` (a factor), ``LIST``.
        flag: The flag when it is not ``--`` and the name with dashes (``--time-budget``).
        items: For a list, what its items are, in the error for a bad one (default: by type).
    """

    help: str
    metavar: Optional[str] = None
    flag: Optional[str] = None
    items: Optional[str] = None


#: Old spellings of parameters, still accepted (the server keeps the same table, and a
#: contract test holds the two equal): as ``stylize`` keywords (with a ``DeprecationWarning``)
#: and as command-line flags (``--steps``).
RENAMED: Mapping[str, str] = {"steps": "iterations"}


class StylizeParams(TypedDict, total=False):
    """The request parameters (``params``); every one is optional and ``None`` is not sent, so the
    server's default applies (see docs/api.md for defaults and ranges).

    Attributes:
        image_size: Long side of the output, in pixels.
        iterations: Optimiser iterations.
        content_weight: Weight of the content loss (unitless).
        style_weight: Weight of the style loss (unitless).
        tv_weight: Weight of the total-variation loss (unitless).
        init: Starting image: ``"content"``, ``"noise"``, ``"style"`` or ``"image"`` (the latter
            uses ``init_image``).
        seed: Random seed (noise init, random weights).
        output_format: ``"png"``, ``"jpeg"``, ``"webp"`` or ``"tiff16"`` (16 bits per channel).
            PNG, WebP and TIFF keep the content image's transparency; every output is tagged sRGB.
        preview_size: Long side of previews (streamed, and a submitted job's), in pixels; never
            larger than the level being optimized, so the output's size or more gives full-size
            snapshots.
        style_blend_weights: Relative weight of each style (one per style; unitless).
        style_scale: Size of the style image relative to the output (unitless factor).
        color_control: Colour preservation: ``"none"``, ``"luminance"``, ``"histogram"`` or
            ``"original_colors"`` (the output's luminance with the content's colours, after the run).
        pooling: VGG19 pooling layers: ``"max"`` or ``"avg"``.
        content_layers: VGG19 layer names for the content loss, e.g. ``["relu4_2"]``.
        style_layers: VGG19 layer names for the style loss, e.g. ``["relu1_1", ...]``.
        style_layer_weights: Weight of each style layer (one per ``style_layers`` entry).
        style_loss: How the style layers' statistics are compared: ``"gram"`` (Gram matrices,
            the server's default) or ``"w2"`` (the Wasserstein-2 distance between Gaussians
            fitted to each layer's features, their means and covariances;
            crowsonkb/style-transfer-pytorch's default).
        optimizer: ``"lbfgs"`` or ``"adam"``.
        learning_rate: Optimiser step size (Adam), in image units (pixel values 0..1) per step.
        lbfgs_history: L-BFGS history size, in (gradient, step) pairs kept.
        precision: The arithmetic of the network's passes on the server's CUDA GPU: ``"fp32"``
            (strict float32), ``"tf32"`` (TensorFloat-32 tensor cores for convolutions and matrix
            products where the GPU has them; the server's default) or ``"bf16"`` (the forward
            pass under bfloat16 autocast; losses stay float32). On a CPU ``"fp32"`` and
            ``"tf32"`` are the same.
        scales: Coarse-to-fine schedule: the number of levels (``int``), or the long side of each
            level in pixels (list of ints).
        mode: ``"stylize"``, ``"reconstruct_content"`` or ``"reconstruct_style"``.
        return_history: Ask for per-iteration losses (``StylizeResult.history``).
        time_budget_s: Seconds of optimization after which the server stops early and answers
            with the image so far (``StylizeResult.stopped`` is then ``"time_budget"``). The read
            timeout of the call becomes ``min(timeout, time_budget_s + DEADLINE_READ_MARGIN)``,
            so a deadline the server cannot keep surfaces as an ``APITimeoutError`` soon after.
        tile_size: Side of the tiles, in pixels, in which each level larger than it is optimized
            (the exact tiled objective: the same loss and gradient as the whole image, peak
            memory bounded by one tile; slower per iteration). ``None``: the server tiles only
            where its memory budget needs it.
    """

    image_size: typing.Annotated[Optional[int], Cli("long side of the output, in pixels", "PX")]
    iterations: typing.Annotated[Optional[int], Cli("optimiser iterations", "N")]
    content_weight: typing.Annotated[Optional[float], Cli("content loss weight", "W")]
    style_weight: typing.Annotated[Optional[float], Cli("style loss weight", "W")]
    tv_weight: typing.Annotated[Optional[float], Cli("total-variation loss weight", "W")]
    init: typing.Annotated[Optional[InitMode], Cli("starting image")]
    seed: typing.Annotated[Optional[int], Cli("random seed", "N")]
    output_format: typing.Annotated[Optional[OutputFormat], Cli("format the server encodes")]
    preview_size: typing.Annotated[Optional[int], Cli(
        "long side of previews in px (server default 128; --save-previews: the output's size)", "PX")]
    style_blend_weights: typing.Annotated[
        Optional[Sequence[float]], Cli("relative weight of each style, e.g. 0.7,0.3", "LIST")]
    style_scale: typing.Annotated[Optional[float], Cli("style image size relative to the output (factor)", "F")]
    color_control: typing.Annotated[Optional[ColorControl], Cli("colour preservation")]
    pooling: typing.Annotated[Optional[Pooling], Cli("VGG19 pooling layers")]
    content_layers: typing.Annotated[
        Optional[Sequence[str]], Cli("VGG19 layers of the content loss, e.g. relu4_2", "LIST", items="layer names")]
    style_layers: typing.Annotated[
        Optional[Sequence[str]],
        Cli("VGG19 layers of the style loss, e.g. relu1_1,relu2_1,relu3_1", "LIST", items="layer names")]
    style_layer_weights: typing.Annotated[
        Optional[Sequence[float]], Cli("weight of each style layer, e.g. 1,1,1", "LIST")]
    style_loss: typing.Annotated[Optional[StyleLoss], Cli(
        "style loss: gram (Gram matrices, server default) or w2 (Wasserstein-2 between the features' Gaussians)")]
    optimizer: typing.Annotated[Optional[OptimizerName], Cli("optimiser")]
    learning_rate: typing.Annotated[Optional[float], Cli("optimiser step size (Adam)", "F")]
    lbfgs_history: typing.Annotated[Optional[int], Cli("L-BFGS history size", "N")]
    precision: typing.Annotated[Optional[Precision], Cli(
        "arithmetic of the network on the server's GPU: fp32 strict, tf32 tensor cores (server default), "
        "bf16 autocast")]
    scales: typing.Annotated[
        Optional[Union[int, Sequence[int]]],
        Cli("coarse-to-fine: number of levels (3) or long side of each level in px (256,512)", "N|LIST")]
    mode: typing.Annotated[Optional[RenderMode], Cli("what to optimise for")]
    return_history: typing.Annotated[Optional[bool], Cli("ask the server for per-iteration losses")]
    time_budget_s: typing.Annotated[
        Optional[float],
        Cli("stop the optimization after S seconds and return the image so far", "S", flag="--time-budget")]
    tile_size: typing.Annotated[
        Optional[int], Cli("optimise levels larger than PX in PX-sided tiles (exact; bounds peak memory)", "PX")]


class PlanParams(TypedDict, total=False):
    """The switch of a dry run: sent as ``true`` by ``plan()`` (never by hand), which the server
    answers at once, without optimizing, with its plan. ``stylize``, ``stylize_stream`` and
    ``submit`` raise ``ValueError`` for ``dry_run=True``, naming ``plan()``.

    Attributes:
        dry_run: Answer with the plan (each level's size in pixels, tiles, L-BFGS history,
            estimated peak memory in bytes and seconds) instead of the image.
    """

    dry_run: typing.Annotated[Optional[bool], Cli(
        "print the server's plan (levels, tiles, peak memory, seconds) instead of running; "
        "what the plan command does (not in sweep)")]


class StreamParams(TypedDict, total=False):
    """The two intervals of a streamed call (``stylize_stream``; sent in ``params`` beside
    ``stream = true``).

    Attributes:
        progress_every: Iterations between progress events (>= 1; server default 10).
        preview_every: Iterations between preview events (>= 0; ``0``, the server default,
            sends none).
    """

    progress_every: typing.Annotated[Optional[int], Cli("iterations between progress events (server default 10)", "N")]
    preview_every: typing.Annotated[Optional[int], Cli(
        f"iterations between preview images (default {DEFAULT_CLI_PREVIEW_EVERY} with --save-previews or --animate)",
        "N")]


class StylizeImages(TypedDict, total=False):
    """The optional images of a stylize call, each sent as a top-level body field (base64).

    Attributes:
        init_image: Starting image for ``init="image"``.
        content_mask: Image whose distinct colours label regions of the content (spatial control).
        style_masks: One mask image per style, in style order; its length must equal the number
            of styles.
    """

    init_image: Optional[ImageInput]
    content_mask: Optional[ImageInput]
    style_masks: Optional[Union[List[ImageInput], Tuple[ImageInput, ...]]]


class StylizeArgs(StylizeParams, StylizeImages, total=False):
    """Every keyword of ``stylize`` but ``progress``: the parameters and the image fields."""


class StreamArgs(StylizeArgs, StreamParams, total=False):
    """Every keyword of ``stylize_stream``: ``stylize``'s and the two stream intervals."""


@dataclass(frozen=True)
class Param:
    """One declared field, unpacked.

    Attributes:
        name: The parameter's name (the JSON key, the keyword, the CLI flag's ``dest``).
        type: Its value type without ``Optional``: ``int``, ``float``, ``bool``, a ``Literal``,
            ``Sequence[...]`` or ``Union[int, Sequence[int]]``.
        cli: Its command-line metadata.
    """

    name: str
    type: Any
    cli: Cli


def _unpack(declaration: type) -> Tuple[Param, ...]:
    """The fields of ``declaration`` (a TypedDict of ``Annotated[Optional[T], Cli(...)]``), in order."""
    fields = []
    for name, hint in declaration.__annotations__.items():
        optional, *meta = typing.get_args(hint)
        cli = next(m for m in meta if isinstance(m, Cli))
        kinds = [t for t in typing.get_args(optional) if t is not type(None)]
        fields.append(Param(name, kinds[0] if len(kinds) == 1 else Union[tuple(kinds)], cli))
    return tuple(fields)


#: The dry-run switch (``plan()``'s).
PLAN_PARAMS: Tuple[Param, ...] = _unpack(PlanParams)
#: The request parameters, in declaration order (the CLI's flag order): ``stylize``'s, then
#: ``dry_run``. (``stream`` and its intervals are ``stylize_stream``'s.)
PARAMS: Tuple[Param, ...] = _unpack(StylizeParams) + PLAN_PARAMS
#: The stream intervals of ``stylize_stream``.
STREAM_PARAMS: Tuple[Param, ...] = _unpack(StreamParams)
#: The keywords of ``stylize`` that go into the request's ``params`` object (when not ``None``).
STYLIZE_PARAMS: Tuple[str, ...] = tuple(StylizeParams.__annotations__)
#: The parameter that makes a stylize request a dry run (see :class:`PlanParams`).
DRY_RUN: str = PLAN_PARAMS[0].name
#: The keywords of ``stylize`` sent as top-level image fields.
STYLIZE_IMAGES: Tuple[str, ...] = tuple(StylizeImages.__annotations__)

_F = TypeVar("_F", bound=Callable[..., Any])


def keyword_signature(declaration: type) -> Callable[[_F], _F]:
    """Show a method's ``**params`` as ``declaration``'s fields in its runtime signature.

    ``Unpack[...]`` already tells type checkers; this tells ``inspect.signature``, ``help()`` and
    editors that read the runtime signature: each field becomes a keyword-only parameter with
    default ``None``, placed before ``**params`` (which still takes further server parameters).

    Args:
        declaration: A TypedDict, e.g. :class:`StylizeArgs`.

    Returns:
        A decorator that sets the function's ``__signature__`` and returns the function.
    """

    def decorate(func: _F) -> _F:
        signature = inspect.signature(func)
        *named, var_keyword = signature.parameters.values()
        assert var_keyword.kind is inspect.Parameter.VAR_KEYWORD, func
        fields = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                    annotation=getattr(hint, "__origin__", hint) if hasattr(hint, "__metadata__") else hint)
                  for name, hint in declaration.__annotations__.items()]
        func.__signature__ = signature.replace(parameters=[*named, *fields, var_keyword])  # type: ignore[attr-defined]
        return func

    return decorate

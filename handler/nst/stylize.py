"""Gatys et al. (2016) neural style transfer: optimize the pixels of one image.

L. A. Gatys, A. S. Ecker, M. Bethge, "Image Style Transfer Using Convolutional Neural Networks",
CVPR 2016. The image is optimized to match the content image's features at the content layers
and the style images' (blended) Gram matrices at the style layers, with a total-variation
smoothness term. The controls of Gatys et al. 2017 ("Controlling Perceptual Factors in Neural
Style Transfer": spatial, colour and scale control) and coarse-to-fine optimization with warm
starts (as in crowsonkb/style-transfer-pytorch) are options of the same loop.

What to run is a :class:`nst.plan.Plan` (the levels, their sizes and iterations) of
:class:`nst.options.StylizeOptions`; :func:`stylize` executes it level by level.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial

import torch

from . import color, host
from .cache import StyleCache
from .images import initial_image, resize
from .losses import (
    ContentLoss,
    GuidedStyleLoss,
    StyleLoss,
    gram_matrix,
    guided_gram_matrix,
    tv_loss,
)
from .masks import MaskError, label_regions, region_colors, resize_regions
from .memory import checkpoints
from .optim import LBFGS, Adam, Optimizer
from .options import StylizeOptions, normalized
from .plan import Level, Plan, check_inputs, make_plan
from .precision import numerics
from .records import Iterate, Recorder, Stopping, Stylized, named_terms
from .tiled import assembled_features, evaluate_tiled, image_grams
from .tiling import tile_grid
from .vgg import FeatureExtractor, VGGFeatures, feature_size

DEFAULT_OPTIONS = StylizeOptions()



def _check_image(image: torch.Tensor, name: str) -> None:
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
        raise ValueError(f"{name} must have shape (1, 3, H, W), got {tuple(image.shape)}")


def _size(image: torch.Tensor) -> tuple[int, int]:
    """Return ``(H, W)``, in pixels, of a ``(..., H, W)`` tensor."""
    return image.shape[-2], image.shape[-1]


class _Targets:
    """Loss modules for one level: content features and (blended, maybe region-guided) Grams.

    With ``tile`` (pixels) every pass over an image of this level (the content's, the styles',
    the optimized one's) runs tile by tile (:mod:`nst.tiled`): the same loss and gradient, with
    peak memory bounded by one tile's crop, and ``kept_tails`` tiles' graphs after
    :data:`nst.tiled.TAIL_AFTER` kept between the passes.
    """

    def __init__(self, features: VGGFeatures, opts: StylizeOptions, content: torch.Tensor,
                 styles: list[torch.Tensor], blend: Sequence[float],
                 content_regions: torch.Tensor | None, style_regions: list[torch.Tensor] | None,
                 cache: StyleCache | None = None, style_keys: Sequence[Hashable] | None = None,
                 tile: int | None = None, checkpointing: bool | None = None, kept_tails: int = 0) -> None:
        self.cache_hits = self.cache_misses = 0
        self.tile = tile
        self.kept_tails = kept_tails
        layers = opts.content_layers + opts.style_layers
        self.tiles = None if tile is None else tile_grid(_size(content), tile, layers)
        with torch.no_grad():
            content_extractor = FeatureExtractor(features, opts.content_layers, opts.pooling, precision=opts.precision)
            content_feats = assembled_features(content_extractor, content, self.tiles)
            self.content = {n: ContentLoss(content_feats[n]) for n in opts.content_layers}
            del content_feats
            style_grams = [
                self._style_grams(features, opts, s, None if style_regions is None else style_regions[i],
                                  cache, None if style_keys is None else style_keys[i])
                for i, s in enumerate(styles)
            ]
            self.style: dict[str, StyleLoss | GuidedStyleLoss] = {}
            for name in opts.style_layers:
                grams = [g[name] for g in style_grams]
                if content_regions is None:
                    target = sum((w * g for w, g in zip(blend, grams)), torch.zeros_like(grams[0]))
                    self.style[name] = StyleLoss(target)
                    continue
                assert style_regions is not None
                # Each region's target blends the styles that have pixels of that region's colour.
                present = [(r.flatten(1).sum(1) > 0).float() * w for r, w in zip(style_regions, blend)]  # (R,) each
                weight = torch.stack(present)  # (S, R)
                weight = weight / weight.sum(0, keepdim=True)
                target = torch.einsum("sr,srij->rij", weight, torch.stack(grams))  # (R, C, C)
                layer_size = feature_size(_size(content), name)
                self.style[name] = GuidedStyleLoss(target, resize_regions(content_regions, layer_size))
        checkpointing = checkpoints(_size(content), tile,
                                    opts.gradient_checkpointing if checkpointing is None else checkpointing)
        self.extractor = FeatureExtractor(features, layers, opts.pooling, checkpointing=checkpointing,
                                          precision=opts.precision)
        # Pass 1 of a tiled evaluation stops at the deepest style layer.
        self.style_extractor = None if self.tiles is None else FeatureExtractor(features, opts.style_layers,
                                                                               opts.pooling, precision=opts.precision)
        layer_weights = opts.style_layer_weights or normalized([1.0] * len(opts.style_layers))
        self.layer_weights = dict(zip(opts.style_layers, layer_weights))
        self.opts = opts

    def _style_grams(self, features: VGGFeatures, opts: StylizeOptions, style: torch.Tensor,
                     regions: torch.Tensor | None, cache: StyleCache | None,
                     style_key: Hashable | None) -> dict[str, torch.Tensor]:
        """``{layer: (1, C, C) Gram}`` of one style image, or ``(R, C, C)`` region-guided Grams."""
        key = None
        if cache is not None and style_key is not None:
            # Everything the Grams depend on besides what the caller's key names (the style
            # input, and with colour control or masks the content and the masks).
            key = (style_key, tuple(style.shape), opts.style_layers, opts.pooling, opts.precision, opts.color_control,
                   regions is not None, id(features), str(style.device))
            cached = cache.get(key)
            if cached is not None:
                self.cache_hits += 1
                return cached
            self.cache_misses += 1
        extractor = FeatureExtractor(features, opts.style_layers, opts.pooling, precision=opts.precision)
        if self.tile is not None:
            grams = image_grams(extractor, style, tile_grid(_size(style), self.tile, opts.style_layers), regions)
        else:
            feats = extractor(style)
            if regions is None:
                grams = {n: gram_matrix(f) for n, f in feats.items()}
            else:
                grams = {n: guided_gram_matrix(f, resize_regions(regions, f.shape[-2:])) for n, f in feats.items()}
        if key is not None:
            assert cache is not None
            cache.put(key, grams)
        return grams

    def evaluate(self, image: torch.Tensor) -> torch.Tensor:
        """The loss terms of ``image`` (a leaf that requires a gradient), a ``(4,)`` tensor on
        its device in the order of :data:`nst.records.TERMS`, with the gradient added to
        ``image.grad``: one backward pass, or tile by tile. Reads nothing back to the host."""
        if self.tiles is None:
            total, terms = self(image)
            total.backward()
            return terms
        return self._tiled(image, backward=True)

    def losses(self, image: torch.Tensor) -> dict[str, float]:
        """The loss terms of ``image``, without a gradient, read to the host (one read)."""
        with torch.no_grad():
            terms = self(image)[1] if self.tiles is None else self._tiled(image, backward=False)
        return named_terms(host.to_host(terms))

    def _tiled(self, image: torch.Tensor, *, backward: bool) -> torch.Tensor:
        assert self.tiles is not None and self.style_extractor is not None
        o = self.opts
        return evaluate_tiled(image, self.tiles, style_extractor=self.style_extractor, extractor=self.extractor,
                              content=self.content, style=self.style, layer_weights=self.layer_weights,
                              weights=(o.content_weight, o.style_weight, o.tv_weight), backward=backward,
                              kept_tails=self.kept_tails)

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of ``image`` (untiled) as a tensor with its autograd graph, and its terms
        (:data:`nst.records.TERMS`, a detached ``(4,)`` tensor)."""
        feats = self.extractor(image)
        # Content layers are averaged and style layers weighted to sum 1, so adding a layer
        # does not change a group's overall weight.
        content_term = sum(loss(feats[n]) for n, loss in self.content.items()) / len(self.content)
        style_term = sum(self.layer_weights[n] * loss(feats[n]) for n, loss in self.style.items())
        tv_term = tv_loss(image)
        o = self.opts
        total = o.content_weight * content_term + o.style_weight * style_term + o.tv_weight * tv_term
        return total, torch.stack([content_term, style_term, tv_term, total]).detach()


@dataclass
class _Inputs:
    """The images of one run after colour control and labelling, at full resolution; makes
    each level's loss targets (and counts the style-cache lookups they took)."""

    features: VGGFeatures
    plan: Plan
    content: torch.Tensor
    """``(1, 3, H, W)`` content target (with luminance-only control, its luminance)."""
    styles: list[torch.Tensor]
    content_regions: torch.Tensor | None
    style_regions: list[torch.Tensor] | None
    cache: StyleCache | None
    style_keys: Sequence[Hashable] | None
    cache_hits: int = 0
    cache_misses: int = 0

    def level(self, level: Level) -> tuple[torch.Tensor, list[torch.Tensor], _Targets]:
        """Content, styles and loss targets at ``level``'s sizes."""
        content = resize(self.content, level.size)
        styles = [resize(s, size) for s, size in zip(self.styles, level.style_sizes)]
        content_regions = None if self.content_regions is None else resize_regions(self.content_regions, level.size)
        style_regions = None if self.style_regions is None else [
            resize_regions(r, size) for r, size in zip(self.style_regions, level.style_sizes)
        ]
        targets = _Targets(self.features, self.plan.options, content, styles, self.plan.blend, content_regions,
                           style_regions, self.cache, self.style_keys, tile=level.tile,
                           checkpointing=level.checkpointing, kept_tails=level.kept_tails)
        self.cache_hits += targets.cache_hits
        self.cache_misses += targets.cache_misses
        return content, styles, targets


def stylize(
    content: torch.Tensor,
    style: torch.Tensor | Sequence[torch.Tensor],
    features: VGGFeatures,
    options: StylizeOptions = DEFAULT_OPTIONS,
    *,
    init_image: torch.Tensor | None = None,
    content_mask: torch.Tensor | None = None,
    style_masks: Sequence[torch.Tensor] | None = None,
    callback: Callable[[Iterate], None] | None = None,
    cache: StyleCache | None = None,
    style_keys: Sequence[Hashable] | None = None,
    plan: Plan | None = None,
    cancel: threading.Event | None = None,
) -> Stylized:
    """Render ``content`` in the style of ``style`` (one image or several, blended).

    Args:
        content: ``(1, 3, H, W)`` content image, values in ``[0, 1]``; fixes the output size.
        style: ``(1, 3, H_s, W_s)`` style image(s), values in ``[0, 1]``, any size; each is
            resized to ``style_scale`` x the long side of the level being optimized.
        features: VGG16 or VGG19 ``features`` from :func:`nst.vgg.build_features`, on the
            same device as the images; the computation runs there. The layers named in
            ``options`` must be layers of this network.
        options: see :class:`nst.options.StylizeOptions`.
        init_image: ``(1, 3, H_i, W_i)`` start for ``init="image"``.
        content_mask: ``(1, 3, H, W)`` colour-labelled regions of the output (spatial control);
            needs ``style_masks``, one ``(1, 3, H_s, W_s)`` per style, in the same colours.
        callback: called after every evaluation with an :class:`Iterate`.
        cache: where style Gram matrices are looked up and kept (see :mod:`nst.cache`).
        style_keys: one hashable per style naming everything its Grams depend on besides the
            computation itself: the style input and, with a ``color_control`` of
            :data:`nst.options.STYLE_RECOLOURING`, the content image, and with masks, both masks. Without keys nothing is
            cached.
        plan: the :class:`nst.plan.Plan` of ``options`` for these images, already checked (the
            HTTP layer makes it while validating a request, with the layers checked against
            this network); ``None``: checked and made here.
        cancel: when set (from any thread), the run stops before its next iteration and
            returns the image so far, full size, with ``stopped == "cancelled"`` (the first
            level always runs one iteration, as with ``time_budget_s``).

    Returns:
        A :class:`Stylized` with the ``(1, 3, H, W)`` image clamped to ``[0, 1]``.

    Raises:
        ValueError: images of the wrong shape; :class:`nst.options.OptionError` (a
            ``ValueError``) for images too small for the layers in use (at any level), a layer
            the network lacks, weights that do not match the styles, ``init="image"`` without
            an ``init_image``.
        nst.masks.MaskError: masks that do not make regions (a ``ValueError``).
    """
    styles = [style] if isinstance(style, torch.Tensor) else list(style)
    if not styles:
        raise ValueError("at least one style image is needed")
    _check_image(content, "content")
    for i, s in enumerate(styles):
        _check_image(s, f"style[{i}]")
    if plan is None:
        options.check_layers(features.network)
        blend = check_inputs(options, len(styles), has_init_image=init_image is not None)
        plan = make_plan(_size(content), [_size(s) for s in styles], options, blend=blend)
    inputs = _prepare(features, plan, content, styles, content_mask, style_masks, cache, style_keys)
    recorder = Recorder(plan, callback)
    deadline = None if plan.options.time_budget_s is None else time.monotonic() + plan.options.time_budget_s
    stopping = Stopping(deadline, cancel)
    image, ran = _run_levels(inputs, recorder, init_image, stopping)
    if plan.options.color_control == "luminance":
        image = color.combine_luminance(image, content)
    elif plan.options.color_control == "original_colors":
        image = color.original_colors(image, content)
    return Stylized(image=image, iterations=recorder.done, losses=dict(recorder.history[-1].losses),
                    history=recorder.history, sizes=[level.size for level in ran],
                    stopped=stopping.reason,
                    cache_hits=inputs.cache_hits, cache_misses=inputs.cache_misses)


def _prepare(features: VGGFeatures, plan: Plan, content: torch.Tensor, styles: list[torch.Tensor],
             content_mask: torch.Tensor | None, style_masks: Sequence[torch.Tensor] | None,
             cache: StyleCache | None, style_keys: Sequence[Hashable] | None) -> _Inputs:
    """Colour control (once, at full resolution: Gatys et al. 2017, sec. 4) and the masks'
    regions (:mod:`nst.masks`), for :class:`_Inputs`.

    Raises:
        nst.masks.MaskError: one mask missing, or a content region no style (with a positive
            blend weight) has pixels of.
    """
    target_content = content
    if plan.options.color_control == "histogram":
        styles = [color.match_color_histogram(s, content) for s in styles]
    elif plan.options.color_control == "luminance":
        target_content = color.luminance(content)
        styles = [color.match_luminance(color.luminance(s), target_content) for s in styles]
    content_regions = style_regions = None
    if content_mask is not None or style_masks is not None:
        if content_mask is None or style_masks is None or len(style_masks) != len(styles):
            raise MaskError("spatial control needs a content_mask and one style mask per style")
        # Label at the masks' own resolution (resizing a label map would blend its colours),
        # then resize the one-hot regions, which gives soft region edges.
        colors = region_colors(content_mask)
        content_regions = resize_regions(label_regions(content_mask, colors), _size(content))
        style_regions = [label_regions(m, colors) for m in style_masks]
        # Only styles with a positive blend weight count: a region painted only by zero-weight
        # styles would get an all-zero (0/0 = NaN) target.
        covered = torch.stack([r.flatten(1).sum(1) * float(w > 0) for r, w in zip(style_regions, plan.blend)]).sum(0)
        for r in torch.nonzero(covered == 0).flatten().tolist():
            rgb = tuple(int(v) for v in colors[r])
            raise MaskError(f"content_mask region of colour {rgb} has no pixel of that colour in any style mask "
                            "(of a style with a positive blend weight)")
    return _Inputs(features, plan, target_content, styles, content_regions, style_regions, cache, style_keys)


def _run_levels(inputs: _Inputs, recorder: Recorder, init_image: torch.Tensor | None,
                stopping: Stopping) -> tuple[torch.Tensor, list[Level]]:
    """Optimize the plan's levels coarse to fine, each warm-started from the previous one's
    result, until done or ``stopping`` says to stop. Returns the full-size
    ``(1, 3, H, W)`` image and the levels run."""
    plan, opts = inputs.plan, inputs.plan.options
    image: torch.Tensor | None = None
    ran: list[Level] = []
    for level in plan.levels:
        with numerics(opts.precision, fixed_shapes=level.tile is None):
            content, styles, targets = inputs.level(level)
            if image is None:
                start = initial_image(content, opts.init, opts.seed, style=styles[0], init_image=init_image)
                if opts.color_control == "luminance":
                    start = color.luminance(start)
            else:
                start = resize(image, level.size)  # warm start from the coarser level's result
            image, completed = _optimize(start, targets, opts, level, recorder, stopping)
            ran.append(level)
            recorder.done += completed
            if completed < level.steps:  # out of time, or cancelled
                final = targets if level is plan.levels[-1] else inputs.level(plan.levels[-1])[2]
                if completed == 0 or final is not targets:
                    # The answer is full size, and its losses are those of the image returned.
                    image = resize(image, plan.size)
                    recorder.restate_last(final.losses(image))
                break
    assert image is not None
    return image, ran


def _report(recorder: Recorder, k: int, image: torch.Tensor, level: Level, values: list[float]) -> None:
    """``recorder.report`` of the loss terms read to the host (:data:`nst.records.TERMS`)."""
    recorder.report(k, named_terms(values), image, level)


def _optimize(start: torch.Tensor, objective: _Targets, opts: StylizeOptions, level: Level, recorder: Recorder,
              stopping: Stopping) -> tuple[torch.Tensor, int]:
    """Run up to ``level.steps`` iterations from ``start`` (fewer if the next one would likely
    be cut short by ``stopping``; the first level always runs one), reporting each evaluation to
    ``recorder``. Returns the clamped result and the iterations completed.

    Each iteration reads the host once (the loss terms, :mod:`nst.optim`); the callback, the
    deadline and the cancel event use what was read."""
    # A contiguous copy whatever the start's strides: the optimizers work on flat views.
    image = start.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    optimizer: Optimizer
    if opts.optimizer == "lbfgs":
        optimizer = LBFGS(image, history_size=level.history or opts.lbfgs_history)
    else:
        optimizer = Adam(image, lr=opts.learning_rate)

    started = time.monotonic()
    completed = 0
    while completed < level.steps:
        if (completed or level.index > 0) and stopping.now(started, completed):
            break
        # Reported between the read and the update: the callback sees the image evaluated.
        optimizer.step(partial(objective.evaluate, image), partial(_report, recorder, completed, image, level))
        completed += 1
    result = image.detach().clamp(0.0, 1.0)
    if completed:  # the losses reported last are those of the returned (clamped) image
        recorder.report(completed, objective.losses(result), result, level)
    return result, completed

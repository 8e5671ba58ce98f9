"""Gatys et al. (2016) neural style transfer: optimize the pixels of one image.

L. A. Gatys, A. S. Ecker, M. Bethge, "Image Style Transfer Using Convolutional Neural Networks",
CVPR 2016. The image is optimized to match the content image's features at the content layers
and the style images' (blended) Gram matrices at the style layers, with a total-variation
smoothness term. The controls of Gatys et al. 2017 ("Controlling Perceptual Factors in Neural
Style Transfer": spatial, colour and scale control) and coarse-to-fine optimization with warm
starts (as in crowsonkb/style-transfer-pytorch) are options of the same loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from . import color
from .cache import StyleCache
from .losses import (
    ContentLoss,
    GuidedStyleLoss,
    StyleLoss,
    gram_matrix,
    guided_gram_matrix,
    tv_loss,
)
from .masks import MaskError, label_regions, region_colors, resize_regions
from .vgg import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    POOLINGS,
    FeatureExtractor,
    VGGFeatures,
    check_layer_names,
    feature_size,
    min_side,
)

#: Levels with more pixels than this (1024 x 1024) use gradient checkpointing unless told otherwise.
CHECKPOINT_PIXELS = 1024 * 1024

INITS: tuple[str, ...] = ("content", "noise", "style", "image")
COLOR_CONTROLS: tuple[str, ...] = ("none", "luminance", "histogram")
OPTIMIZERS: tuple[str, ...] = ("lbfgs", "adam")
MODES: tuple[str, ...] = ("stylize", "reconstruct_content", "reconstruct_style")


@dataclass(frozen=True)
class StylizeOptions:
    """What to optimize and how. Weights multiply the normalized loss terms of :mod:`nst.losses`,
    so they mean the same at every image size and for either network."""

    steps: int = 300
    """Iterations in all (split across ``scales``); tolerances never end a run early."""
    content_weight: float = 1.0
    style_weight: float = 10.0
    """Relative to ``content_weight``. Chosen on trained weights (``docs/quality.md``): about 1
    keeps mostly the photograph with the style's texture, 10 is a strong painterly rendering with
    the content clearly readable, 100 mostly the painting."""
    tv_weight: float = 10.0
    """Total variation; suppresses the high-frequency noise that matching Gram matrices leaves.
    On trained weights (``docs/quality.md``) 1 leaves that grain, 10 removes it without
    blurring the strokes, 100 blurs them."""
    init: str = "content"
    """Start from the content image, seeded uniform noise (the paper), the first style image
    (resized to the output), or a given ``init_image``."""
    seed: int = 0
    """Seeds the noise initialization."""
    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None
    """One per style layer, normalized to sum 1; ``None``: equal."""
    style_blend_weights: tuple[float, ...] | None = None
    """One per style image, normalized to sum 1; ``None``: equal (jcjohnson/neural-style)."""
    style_scale: float = 1.0
    """Style images are resized to ``style_scale`` x the output's long side before their
    features are taken: above 1 gives finer, below 1 coarser brush strokes (Gatys et al. 2017, sec. 5)."""
    color_control: str = "none"
    """``"luminance"``: transfer on luminance only and keep the content's colours;
    ``"histogram"``: match the style images' colours to the content's first (Gatys et al. 2017, sec. 4)."""
    pooling: str = "max"
    """``"avg"`` swaps VGG19's max-pools for average pools (Gatys et al. 2016, sec. 2)."""
    optimizer: str = "lbfgs"
    learning_rate: float = 0.02
    """Adam's step size, in pixel values (``[0, 1]``) per iteration; L-BFGS ignores it."""
    lbfgs_history: int = 100
    """L-BFGS memory (pairs of past gradients kept), as in jcjohnson/neural-style."""
    scales: tuple[int, ...] = ()
    """Long sides, in pixels, of the coarse-to-fine levels, increasing and ending at the
    content's long side; each level's result, upsampled, starts the next. ``()``: one level."""
    mode: str = "stylize"
    """``"reconstruct_content"`` / ``"reconstruct_style"``: start from noise and match only the
    content / only the style representation (Gatys et al. 2016, fig. 1)."""
    gradient_checkpointing: bool | None = None
    """Keep only the loss layers' activations for the backward pass and recompute the rest
    (see :class:`nst.vgg.FeatureExtractor`): at 2048 px about 30% more time per iteration for
    30% less peak memory (``benchmarks/RESULTS.md``). ``None``: on for levels above
    :data:`CHECKPOINT_PIXELS` pixels."""
    time_budget_s: float | None = None
    """Seconds of optimization after which the run stops early with the image so far; it stops
    before an iteration that would likely overrun (estimated from the iterations so far).
    ``None``: no limit."""

    def __post_init__(self) -> None:
        choices = {"init": INITS, "color_control": COLOR_CONTROLS, "pooling": POOLINGS,
                   "optimizer": OPTIMIZERS, "mode": MODES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("style_scale", "learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be > 0, got {self.time_budget_s}")
        if self.lbfgs_history < 1:
            raise ValueError(f"lbfgs_history must be >= 1, got {self.lbfgs_history}")
        if not self.content_layers or not self.style_layers:
            raise ValueError("content_layers and style_layers must each name at least one layer")
        check_layer_names(self.content_layers + self.style_layers)
        if self.style_layer_weights is not None:
            if len(self.style_layer_weights) != len(self.style_layers):
                raise ValueError(
                    f"style_layer_weights has {len(self.style_layer_weights)} weights for "
                    f"{len(self.style_layers)} style layers"
                )
            _normalized(self.style_layer_weights, "style_layer_weights")
        if self.style_blend_weights is not None:
            _normalized(self.style_blend_weights, "style_blend_weights")
        if any(b <= a for a, b in zip(self.scales, self.scales[1:])) or any(s < 1 for s in self.scales):
            raise ValueError(f"scales must be positive and increasing, got {list(self.scales)}")
        if self.steps < max(1, len(self.scales)):
            raise ValueError(f"steps ({self.steps}) must be at least the number of scales ({len(self.scales)})")

    def effective(self) -> StylizeOptions:
        """The options after ``mode``: a reconstruction starts from noise and weights only its term."""
        if self.mode == "reconstruct_content":
            return replace(self, init="noise", content_weight=self.content_weight or 1.0, style_weight=0.0, tv_weight=0.0)
        if self.mode == "reconstruct_style":
            return replace(self, init="noise", style_weight=self.style_weight or 1.0, content_weight=0.0, tv_weight=0.0)
        return self


def _normalized(weights: Sequence[float], name: str) -> list[float]:
    if any(w < 0 for w in weights) or not sum(weights) > 0:
        raise ValueError(f"{name} must be non-negative with a positive sum, got {list(weights)}")
    total = float(sum(weights))
    return [w / total for w in weights]


def pyramid_sides(long_side: int, levels: int) -> tuple[int, ...]:
    """Long sides of an ``levels``-level coarse-to-fine pyramid ending at ``long_side``, each
    level twice the previous: ``pyramid_sides(512, 3) == (128, 256, 512)``."""
    return tuple(round(long_side / 2 ** (levels - 1 - i)) for i in range(levels))


def split_steps(steps: int, levels: int) -> list[int]:
    """Iterations per level: ``steps`` split evenly, the remainder going to the last (finest) level."""
    base = steps // levels
    return [base] * (levels - 1) + [steps - base * (levels - 1)]


@dataclass(frozen=True)
class Iterate:
    """One evaluation of the objective, as passed to the progress callback.

    ``iteration`` counts the updates applied before this evaluation, across all levels: 0 is
    the initial image and ``steps`` the returned one. ``losses`` holds the normalized terms
    before weighting (``content``, ``style``, ``tv``) and ``total``, the weighted sum minimized.
    ``level`` (0-based) of ``levels`` is the coarse-to-fine level being optimized.
    """

    iteration: int
    steps: int
    losses: Mapping[str, float]
    level: int = 0
    levels: int = 1
    image: torch.Tensor | None = field(default=None, repr=False, compare=False)
    """The ``(1, 3, h, w)`` image this evaluation scored (the current level's size; with
    luminance-only colour control, its grey luminance). Passed to the callback for previews;
    not kept in the history. Read-only: the optimizer keeps updating it."""


@dataclass
class Stylized:
    """Result of :func:`stylize`."""

    image: torch.Tensor
    """``(1, 3, H, W)``, values in ``[0, 1]``, on the device the inputs were on."""
    iterations: int
    """Iterations run, all levels together."""
    losses: dict[str, float]
    """Loss terms of the returned image (see :class:`Iterate`); with luminance-only colour
    control, of its luminance, which is what was optimized."""
    history: list[Iterate] = field(default_factory=list)
    """One entry per iteration (1 to ``iterations``): the losses after that many updates; the
    last equals :attr:`losses`."""
    sizes: list[tuple[int, int]] = field(default_factory=list)
    """``(height, width)`` of each level run, coarse to fine."""
    stopped: str = "steps"
    """Why the run ended: ``"steps"`` (all iterations ran) or ``"time_budget"``."""
    cache_hits: int = 0
    cache_misses: int = 0
    """Style-cache lookups of this run (one per style image and level)."""

    @property
    def cache(self) -> str | None:
        """``"hit"`` when every style target came from the cache, ``"miss"`` when any was
        computed, ``None`` when no cache was used."""
        if not (self.cache_hits or self.cache_misses):
            return None
        return "miss" if self.cache_misses else "hit"


def _check_image(image: torch.Tensor, name: str) -> None:
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
        raise ValueError(f"{name} must have shape (1, 3, H, W), got {tuple(image.shape)}")


def _size(image: torch.Tensor) -> tuple[int, int]:
    """Return ``(H, W)``, in pixels, of a ``(..., H, W)`` tensor."""
    return image.shape[-2], image.shape[-1]


def _fit(shape: Sequence[int], long_side: int) -> tuple[int, int]:
    h, w = shape[-2:]
    scale = long_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize of ``(B, C, H, W)`` to ``size = (h, w)``, clamped to ``[0, 1]``."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0.0, 1.0)


def initial_image(content: torch.Tensor, init: str, seed: int, *, style: torch.Tensor | None = None,
                  init_image: torch.Tensor | None = None) -> torch.Tensor:
    """Return the starting image, shaped like ``content`` ``(1, 3, H, W)``, on its device.

    ``"noise"`` draws uniform ``[0, 1)`` noise from a CPU generator seeded with ``seed``, so the
    same seed gives the same start on every device. ``"style"`` and ``"image"`` resize ``style``
    / ``init_image`` to the content's size (aspect ratio not kept).

    Raises:
        ValueError: ``init="image"`` without ``init_image``, or an unknown ``init``.
    """
    size = _size(content)
    if init == "content":
        return content.detach().clone()
    if init == "noise":
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(content.shape, generator=generator).to(content.device)
    if init == "style" and style is not None:
        return resize(style.detach(), size).clone()
    if init == "image":
        if init_image is None:
            raise ValueError('init="image" needs an init_image')
        return resize(init_image.detach(), size).clone()
    raise ValueError(f"init must be one of {INITS}, got {init!r}")


class _Targets:
    """Loss modules for one level: content features and (blended, maybe region-guided) Grams."""

    def __init__(self, features: VGGFeatures, opts: StylizeOptions, content: torch.Tensor,
                 styles: list[torch.Tensor], blend: list[float],
                 content_regions: torch.Tensor | None, style_regions: list[torch.Tensor] | None,
                 cache: StyleCache | None = None, style_keys: Sequence[Hashable] | None = None) -> None:
        self.cache_hits = self.cache_misses = 0
        with torch.no_grad():
            content_feats = FeatureExtractor(features, opts.content_layers, opts.pooling)(content)
            self.content = {n: ContentLoss(content_feats[n]) for n in opts.content_layers}
            style_grams = [
                self._style_grams(features, opts, s, None if style_regions is None else style_regions[i],
                                  cache, None if style_keys is None else style_keys[i])
                for i, s in enumerate(styles)
            ]
            self.style: dict[str, nn.Module] = {}
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
        checkpointing = opts.gradient_checkpointing
        if checkpointing is None:
            checkpointing = content.shape[-2] * content.shape[-1] > CHECKPOINT_PIXELS
        self.extractor = FeatureExtractor(features, opts.content_layers + opts.style_layers, opts.pooling,
                                          checkpointing=checkpointing)
        layer_weights = _normalized(opts.style_layer_weights or [1.0] * len(opts.style_layers), "style_layer_weights")
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
            key = (style_key, tuple(style.shape), opts.style_layers, opts.pooling, opts.color_control,
                   regions is not None, id(features), str(style.device))
            cached = cache.get(key)
            if cached is not None:
                self.cache_hits += 1
                return cached
            self.cache_misses += 1
        feats = FeatureExtractor(features, opts.style_layers, opts.pooling)(style)
        if regions is None:
            grams = {n: gram_matrix(f) for n, f in feats.items()}
        else:
            grams = {n: guided_gram_matrix(f, resize_regions(regions, f.shape[-2:])) for n, f in feats.items()}
        if key is not None:
            assert cache is not None
            cache.put(key, grams)
        return grams

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        feats = self.extractor(image)
        # Content layers are averaged and style layers weighted to sum 1, so adding a layer
        # does not change a group's overall weight.
        content_term = sum(loss(feats[n]) for n, loss in self.content.items()) / len(self.content)
        style_term = sum(self.layer_weights[n] * loss(feats[n]) for n, loss in self.style.items())
        tv_term = tv_loss(image)
        o = self.opts
        total = o.content_weight * content_term + o.style_weight * style_term + o.tv_weight * tv_term
        terms = {"content": content_term, "style": style_term, "tv": tv_term, "total": total}
        return total, {k: float(v.detach()) for k, v in terms.items()}


def stylize(
    content: torch.Tensor,
    style: torch.Tensor | Sequence[torch.Tensor],
    features: VGGFeatures,
    options: StylizeOptions = StylizeOptions(),
    *,
    init_image: torch.Tensor | None = None,
    content_mask: torch.Tensor | None = None,
    style_masks: Sequence[torch.Tensor] | None = None,
    callback: Callable[[Iterate], None] | None = None,
    cache: StyleCache | None = None,
    style_keys: Sequence[Hashable] | None = None,
) -> Stylized:
    """Render ``content`` in the style of ``style`` (one image or several, blended).

    Args:
        content: ``(1, 3, H, W)`` content image, values in ``[0, 1]``; fixes the output size.
        style: ``(1, 3, H_s, W_s)`` style image(s), values in ``[0, 1]``, any size; each is
            resized to ``style_scale`` x the long side of the level being optimized.
        features: VGG16 or VGG19 ``features`` from :func:`nst.vgg.build_features`, on the
            same device as the images; the computation runs there. The layers named in
            ``options`` must be layers of this network.
        options: see :class:`StylizeOptions`.
        init_image: ``(1, 3, H_i, W_i)`` start for ``init="image"``.
        content_mask: ``(1, 3, H, W)`` colour-labelled regions of the output (spatial control);
            needs ``style_masks``, one ``(1, 3, H_s, W_s)`` per style, in the same colours.
        callback: called after every evaluation with an :class:`Iterate`.
        cache: where style Gram matrices are looked up and kept (see :mod:`nst.cache`).
        style_keys: one hashable per style naming everything its Grams depend on besides the
            computation itself: the style input and, with ``color_control`` other than
            ``"none"``, the content image, and with masks, both masks. Without keys nothing is
            cached.

    Returns:
        A :class:`Stylized` with the ``(1, 3, H, W)`` image clamped to ``[0, 1]``.

    Raises:
        ValueError: images of the wrong shape or too small for the layers in use (at any
            level), a layer the network lacks, weights or masks that do not match the styles.
        nst.masks.MaskError: masks whose colours do not make regions (a ``ValueError``).
    """
    opts = options.effective()
    features.check_layer_names(opts.content_layers + opts.style_layers)  # VGG16 lacks some of VGG19's
    styles = [style] if isinstance(style, torch.Tensor) else list(style)
    if not styles:
        raise ValueError("at least one style image is needed")
    _check_image(content, "content")
    for i, s in enumerate(styles):
        _check_image(s, f"style[{i}]")
    if opts.style_blend_weights is not None and len(opts.style_blend_weights) != len(styles):
        raise ValueError(f"style_blend_weights has {len(opts.style_blend_weights)} weights for {len(styles)} styles")
    blend = _normalized(opts.style_blend_weights or [1.0] * len(styles), "style_blend_weights")
    if opts.init == "image" and init_image is None:
        raise ValueError('init="image" needs an init_image')

    # Colour control happens once, at full resolution (Gatys et al. 2017, sec. 4).
    target_content = content
    if opts.color_control == "histogram":
        styles = [color.match_color_histogram(s, content) for s in styles]
    elif opts.color_control == "luminance":
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
        covered = torch.stack([r.flatten(1).sum(1) * float(w > 0) for r, w in zip(style_regions, blend)]).sum(0)  # (R,)
        for r in torch.nonzero(covered == 0).flatten().tolist():
            rgb = tuple(int(v) for v in colors[r])
            raise MaskError(f"content_mask region of colour {rgb} has no pixel of that colour in any style mask "
                            "(of a style with a positive blend weight)")

    full_h, full_w = content.shape[-2:]
    sides = opts.scales or (max(full_h, full_w),)
    if sides[-1] != max(full_h, full_w):
        raise ValueError(f"the last scale ({sides[-1]}) must be the output's long side ({max(full_h, full_w)})")
    needed = min_side(opts.content_layers + opts.style_layers)
    per_level = split_steps(opts.steps, len(sides))
    history: list[Iterate] = []
    sizes: list[tuple[int, int]] = []
    image: torch.Tensor | None = None
    done = 0
    deadline = None if opts.time_budget_s is None else time.monotonic() + opts.time_budget_s
    stopped = "steps"

    lookups = [0, 0]  # style-cache hits, misses

    def level_targets(side: int) -> tuple[tuple[int, int], torch.Tensor, list[torch.Tensor], _Targets]:
        """Output size, content, styles and loss targets of the level with long side ``side``."""
        size = (full_h, full_w) if side == max(full_h, full_w) else _fit(content.shape, side)
        level_styles = [resize(s, _fit(s.shape, max(1, round(side * opts.style_scale)))) for s in styles]
        for name, img in [(f"content at long side {side}", size),
                          *[(f"style[{i}] at this scale", _size(s)) for i, s in enumerate(level_styles)]]:
            if min(img) < needed:
                raise ValueError(f"{name} would be {img[1]}x{img[0]} pixels; the layers in use need at least {needed} pixels")
        level_content = resize(target_content, size)
        level_regions = None if content_regions is None else resize_regions(content_regions, size)
        level_style_regions = None if style_regions is None else [
            resize_regions(r, _size(s)) for r, s in zip(style_regions, level_styles)
        ]
        targets = _Targets(features, opts, level_content, level_styles, blend, level_regions, level_style_regions,
                           cache, style_keys)
        lookups[0] += targets.cache_hits
        lookups[1] += targets.cache_misses
        return size, level_content, level_styles, targets

    for level, (side, n_steps) in enumerate(zip(sides, per_level)):
        size, level_content, level_styles, targets = level_targets(side)
        if image is None:
            start = initial_image(level_content, opts.init, opts.seed, style=level_styles[0], init_image=init_image)
            if opts.color_control == "luminance":
                start = color.luminance(start)
        else:
            start = resize(image, size)  # warm start from the coarser level's result
        image, completed = _optimize(start, targets, opts, n_steps, done, level, len(sides), history, callback, deadline)
        sizes.append(size)
        done += completed
        if completed < n_steps:
            stopped = "time_budget"
            if size != (full_h, full_w):
                # Stopped at a coarse level: the answer is still full size, and its losses are
                # those of the upsampled image, replacing the coarse level's last entry.
                full_size, _, _, final = level_targets(sides[-1])
                image = resize(image, full_size)
                with torch.no_grad():
                    _, losses = final(image)
                history[-1] = Iterate(iteration=done, steps=opts.steps, losses=losses,
                                      level=len(sides) - 1, levels=len(sides))
            break

    assert image is not None
    if opts.color_control == "luminance":
        image = color.combine_luminance(image, content)
    return Stylized(image=image, iterations=done, losses=dict(history[-1].losses), history=history, sizes=sizes,
                    stopped=stopped, cache_hits=lookups[0], cache_misses=lookups[1])


def _optimize(start: torch.Tensor, objective: _Targets, opts: StylizeOptions, n_steps: int, done: int,
              level: int, levels: int, history: list[Iterate], callback: Callable[[Iterate], None] | None,
              deadline: float | None = None) -> tuple[torch.Tensor, int]:
    """Run up to ``n_steps`` iterations from ``start`` (fewer if the next one would likely end
    after ``deadline``, a ``time.monotonic()`` value); append one :class:`Iterate` per
    iteration. Returns the clamped result and the iterations completed."""
    image = start.detach().clone().requires_grad_(True)
    if opts.optimizer == "lbfgs":
        # Negative tolerances so that exactly n_steps iterations run (with normalized losses
        # torch's defaults can stop a run after one evaluation).
        optimizer: torch.optim.Optimizer = torch.optim.LBFGS(
            [image], lr=1.0, max_iter=1, history_size=opts.lbfgs_history,
            tolerance_grad=-1.0, tolerance_change=-1.0,
        )
    else:
        optimizer = torch.optim.Adam([image], lr=opts.learning_rate)
    evaluations = 0

    def report(losses: dict[str, float], k: int, scored: torch.Tensor) -> None:
        it = Iterate(iteration=done + k, steps=opts.steps, losses=losses, level=level, levels=levels)
        if k > 0:
            history.append(it)
        if callback is not None and (k > 0 or level == 0):
            callback(replace(it, image=scored.detach()))

    def closure() -> torch.Tensor:
        nonlocal evaluations
        optimizer.zero_grad(set_to_none=True)
        total, losses = objective(image)
        total.backward()
        report(losses, evaluations, image)
        evaluations += 1
        return total

    # One iteration per step() call: for L-BFGS each call evaluates once and updates once,
    # exactly as one step() with max_iter=n_steps would, with room to report in between.
    started = time.monotonic()
    completed = 0
    for completed in range(n_steps + 1):
        if completed == n_steps:
            break
        if deadline is not None and (completed or level > 0):  # the first level runs at least once
            now = time.monotonic()
            per_iteration = (now - started) / completed if completed else 0.0
            if now + per_iteration > deadline:
                break
        # torch types the closure as returning a float; both optimizers take (and L-BFGS returns) the loss tensor.
        optimizer.step(closure)  # type: ignore[arg-type]
        if opts.optimizer == "adam":
            with torch.no_grad():
                image.clamp_(0.0, 1.0)
    # The losses reported last are those of the returned (clamped) image.
    result = image.detach().clamp(0.0, 1.0)
    with torch.no_grad():
        _, final_losses = objective(result)
    if completed:
        report(final_losses, completed, result)
    else:  # a later level stopped before its first iteration: the image is the upsampled start
        history[-1] = Iterate(iteration=done, steps=opts.steps, losses=final_losses, level=level, levels=levels)
    return result, completed

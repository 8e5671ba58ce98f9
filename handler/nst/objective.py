"""The objective of one coarse-to-fine level: its loss, and the gradient of that loss in the pixels.

The loss is that of Gatys et al. (2016), eq. 7, with a total-variation term
(:class:`nst.losses.LossTerms`): content features matched at the content layers, the style
images' statistics (Gram matrices, blended across styles, per region with spatial control:
Gatys et al. 2017, sec. 3) at the style layers. :func:`build_objective` makes the one object a
level optimizes, from the plan's level, and chooses, in this one place, how it is evaluated:

- :class:`WholeImage`: one forward and one backward pass over the image;
- :class:`Tiled`: tile by tile (:mod:`nst.tiled`), the same loss and gradient with peak memory
  bounded by one tile's crop.

Each style layer's term is an :class:`nst.losses.StyleTerm`: another style loss is another
implementation of it, evaluated by both without a branch here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from . import host
from .cache import StyleTargets, Targets
from .images import resize
from .losses import (
    ContentLoss,
    GuidedStyleLoss,
    LossTerms,
    StyleLoss,
    StyleTerm,
    gram_matrix,
    guided_gram_matrix,
    tv_loss,
)
from .masks import resize_regions
from .memory import checkpoints
from .options import StylizeOptions, normalized
from .plan import Level, Plan, make_plan
from .records import named_terms
from .tiled import assembled_features, evaluate_tiled, image_grams
from .tiling import Tile, tile_grid
from .vgg import FeatureExtractor, VGGFeatures, feature_size
from .wasserstein import W2StyleLoss, with_ones


class Objective(ABC):
    """The loss of one level as a function of the image optimized."""

    loss_terms: LossTerms
    """The level's loss terms (targets at the level's size) and their weights."""

    @abstractmethod
    def evaluate(self, image: torch.Tensor) -> torch.Tensor:
        """The loss terms of ``image`` (``(1, 3, h, w)`` at the level's size, values in
        ``[0, 1]``, a leaf that requires a gradient), a detached ``(4,)`` tensor on its device in
        the order of :data:`nst.records.TERMS`, with the gradient of the total added to
        ``image.grad``. Reads nothing back to the host."""

    @abstractmethod
    def terms(self, image: torch.Tensor) -> torch.Tensor:
        """The loss terms of ``image`` as :meth:`evaluate` gives them, without a gradient (call
        it under ``torch.no_grad()``)."""

    def losses(self, image: torch.Tensor) -> dict[str, float]:
        """``{term: value}`` of ``image``'s loss terms (:data:`nst.records.TERMS`), without a
        gradient, read to the host (one read)."""
        with torch.no_grad():
            terms = self.terms(image)
        return named_terms(host.to_host(terms))


class WholeImage(Objective):
    """The objective evaluated on the whole image in one pass.

    Args:
        terms: the level's loss terms.
        extractor: the content and style layers' features of an image.
    """

    def __init__(self, terms: LossTerms, extractor: FeatureExtractor) -> None:
        self.loss_terms, self.extractor = terms, extractor

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The total loss of ``image`` as a 0-dim tensor with its autograd graph, and the
        detached ``(4,)`` terms."""
        feats = self.extractor(image)
        t = self.loss_terms
        return t.combine(t.content_term(feats), t.style_term(feats), tv_loss(image))

    def evaluate(self, image: torch.Tensor) -> torch.Tensor:
        total, terms = self.forward(image)
        total.backward()
        return terms

    def terms(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward(image)[1]


class Tiled(Objective):
    """The objective evaluated tile by tile (:func:`nst.tiled.evaluate_tiled`).

    Args:
        terms: the level's loss terms (targets at the whole image's size).
        tiles: a partition of the level's image (:func:`nst.tiling.tile_grid`).
        extractor: the content and style layers (pass 2, the kept tails, the losses alone).
        style_extractor: the style layers only (pass 1 stops at the deepest of them).
        kept_tails: tiles whose graph after :data:`nst.tiled.TAIL_AFTER` pass 1 keeps for pass 2.
    """

    def __init__(self, terms: LossTerms, tiles: Sequence[Tile], extractor: FeatureExtractor,
                 style_extractor: FeatureExtractor, kept_tails: int = 0) -> None:
        self.loss_terms, self.tiles, self.kept_tails = terms, list(tiles), kept_tails
        self.extractor, self.style_extractor = extractor, style_extractor

    def _run(self, image: torch.Tensor, *, backward: bool) -> torch.Tensor:
        return evaluate_tiled(image, self.tiles, self.loss_terms, style_extractor=self.style_extractor,
                              extractor=self.extractor, backward=backward, kept_tails=self.kept_tails)

    def evaluate(self, image: torch.Tensor) -> torch.Tensor:
        return self._run(image, backward=True)

    def terms(self, image: torch.Tensor) -> torch.Tensor:
        return self._run(image, backward=False)


@dataclass(frozen=True)
class LevelImages:
    """The images a level's targets are made of, at that level's sizes.

    ``content`` is the ``(1, 3, h, w)`` content target (with luminance-only colour control, its
    luminance); ``styles`` one ``(1, 3, h_s, w_s)`` per style image (recoloured by the colour
    control); ``content_regions`` ``(R, 1, h, w)`` and ``style_regions`` one ``(R, 1, h_s, w_s)``
    per style, the one-hot regions of spatial control (soft after resizing), or ``None``.
    """

    content: torch.Tensor
    styles: list[torch.Tensor]
    content_regions: torch.Tensor | None = None
    style_regions: list[torch.Tensor] | None = None

    def at(self, level: Level) -> LevelImages:
        """These images (at full resolution) resized to ``level``'s sizes."""
        return LevelImages(
            resize(self.content, level.size),
            [resize(s, size) for s, size in zip(self.styles, level.style_sizes)],
            None if self.content_regions is None else resize_regions(self.content_regions, level.size),
            None if self.style_regions is None else [
                resize_regions(r, size) for r, size in zip(self.style_regions, level.style_sizes)
            ],
        )


def build_objective(features: VGGFeatures, plan: Plan, level: Level, images: LevelImages,
                    style_targets: StyleTargets | None = None) -> Objective:
    """The objective of ``level`` of ``plan``: targets from ``images`` (already at the level's
    sizes), evaluated tile by tile when the level has a ``tile`` (with its ``kept_tails``),
    else on the whole image; gradient checkpointing as the level (or the options' rule) says.

    Args:
        features: the network, on the images' device.
        plan: gives the options (after ``mode``) and the blend weights.
        level: gives ``tile``, ``kept_tails`` and ``checkpointing``.
        images: the content and style images (and regions) at this level's sizes.
        style_targets: where the style images' Gram matrices are looked up and kept (one
            lookup per style image); ``None``: computed.

    Raises:
        IndexError: ``style_targets`` with fewer keys than style images.
    """
    opts, size = plan.options, _size(images.content)
    layers = opts.content_layers + opts.style_layers
    tiles = None if level.tile is None else tile_grid(size, level.tile, layers)
    with torch.no_grad():
        content_extractor = FeatureExtractor(features, opts.content_layers, opts.pooling, precision=opts.precision, padding=opts.padding)
        content_feats = assembled_features(content_extractor, images.content, tiles)
        content = {n: ContentLoss(content_feats[n]) for n in opts.content_layers}
        del content_feats
        style = _style_terms(features, opts, plan.blend, images, level.tile, style_targets)
    layer_weights = opts.style_layer_weights or normalized([1.0] * len(opts.style_layers))
    terms = LossTerms(content, style, dict(zip(opts.style_layers, layer_weights)),
                      (opts.content_weight, opts.style_weight, opts.tv_weight))
    checkpointing = checkpoints(size, level.tile, opts.gradient_checkpointing if level.checkpointing is None
                                else level.checkpointing)
    extractor = FeatureExtractor(features, layers, opts.pooling, checkpointing=checkpointing, precision=opts.precision,
                                 padding=opts.padding)
    if tiles is None:
        return WholeImage(terms, extractor)
    # Pass 1 of a tiled evaluation stops at the deepest style layer.
    style_extractor = FeatureExtractor(features, opts.style_layers, opts.pooling, precision=opts.precision, padding=opts.padding)
    return Tiled(terms, tiles, extractor, style_extractor, level.kept_tails)


def first_level_objective(features: VGGFeatures, options: StylizeOptions, content: torch.Tensor,
                          styles: Sequence[torch.Tensor], style_targets: StyleTargets | None = None) -> Objective:
    """The objective of the first level of ``options``' plan for ``(1, 3, H, W)`` ``content``
    and ``styles`` (used as given, not resized): the whole run's, without ``scales`` (what the
    benchmarks measure).

    Raises:
        nst.options.OptionError: images too small for the layers (:func:`nst.plan.make_plan`).
    """
    plan = make_plan(_size(content), [_size(s) for s in styles], options)
    return build_objective(features, plan, plan.levels[0], LevelImages(content, list(styles)), style_targets)


def _size(image: torch.Tensor) -> tuple[int, int]:
    """``(H, W)``, in pixels, of a ``(..., H, W)`` tensor."""
    return image.shape[-2], image.shape[-1]


def _style_terms(features: VGGFeatures, opts: StylizeOptions, blend: Sequence[float], images: LevelImages,
                 tile: int | None, style_targets: StyleTargets | None) -> dict[str, StyleTerm]:
    """Each style layer's term: the styles' Gram matrices blended by ``blend`` (Gatys et al.
    2016, sec. 3), or with regions each region's blend of the styles that have pixels of its
    colour (Gatys et al. 2017, sec. 3)."""
    style_regions = images.style_regions
    grams = []
    for i, s in enumerate(images.styles):
        regions = None if style_regions is None else style_regions[i]

        def compute(s: torch.Tensor = s, regions: torch.Tensor | None = regions) -> Targets:
            return _style_grams(features, opts, s, regions, tile)

        if style_targets is None:
            grams.append(compute())
        else:
            # Everything the Grams depend on besides what the caller's key names (the style
            # input, and with colour control or masks the content and the masks).
            grams.append(style_targets.get(i, (tuple(s.shape), opts.style_layers, opts.pooling, opts.precision,
                                               opts.color_control, opts.style_loss, opts.padding, regions is not None,
                                               id(features), str(s.device)), compute))
    size = _size(images.content)
    style: dict[str, StyleTerm] = {}
    for name in opts.style_layers:
        layer = [g[name] for g in grams]
        if images.content_regions is None:
            target = sum((w * g for w, g in zip(blend, layer)), torch.zeros_like(layer[0]))
            style[name] = W2StyleLoss(target) if opts.style_loss == "w2" else StyleLoss(target)
            continue
        assert style_regions is not None
        # Each region's target blends the styles that have pixels of that region's colour.
        present = [(r.flatten(1).sum(1) > 0).float() * w for r, w in zip(style_regions, blend)]  # (R,) each
        weight = torch.stack(present)  # (S, R)
        weight = weight / weight.sum(0, keepdim=True)
        target = torch.einsum("sr,srij->rij", weight, torch.stack(layer))  # (R, C, C)
        masks = resize_regions(images.content_regions, feature_size(size, name))
        style[name] = W2StyleLoss(target, masks) if opts.style_loss == "w2" else GuidedStyleLoss(target, masks)
    return style


def _style_grams(features: VGGFeatures, opts: StylizeOptions, style: torch.Tensor, regions: torch.Tensor | None,
                 tile: int | None) -> Targets:
    """``{layer: (1, C, C) Gram}`` of one ``(1, 3, h, w)`` style image, or with ``(R, 1, h, w)``
    ``regions`` the region-guided ``(R, C, C)`` Grams; tile by tile with ``tile``. With
    ``style_loss="w2"`` the Grams of the features with a ones channel, ``(R, C+1, C+1)``: the
    augmented second moments of :mod:`nst.wasserstein`."""
    extractor = FeatureExtractor(features, opts.style_layers, opts.pooling, precision=opts.precision, padding=opts.padding)
    prepare = with_ones if opts.style_loss == "w2" else None
    if tile is not None:
        return image_grams(extractor, style, tile_grid(_size(style), tile, opts.style_layers), regions, prepare)
    feats = extractor(style)
    if prepare is not None:
        feats = {n: prepare(f) for n, f in feats.items()}
    if regions is None:
        return {n: gram_matrix(f) for n, f in feats.items()}
    return {n: guided_gram_matrix(f, resize_regions(regions, f.shape[-2:])) for n, f in feats.items()}

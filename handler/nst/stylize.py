"""Gatys et al. (2016) neural style transfer: L-BFGS over the pixels of one image.

L. A. Gatys, A. S. Ecker, M. Bethge, "Image Style Transfer Using Convolutional Neural Networks",
CVPR 2016. The image is optimized to match the content image's features at the content layers
and the style image's Gram matrices at the style layers, with a total-variation smoothness term.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping

import torch
from torch import nn

from .losses import ContentLoss, StyleLoss, gram_matrix, tv_loss
from .vgg import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, FeatureExtractor, check_layer_names

Init = Literal["content", "noise"]
INITS: tuple[str, ...] = ("content", "noise")


@dataclass(frozen=True)
class StylizeOptions:
    """What to optimize and for how long. Weights multiply the normalized loss terms of
    :mod:`nst.losses`, so they mean the same at every image size and for any VGG19 weights."""

    steps: int = 300
    """L-BFGS iterations, exactly; tolerances never end the run early."""
    content_weight: float = 1.0
    style_weight: float = 1e4
    """Relative to ``content_weight``: style terms start near 1 and fall by orders of
    magnitude, so they need a large weight to keep pulling against the content term."""
    tv_weight: float = 1.0
    """Total variation; suppresses the high-frequency noise that matching Gram matrices leaves."""
    init: Init = "content"
    """Start from the content image (sharper, faster) or from seeded uniform noise (the paper)."""
    seed: int = 0
    """Seeds the noise initialization."""
    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    lbfgs_history: int = 100
    """L-BFGS memory (pairs of past gradients kept), as in jcjohnson/neural-style."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        check_layer_names(self.content_layers + self.style_layers)


@dataclass(frozen=True)
class Iterate:
    """One evaluation of the objective, as passed to the progress callback.

    ``iteration`` counts the L-BFGS updates applied before this evaluation: 0 is the initial
    image and ``steps`` the returned one. ``losses`` holds the normalized terms before weighting
    (``content``, ``style``, ``tv``) and ``total``, the weighted sum that L-BFGS minimizes.
    """

    iteration: int
    steps: int
    losses: Mapping[str, float]


@dataclass
class Stylized:
    """Result of :func:`stylize`."""

    image: torch.Tensor
    """``(1, 3, H, W)``, values in ``[0, 1]``, on the device the inputs were on."""
    iterations: int
    """L-BFGS iterations run."""
    losses: dict[str, float]
    """Loss terms of the returned image (see :class:`Iterate`)."""
    history: list[Iterate] = field(default_factory=list)
    """Every evaluation, iteration 0 to ``iterations``."""


def _check_image(image: torch.Tensor, name: str) -> None:
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
        raise ValueError(f"{name} image must have shape (1, 3, H, W), got {tuple(image.shape)}")


def initial_image(content: torch.Tensor, init: Init, seed: int) -> torch.Tensor:
    """Return the starting image, shaped like ``content`` ``(1, 3, H, W)``, on its device.

    ``"noise"`` draws uniform ``[0, 1)`` noise from a CPU generator seeded with ``seed``, so the
    same seed gives the same start on every device.
    """
    if init == "content":
        return content.detach().clone()
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(content.shape, generator=generator).to(content.device)


def stylize(
    content: torch.Tensor,
    style: torch.Tensor,
    features: nn.Sequential,
    options: StylizeOptions = StylizeOptions(),
    *,
    callback: Callable[[Iterate], None] | None = None,
) -> Stylized:
    """Render ``content`` in the style of ``style``.

    Args:
        content: ``(1, 3, H, W)`` content image, values in ``[0, 1]``; fixes the output size.
        style: ``(1, 3, H_s, W_s)`` style image, values in ``[0, 1]``, any size the network takes.
        features: VGG19 ``features`` from :func:`nst.vgg.build_vgg19_features`, on the same
            device as the images; the computation runs there.
        options: weights, layers, iterations and initialization.
        callback: called after every evaluation with an :class:`Iterate`.

    Returns:
        A :class:`Stylized` with the ``(1, 3, H, W)`` image clamped to ``[0, 1]``.

    Raises:
        ValueError: an image of the wrong shape, or smaller than the deepest layer in use needs.
    """
    _check_image(content, "content")
    _check_image(style, "style")
    with torch.no_grad():
        content_targets = FeatureExtractor(features, options.content_layers)(content)
        style_targets = FeatureExtractor(features, options.style_layers)(style)
    content_losses = {n: ContentLoss(content_targets[n]) for n in options.content_layers}
    style_losses = {n: StyleLoss(gram_matrix(style_targets[n])) for n in options.style_layers}
    extractor = FeatureExtractor(features, options.content_layers + options.style_layers)

    def objective(image: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        feats = extractor(image)
        # Each group is averaged over its layers, so adding a layer does not change its weight.
        content_term = sum(loss(feats[n]) for n, loss in content_losses.items()) / len(content_losses)
        style_term = sum(loss(feats[n]) for n, loss in style_losses.items()) / len(style_losses)
        tv_term = tv_loss(image)
        total = (
            options.content_weight * content_term
            + options.style_weight * style_term
            + options.tv_weight * tv_term
        )
        terms = {"content": content_term, "style": style_term, "tv": tv_term, "total": total}
        return total, {k: float(v.detach()) for k, v in terms.items()}

    image = initial_image(content, options.init, options.seed).requires_grad_(True)
    # Departure from torch's defaults: negative tolerances so that exactly `steps` iterations
    # run (with normalized losses the defaults can still stop a run after one evaluation).
    optimizer = torch.optim.LBFGS(
        [image], lr=1.0, max_iter=1, history_size=options.lbfgs_history,
        tolerance_grad=-1.0, tolerance_change=-1.0,
    )
    history: list[Iterate] = []

    def record(losses: dict[str, float]) -> None:
        it = Iterate(iteration=len(history), steps=options.steps, losses=losses)
        history.append(it)
        if callback is not None:
            callback(it)

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        total, losses = objective(image)
        total.backward()
        record(losses)
        return total

    # One L-BFGS iteration per step() call: each call evaluates once and updates once, exactly
    # as one step() with max_iter=steps would, but leaves room to report after every iteration.
    for _ in range(options.steps):
        optimizer.step(closure)
    # The losses reported last are those of the returned (clamped) image, not of the raw
    # iterate, whose pixels L-BFGS may have pushed outside [0, 1].
    result = image.detach().clamp(0.0, 1.0)
    with torch.no_grad():
        _, final_losses = objective(result)
    record(final_losses)
    return Stylized(
        image=result,
        iterations=options.steps,
        losses=final_losses,
        history=history,
    )

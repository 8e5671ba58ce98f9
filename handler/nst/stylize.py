"""Gatys et al. (2016) neural style transfer: optimize the pixels of one image.

L. A. Gatys, A. S. Ecker, M. Bethge, "Image Style Transfer Using Convolutional Neural Networks",
CVPR 2016. The image is optimized to match the content image's features at the content layers
and the style images' (blended) Gram matrices at the style layers, with a total-variation
smoothness term. The controls of Gatys et al. 2017 ("Controlling Perceptual Factors in Neural
Style Transfer": spatial, colour and scale control) and coarse-to-fine optimization with warm
starts (as in crowsonkb/style-transfer-pytorch) are options of the same loop.

What to run is a :class:`nst.plan.Plan` (the levels, their sizes and iterations) of
:class:`nst.options.StylizeOptions`; :func:`stylize` executes it level by level, each level
minimizing its :class:`nst.objective.Objective`. A run's collaborators besides the images and
options are objects: a :class:`nst.cache.StyleTargets` (where style targets are looked up and
kept) and a :class:`nst.records.Stopping` (cancellation and the time budget).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch

from . import color
from .cache import StyleTargets
from .images import initial_image, resize
from .masks import MaskError, label_regions, region_colors, resize_regions
from .objective import LevelImages, Objective, build_objective
from .optim import LBFGS, Adam, Optimizer
from .options import StylizeOptions
from .plan import Level, Plan, check_inputs, make_plan
from .precision import numerics
from .records import Iterate, Recorder, Stopping, Stylized, named_terms
from .vgg import VGGFeatures

DEFAULT_OPTIONS = StylizeOptions()


def _check_image(image: torch.Tensor, name: str) -> None:
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
        raise ValueError(f"{name} must have shape (1, 3, H, W), got {tuple(image.shape)}")


def _size(image: torch.Tensor) -> tuple[int, int]:
    """Return ``(H, W)``, in pixels, of a ``(..., H, W)`` tensor."""
    return image.shape[-2], image.shape[-1]


class ColorControl:
    """The ``color_control`` option at the three moments of a run it acts at (Gatys et al. 2017,
    sec. 4): the targets (once, at full resolution), the start image and the result.

    ``"luminance"`` optimizes a grey image against the content's luminance and the styles'
    luminances matched to it (mean and deviation), then puts the content's chroma back;
    ``"histogram"`` matches the styles' colours to the content's; ``"original_colors"``
    optimizes as usual and gives the result the content's chroma (jcjohnson/neural-style's
    ``-original_colors 1``); ``"none"`` changes nothing.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def targets(self, content: torch.Tensor, styles: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The ``(1, 3, H, W)`` content target and the style images to take targets from."""
        if self.mode == "histogram":
            return content, [color.match_color_histogram(s, content) for s in styles]
        if self.mode == "luminance":
            target = color.luminance(content)
            return target, [color.match_luminance(color.luminance(s), target) for s in styles]
        return content, styles

    def start(self, image: torch.Tensor) -> torch.Tensor:
        """The first level's ``(1, 3, h, w)`` start image as optimized (grey with luminance)."""
        return color.luminance(image) if self.mode == "luminance" else image

    def result(self, image: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        """The ``(1, 3, H, W)`` output from the optimized image and the (original) content."""
        if self.mode == "luminance":
            return color.combine_luminance(image, content)
        if self.mode == "original_colors":
            return color.original_colors(image, content)
        return image


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
    plan: Plan | None = None,
    style_targets: StyleTargets | None = None,
    stopping: Stopping | None = None,
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
        plan: the :class:`nst.plan.Plan` of ``options`` for these images, already checked (the
            HTTP layer makes it while validating a request, with the layers checked against
            this network); ``None``: checked and made here.
        style_targets: where the styles' Gram matrices are looked up and kept, with one key per
            style (:class:`nst.cache.StyleTargets`, one per run); its lookups are the result's
            ``cache_hits`` and ``cache_misses``. ``None``: nothing is cached.
        stopping: this run's :class:`nst.records.Stopping`, whose ``cancel`` event, once set
            (from any thread), stops the run before its next iteration with the image so far,
            full size, and ``stopped == "cancelled"`` (the first level always runs one
            iteration, as with ``time_budget_s``); the run starts its clock for
            ``time_budget_s``. ``None``: a new one, without a cancel event.

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
    colors = ColorControl(plan.options.color_control)
    images = _prepare(plan, colors, content, styles, content_mask, style_masks)
    stopping = Stopping() if stopping is None else stopping
    stopping.start(plan.options.time_budget_s)
    run = _Run(features, plan, images, colors, Recorder(plan, callback), stopping, style_targets)
    image, ran = run.levels(init_image)
    history = run.recorder.history
    return Stylized(image=colors.result(image, content), iterations=run.recorder.done, losses=dict(history[-1].losses),
                    history=history, sizes=[level.size for level in ran], stopped=stopping.reason,
                    cache_hits=0 if style_targets is None else style_targets.hits,
                    cache_misses=0 if style_targets is None else style_targets.misses)


def _prepare(plan: Plan, colors: ColorControl, content: torch.Tensor, styles: list[torch.Tensor],
             content_mask: torch.Tensor | None, style_masks: Sequence[torch.Tensor] | None) -> LevelImages:
    """The targets' images at full resolution: colour control (:meth:`ColorControl.targets`)
    and the masks' regions (:mod:`nst.masks`).

    Raises:
        nst.masks.MaskError: one mask missing, or a content region no style (with a positive
            blend weight) has pixels of.
    """
    target_content, styles = colors.targets(content, styles)
    if content_mask is None and style_masks is None:
        return LevelImages(target_content, styles)
    if content_mask is None or style_masks is None or len(style_masks) != len(styles):
        raise MaskError("spatial control needs a content_mask and one style mask per style")
    # Label at the masks' own resolution (resizing a label map would blend its colours),
    # then resize the one-hot regions, which gives soft region edges.
    region_rgb = region_colors(content_mask)
    content_regions = resize_regions(label_regions(content_mask, region_rgb), _size(content))
    style_regions = [label_regions(m, region_rgb) for m in style_masks]
    # Only styles with a positive blend weight count: a region painted only by zero-weight
    # styles would get an all-zero (0/0 = NaN) target.
    covered = torch.stack([r.flatten(1).sum(1) * float(w > 0) for r, w in zip(style_regions, plan.blend)]).sum(0)
    for r in torch.nonzero(covered == 0).flatten().tolist():
        rgb = tuple(int(v) for v in region_rgb[r])
        raise MaskError(f"content_mask region of colour {rgb} has no pixel of that colour in any style mask "
                        "(of a style with a positive blend weight)")
    return LevelImages(target_content, styles, content_regions, style_regions)


@dataclass
class _Run:
    """One run of a plan: its images at full resolution, its colour control, what it reports
    to, when it stops and where its style targets are kept."""

    features: VGGFeatures
    plan: Plan
    images: LevelImages
    colors: ColorControl
    recorder: Recorder
    stopping: Stopping
    style_targets: StyleTargets | None

    def objective(self, level: Level) -> tuple[LevelImages, Objective]:
        """The images at ``level``'s sizes and the level's objective."""
        images = self.images.at(level)
        return images, build_objective(self.features, self.plan, level, images, self.style_targets)

    def levels(self, init_image: torch.Tensor | None) -> tuple[torch.Tensor, list[Level]]:
        """Optimize the plan's levels coarse to fine, each warm-started from the previous one's
        result, until done or :attr:`stopping` says to stop. Returns the full-size
        ``(1, 3, H, W)`` image as optimized (before :meth:`ColorControl.result`) and the levels run."""
        plan, opts = self.plan, self.plan.options
        image: torch.Tensor | None = None
        ran: list[Level] = []
        for level in plan.levels:
            with numerics(opts.precision, fixed_shapes=level.tile is None):
                images, objective = self.objective(level)
                if image is None:
                    start = self.colors.start(initial_image(images.content, opts.init, opts.seed,
                                                            style=images.styles[0], init_image=init_image))
                else:
                    start = resize(image, level.size)  # warm start from the coarser level's result
                image, completed = self.optimize(start, objective, level)
                ran.append(level)
                self.recorder.done += completed
                if completed < level.iterations:  # out of time, or cancelled
                    final = objective if level is plan.levels[-1] else self.objective(plan.levels[-1])[1]
                    if completed == 0 or final is not objective:
                        # The answer is full size, and its losses are those of the image returned.
                        image = resize(image, plan.size)
                        self.recorder.restate_last(final.losses(image))
                    break
        assert image is not None
        return image, ran

    def optimize(self, start: torch.Tensor, objective: Objective, level: Level) -> tuple[torch.Tensor, int]:
        """Run up to ``level.iterations`` iterations from ``start`` (fewer if the next one would likely
        be cut short by :attr:`stopping`, or a loss is not finite; the first level always runs
        one), reporting each evaluation to :attr:`recorder`. Returns the level's result and the
        iterations completed: the lowest-loss image evaluated (``keep_best``; the last iterate
        is evaluated too), or the last iterate, clamped to ``[0, 1]``.

        Each iteration reads the host once (the loss terms, :mod:`nst.optim`); the callback, the
        deadline, the cancel event and the best image so far use what was read."""
        opts, recorder = self.plan.options, self.recorder
        # A contiguous copy whatever the start's strides: the optimizers work on flat views.
        image = start.detach().clone(memory_format=torch.contiguous_format)
        if opts.bounded:
            image.clamp_(0.0, 1.0)
        image.requires_grad_(True)
        optimizer: Optimizer
        if opts.optimizer == "lbfgs":
            optimizer = LBFGS(image, history_size=level.history or opts.lbfgs_history,
                              bounds=(0.0, 1.0) if opts.bounded else None)
        else:
            optimizer = Adam(image, lr=opts.learning_rate)

        best = _Best()
        started = time.monotonic()
        completed = 0
        while completed < level.iterations:
            if (completed or level.index > 0) and self.stopping.now(started, completed):
                break
            try:  # reported between the read and the update: the callback sees the image evaluated
                optimizer.step(partial(objective.evaluate, image), partial(best.report, recorder, completed, image, level))
            except _Diverged:
                self.stopping.reason = "diverged"
                break
            completed += 1
        result = image.detach().clamp(0.0, 1.0)
        if completed:  # the losses reported last are those of the returned image
            if self.stopping.reason == "diverged":
                assert best.image is not None  # an iteration completed: its evaluation was finite
                result, losses = best.image, best.losses
            else:
                losses = objective.losses(result)
                if opts.keep_best and best.image is not None and best.losses["total"] < losses["total"]:
                    result, losses = best.image, best.losses
            recorder.report(completed, losses, result, level)
        return result, completed


class _Diverged(Exception):
    """A loss read from the device is NaN or infinite: the run stops before its update."""


class _Best:
    """A level's lowest-loss image among those evaluated, what ``keep_best`` returns (L-BFGS
    without a line search may end above it, and drift up late in long runs) and a diverged
    run ends with; and the reports of the evaluations to the :class:`Recorder`."""

    def __init__(self) -> None:
        self.image: torch.Tensor | None = None
        self.losses: dict[str, float] = {"total": float("inf")}

    def offer(self, losses: dict[str, float], image: torch.Tensor) -> None:
        """Keep a copy of ``image`` (clamped to ``[0, 1]``) if its total loss is the lowest so far."""
        if losses["total"] < self.losses["total"]:
            self.losses, self.image = losses, image.detach().clamp(0.0, 1.0)

    def report(self, recorder: Recorder, k: int, image: torch.Tensor, level: Level, values: list[float]) -> None:
        """``recorder.report`` of the loss terms read to the host (:data:`nst.records.TERMS`),
        after offering the image evaluated.

        Raises:
            _Diverged: a term is NaN or infinite (before anything is reported).
        """
        losses = named_terms(values)
        if not all(math.isfinite(v) for v in values):
            raise _Diverged
        self.offer(losses, image)
        recorder.report(k, losses, image, level)

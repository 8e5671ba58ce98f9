"""The plan of one stylization: the coarse-to-fine levels, their sizes and their iterations.

:func:`make_plan` is where the options meet the images' sizes. It checks, once, everything
that depends on both (each level large enough for the layers in use, at most as many blend
weights as styles, an ``init_image`` for ``init="image"``), and
:func:`nst.stylize.stylize` executes the plan it returns. The HTTP layer makes the plan while
validating a request, from the decoded images' sizes, so that a request the engine would refuse
is a 400 naming the field, never a failure half-way through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .images import scaled_to_long_side
from .memory import MIN_HISTORY, MIN_TILE, plan_memory
from .options import MAX_LEVELS, OptionError, StylizeOptions, normalized
from .tiling import align
from .vgg import min_side

Size = tuple[int, int]
"""``(height, width)`` in pixels."""


def pyramid_sides(long_side: int, levels: int) -> tuple[int, ...]:
    """Long sides of an ``levels``-level coarse-to-fine pyramid ending at ``long_side``, each
    level twice the previous: ``pyramid_sides(512, 3) == (128, 256, 512)``."""
    return tuple(round(long_side / 2 ** (levels - 1 - i)) for i in range(levels))


def level_sides(levels: int, long_side: int) -> tuple[int, ...]:
    """:func:`pyramid_sides` of ``levels`` (1 .. :data:`MAX_LEVELS`) levels ending at ``long_side``.

    Raises:
        OptionError: ``scales`` out of range, or halving ``long_side`` that often rounds a side
            to 0 or repeats one.
    """
    if not 1 <= levels <= MAX_LEVELS:
        raise OptionError("out_of_range", "scales", f"{{field}} must be in [1, {MAX_LEVELS}] levels, got {levels}")
    sides = pyramid_sides(long_side, levels)
    if sides[0] < 1 or any(b <= a for a, b in zip(sides, sides[1:])):
        raise OptionError("out_of_range", "scales", f"{{field}}: {levels} levels halving the long side {long_side} "
                          f"give {list(sides)}; each must be at least 1 pixel and larger than the previous")
    return sides


#: Coarsest long side, pixels, of the pyramid a reconstruction runs when ``scales`` is not given.
RECONSTRUCTION_COARSEST = 32


def reconstruction_sides(output: tuple[int, int], style_sizes: Sequence[tuple[int, int]], style_scale: float,
                         needed: int, iterations: int) -> tuple[int, ...]:
    """The levels of a content reconstruction (``mode`` ``reconstruct_content``) without ``scales``: the
    ``(h, w)`` output's long side halved while the halved level's long side stays at least
    :data:`RECONSTRUCTION_COARSEST` pixels and its (and the styles', at ``style_scale``) both
    sides at least ``needed``, at most :data:`MAX_LEVELS` levels and ``iterations`` levels.

    Measured on HED's VGG16 (``docs/quality.md``, "Reconstructions"): tubingen at 256 px from
    noise in 300 iterations reaches 23.5 dB PSNR from ``relu2_2`` coarse to fine (32 to 256 px),
    16 dB in one level; the coarse levels settle the colours and the large shapes, which one
    fine level leaves to hundreds of iterations. (A style reconstruction stays at one level:
    at 32 px ``relu5_1``'s Gram matrix has two positions' features, which copy the style
    image's arrangement into what should be its texture.)"""
    sides = [max(output)]
    while len(sides) < min(MAX_LEVELS, iterations):
        half = round(sides[0] / 2)
        sizes = [scaled_to_long_side(output, half)]
        sizes += [scaled_to_long_side(s, max(1, round(half * style_scale))) for s in style_sizes]
        if half < RECONSTRUCTION_COARSEST or min(min(size) for size in sizes) < needed:
            break
        sides.insert(0, half)
    return tuple(sides)


def split_iterations(iterations: int, levels: int) -> list[int]:
    """Iterations per level: ``iterations`` split evenly, the remainder going to the last (finest) level."""
    base = iterations // levels
    return [base] * (levels - 1) + [iterations - base * (levels - 1)]


def check_inputs(options: StylizeOptions, n_styles: int, *, has_init_image: bool) -> tuple[float, ...]:
    """Check what ``options`` need of the inputs besides their sizes; return the blend weights
    (one per style, normalized; equal without ``style_blend_weights``).

    Raises:
        OptionError: ``style_blend_weights`` not one per style; ``init="image"`` (after
            ``mode``) without an init image (field ``init_image``, code ``missing_field``).
    """
    if options.style_blend_weights is not None and len(options.style_blend_weights) != n_styles:
        raise OptionError("out_of_range", "style_blend_weights", f"{{field}} has {len(options.style_blend_weights)} "
                          f"weights for {n_styles} style images")
    if options.effective().init == "image" and not has_init_image:
        raise OptionError("missing_field", "init_image", 'init="image" needs an init_image')
    return options.style_blend_weights or normalized([1.0] * n_styles)


@dataclass(frozen=True)
class Level:
    """One coarse-to-fine level."""

    index: int
    """0 for the coarsest."""
    side: int
    """Long side of the image optimized, pixels."""
    size: Size
    """``(h, w)`` of the image optimized at this level, pixels."""
    style_sizes: tuple[Size, ...]
    """``(h, w)`` of each style image at this level: ``style_scale`` x ``side`` on its long side."""
    iterations: int
    """Iterations at this level."""
    tile: int | None = None
    """Side of the square tile whose crop bounds every tile's (:func:`nst.tiling.tile_grid`
    cuts the level's images into the grid of fewest crop pixels within it, :mod:`nst.tiled`
    runs them), pixels; ``None``: whole images."""
    tiles: int = 1
    """Tiles per pass over the image optimized."""
    kept_tails: int = 0
    """Tiles whose graph after :data:`nst.tiled.TAIL_AFTER` pass 1 keeps for pass 2 (time for
    memory, as the budget allows)."""
    checkpointing: bool | None = None
    """Gradient checkpointing; ``None``: by the run's own rule (:data:`nst.memory.CHECKPOINT_PIXELS`)."""
    history: int = 0
    """L-BFGS history pairs kept (the option's, or fewer to fit the memory budget); 0: the option's."""
    peak_bytes: int = 0
    """Expected peak of the optimization's own memory at this level, bytes (:mod:`nst.memory`)."""
    cost: float = 1.0
    """Pixels an iteration processes per pixel of the image: more than 1 for tiles (halos, a
    second forward pass) and checkpointing."""
    pass_pixels: int = 0
    """Pixels of the images one pass of the network runs on: the level's, or on average one of
    its tiles' crops; 0: the level's (``size``)."""

    @property
    def iteration_work(self) -> float:
        """Pixels one iteration of the level processes: ``h x w x cost``."""
        return self.size[0] * self.size[1] * self.cost

    @property
    def work(self) -> float:
        """Pixel-iterations of the level: ``iterations x h x w x cost``."""
        return self.iterations * self.iteration_work


@dataclass(frozen=True)
class Plan:
    """What :func:`nst.stylize.stylize` runs: the effective options and the levels, coarse to fine."""

    options: StylizeOptions
    """After ``mode`` (:meth:`StylizeOptions.effective`)."""
    levels: tuple[Level, ...]
    blend: tuple[float, ...]
    """One weight per style image, summing to 1."""

    @property
    def size(self) -> Size:
        """``(h, w)`` of the output, pixels."""
        return self.levels[-1].size

    @property
    def sides(self) -> list[int]:
        """Every level's long side, coarse to fine (what a response echoes as ``scales``)."""
        return [level.side for level in self.levels]

    @property
    def work(self) -> float:
        """Pixel-iterations of the whole run: the sum over levels of ``iterations x h x w x cost``.
        Every layer of the network is a convolution over the image, so an iteration costs time
        in proportion to the pixels it processes, and a run in proportion to this (what
        run-time estimates scale by)."""
        return self.work_done(self.iterations)

    @property
    def iterations(self) -> int:
        """Iterations of the whole run, every level's together."""
        return sum(level.iterations for level in self.levels)

    def work_done(self, iterations: int, weight: Callable[[Level], float] | None = None) -> float:
        """Pixel-iterations of the first ``iterations`` iterations, counted across the levels
        in order (as :class:`nst.records.Iterate` counts them); with ``weight``, each level's
        multiplied by ``weight(level)`` (a device's relative seconds per pixel at that level)."""
        done, left = 0.0, iterations
        for level in self.levels:
            ran = min(level.iterations, max(left, 0))
            done += ran * level.iteration_work * (1.0 if weight is None else weight(level))
            left -= ran
        return done

    @property
    def peak_bytes(self) -> int:
        """The largest level's expected peak, bytes (the levels run one after another)."""
        return max(level.peak_bytes for level in self.levels)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def make_plan(content_size: Size, style_sizes: Sequence[Size], options: StylizeOptions, *,
              long_side: int | None = None, blend: Sequence[float] | None = None,
              budget: int | None = None) -> Plan:
    """Plan the levels of a run: sizes, per-level style sizes, iterations per level.

    Args:
        content_size: ``(H, W)`` of the content image, pixels.
        style_sizes: ``(H, W)`` of each style image, pixels.
        options: the options (``mode`` is applied here).
        long_side: the output's long side, pixels; ``None``: the content's own size is the
            output's.
        blend: the blend weights from :func:`check_inputs` (computed here when ``None``,
            without the init-image check).
        budget: bytes the optimization may use (:func:`nst.memory.plan_memory` fits each level
            in it with tiles, checkpointing and a shorter L-BFGS history); ``None``: no budget.

    Raises:
        OptionError: ``scales`` not ending at the output's long side (``scales``), or an image
            too small at some level for the layers in use (code ``image_too_small``; field
            ``image_size`` for the output, ``scales`` for a coarser level, ``style_scale``
            or ``style`` for a style image); a level that cannot fit ``budget`` even in the
            smallest tiles (code ``over_memory_budget``, field ``image_size``, or
            ``tile_size`` for tiles asked for).
    """
    opts = options.effective()
    if blend is None:
        blend = check_inputs(options, len(style_sizes), has_init_image=True)
    output = content_size if long_side is None else scaled_to_long_side(content_size, long_side)
    needed = min_side(opts.content_layers + opts.style_layers)
    sides = opts.scales or (max(output),)
    if opts.mode == "reconstruct_content" and not opts.scales:
        sides = reconstruction_sides(output, style_sizes, opts.style_scale, needed, opts.iterations)
    if sides[-1] != max(output):
        raise OptionError("out_of_range", "scales",
                          f"the last scale ({sides[-1]}) must be the output's long side ({max(output)})")
    grid = align(opts.content_layers + opts.style_layers)
    if opts.tile_size is not None and opts.tile_size < grid:
        raise OptionError("out_of_range", "tile_size", f"{{field}} must be at least {grid} pixels (the pooling grid "
                          f"of the deepest layer in use), got {opts.tile_size}")
    levels = []
    for index, (side, iterations) in enumerate(zip(sides, split_iterations(opts.iterations, len(sides)))):
        size = output if side == max(output) else scaled_to_long_side(output, side)
        if min(size) < needed:
            name = "image_size" if index == len(sides) - 1 else "scales"
            raise OptionError("image_too_small", name, f"the output would be {size[1]}x{size[0]} pixels at long side "
                              f"{side}; both sides must be at least {needed} pixels for these layers (raise "
                              f"{name} or use a less elongated content image)")
        scaled = tuple(scaled_to_long_side(s, max(1, round(side * opts.style_scale))) for s in style_sizes)
        for i, (h, w) in enumerate(scaled):
            if min(h, w) < needed:
                raise OptionError("image_too_small", "style_scale" if opts.style_scale < 1 else "style",
                                  f"style image {i} would be {w}x{h} pixels at long side {side}; both sides must "
                                  f"be at least {needed} pixels (see {{field}})")
        memory = plan_memory(size, opts.content_layers + opts.style_layers, opts.content_layers, budget=budget,
                           history=opts.lbfgs_history if opts.optimizer == "lbfgs" else 0, tile=opts.tile_size,
                           checkpointing=opts.gradient_checkpointing)
        if memory is None:
            assert budget is not None
            need = plan_memory(size, opts.content_layers + opts.style_layers, opts.content_layers, budget=None,
                             history=MIN_HISTORY, tile=opts.tile_size or MIN_TILE, checkpointing=False)
            raise OptionError("over_memory_budget", "tile_size" if opts.tile_size else "image_size",
                              f"level {index} ({size[1]}x{size[0]} pixels) needs about "
                              f"{_gib(need.peak_bytes if need else 0)} "
                              f"even in {opts.tile_size or MIN_TILE} px tiles, more than this server's memory budget "
                              f"({_gib(budget)}); lower {{field}}")
        levels.append(Level(index=index, side=side, size=size, style_sizes=scaled, iterations=iterations, tile=memory.tile,
                            tiles=memory.tiles, kept_tails=memory.kept_tails, checkpointing=memory.checkpointing, history=memory.history,
                            peak_bytes=memory.peak_bytes, cost=memory.cost, pass_pixels=memory.pass_pixels))
    return Plan(options=opts, levels=tuple(levels), blend=tuple(blend))

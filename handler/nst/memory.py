"""How much memory a level needs, and how to fit it in a budget: tiles and L-BFGS's history.

Bytes are counted per pixel of the image optimized (fp32):

- **Activations** of one forward and backward pass: the network's feature maps up to the
  deepest layer in use, ``sum(channels / stride^2)`` floats per input pixel (610 for VGG19 up
  to ``relu5_1``), times :data:`ACTIVATION_FACTOR`, measured on this engine (autograd keeps
  each ReLU's output and each pool's input, frees the convolutions' outputs, and the backward
  pass adds gradients): ``benchmarks/RESULTS.md``, "Large images". Gradient checkpointing keeps
  only the loss layers' outputs (:data:`CHECKPOINT_FACTOR`).
- **Image-sized vectors**: the image, its gradient and L-BFGS's working vectors (4 of them),
  plus two per pair of L-BFGS history (``lbfgs_history`` pairs of step and gradient change).
  Adam keeps two moments instead.
- **The content targets**: the content layers' features of the whole image (``relu4_2``: 8
  floats per pixel).

A tiled level (:mod:`nst.tiled`) needs the activations of its largest crop (interior plus halo)
instead of the whole image's. :func:`fit_level` picks, for a budget: the whole image if it
fits; else gradient checkpointing if that fits; else two tiles (halves, or bands: the grid
with the fewest crop pixels, :func:`nst.tiling.tile_grid`) if they fit; else the largest
tiles that fit. L-BFGS's
history may take at most half the budget: a level that would need more keeps fewer pairs
(at least :data:`MIN_HISTORY`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .tiling import align, receptive_field, tile_grid
from .vgg import LAYER_INDEX, VGG19_LAYERS

#: Measured activation bytes of a forward and backward pass over the model's feature floats
#: (:func:`feature_floats`) x 4: fitted to the peak RSS of 1024 and 2048 px runs.
ACTIVATION_FACTOR = 0.89
#: The same with gradient checkpointing (measured: 30% less peak at 2048 px).
CHECKPOINT_FACTOR = 0.55
#: Levels with more pixels than this (1024 x 1024) use gradient checkpointing unless told
#: otherwise or planned for a budget.
CHECKPOINT_PIXELS = 1024 * 1024
#: Time per iteration with gradient checkpointing, relative to without (measured at 2048 px).
CHECKPOINT_COST = 1.3
#: Time per tiled iteration over a crop's pixels, relative to an untiled one over as many: the
#: gradient-free first pass adds half an iteration. The last tile, whose first pass keeps its
#: graph, costs 1. Measured at 1024 px in one process (``benchmarks/RESULTS.md``, "Tiling
#: overhead, one process"): 1.92x the whole image's time in 4 squares (crops 1.34x its pixels;
#: this model: 1.84x), 1.57x in 2 bands (crops 1.16x; this model: 1.45x).
TILED_PASSES_COST = 1.5
#: Fewest L-BFGS history pairs a level keeps to fit a budget.
MIN_HISTORY = 5
#: Smallest tile side the planner picks, pixels (smaller tiles spend most of their time on halos).
MIN_TILE = 128
#: Bytes of an fp32 RGB pixel.
PIXEL_BYTES = 12
#: Image-sized vectors besides L-BFGS's history: image, gradient, and L-BFGS's direction,
#: previous gradient, previous step and one temporary (Adam: image, gradient, two moments).
WORK_VECTORS = 6

_CHANNELS = (64, 128, 256, 512, 512)


def layer_floats(name: str) -> float:
    """Floats per input pixel of one layer's output: its channels over its output stride
    squared (Simonyan & Zisserman 2015, table 1: 64, 128, 256, 512, 512 channels per block)."""
    block = int(name.removeprefix("conv").removeprefix("relu").removeprefix("pool")[0])
    stride = receptive_field(name).stride * (2 if name.startswith("pool") else 1)
    return _CHANNELS[block - 1] / stride**2


def feature_floats(layers: Sequence[str]) -> float:
    """Floats per input pixel of every feature map up to the deepest of ``layers``."""
    deepest = max(LAYER_INDEX[n] for n in layers)
    return sum(layer_floats(n) for n in VGG19_LAYERS[: deepest + 1])


@dataclass(frozen=True)
class Fit:
    """How one level runs within a budget, and what it is expected to need."""

    tile: int | None
    """Tile side, pixels; ``None``: the whole image."""
    tiles: int
    """Tiles per pass (1 untiled)."""
    checkpointing: bool | None
    """``None``: by the run's own rule (:data:`CHECKPOINT_PIXELS`)."""
    history: int
    """L-BFGS history pairs kept."""
    peak_bytes: int
    """Expected peak of the optimization's own memory (not the process's baseline)."""
    cost: float
    """Pixels one iteration processes, relative to one untiled pass: the crops' area (halos
    counted again) x :data:`TILED_PASSES_COST` for the tiles' extra forward pass, but the last
    tile's, which runs once (:mod:`nst.tiled`); x :data:`CHECKPOINT_COST` with checkpointing."""
    pass_pixels: int
    """Pixels of the images one pass of the network runs on: the level's, or on average one of
    its tiles' crops (what a device's speed per pixel depends on: caches, GPU occupancy)."""


def level_bytes(size: tuple[int, int], layers: Sequence[str], content_layers: Sequence[str], *,
                tile: int | None, checkpointing: bool, history: int) -> int:
    """Expected peak bytes of a level of ``size = (h, w)`` pixels (see the module)."""
    h, w = size
    pixels = h * w
    factor = CHECKPOINT_FACTOR if checkpointing else ACTIVATION_FACTOR
    active = pixels if tile is None else max(t.crop_pixels for t in tile_grid(size, tile, layers))
    vectors = (WORK_VECTORS + 2 * history) * PIXEL_BYTES * pixels
    return int(factor * feature_floats(layers) * 4 * active + vectors + sum(map(layer_floats, content_layers)) * 4 * pixels)


def _tiled_cost(size: tuple[int, int], tile: int, layers: Sequence[str]) -> tuple[int, float, int]:
    """Tiles of the grid the run will cut, the pixels one iteration processes over the image's
    (:attr:`Fit.cost`), and a crop's mean area (pixels)."""
    tiles = tile_grid(size, tile, layers)
    area = sum(t.crop_pixels for t in tiles)
    passes = TILED_PASSES_COST * area - (TILED_PASSES_COST - 1) * tiles[-1].crop_pixels
    return len(tiles), passes / (size[0] * size[1]), area // len(tiles)


def fit_level(size: tuple[int, int], layers: Sequence[str], content_layers: Sequence[str], *,
              budget: int | None, history: int, tile: int | None = None,
              checkpointing: bool | None = None) -> Fit | None:
    """Choose how a level of ``size`` runs (see the module); ``None`` when nothing fits.

    Args:
        budget: bytes the optimization may use; ``None``: no budget (tiles only where ``tile``
            asks, and checkpointing by the run's own rule, :data:`CHECKPOINT_PIXELS`).
        history: the L-BFGS history asked for (pairs; 0 for Adam).
        tile: a tile side asked for (used where it is smaller than the level's long side).
        checkpointing: asked for (``None``: chosen).
    """
    tile = tile if tile is not None and tile < max(size) else None
    if budget is None:
        return _fit(size, layers, content_layers, tile, checkpointing, history)
    histories = [history]
    if history:  # at most half the budget; failing that, the fewest pairs
        pair_bytes = 2 * PIXEL_BYTES * size[0] * size[1]
        histories = sorted({min(history, max(MIN_HISTORY, budget // 2 // pair_bytes)), min(history, MIN_HISTORY)},
                           reverse=True)
    for kept in histories:
        chosen = _fit_budget(size, layers, content_layers, budget, kept, tile, checkpointing)
        if chosen is not None:
            return chosen
    return None


def _fit(size: tuple[int, int], layers: Sequence[str], content_layers: Sequence[str], tile: int | None,
         checkpointing: bool | None, history: int) -> Fit:
    """The :class:`Fit` of one choice."""
    tiles, cost, crop = (1, 1.0, size[0] * size[1]) if tile is None else _tiled_cost(size, tile, layers)
    on = checkpointing if checkpointing is not None else tile is None and size[0] * size[1] > CHECKPOINT_PIXELS
    peak = level_bytes(size, layers, content_layers, tile=tile, checkpointing=on, history=history)
    return Fit(tile, tiles, checkpointing, history, peak, cost * (CHECKPOINT_COST if on else 1.0), crop)


def _fit_budget(size: tuple[int, int], layers: Sequence[str], content_layers: Sequence[str], budget: int,
                history: int, tile: int | None, checkpointing: bool | None) -> Fit | None:
    """The first choice that fits ``budget``: the tile asked for; else the whole image, without
    then with checkpointing; else two tiles; else the largest tiles."""
    if tile is not None:
        chosen = _fit(size, layers, content_layers, tile, bool(checkpointing), history)
        return chosen if chosen.peak_bytes <= budget else None
    for ckpt in ((checkpointing,) if checkpointing is not None else (False, True)):
        whole = _fit(size, layers, content_layers, None, ckpt, history)
        if whole.peak_bytes <= budget:
            return whole
    grid = align(layers)
    # Two tiles (halves or bands, :func:`nst.tiling.tile_grid`), then the largest that fit: n per long side.
    counts = range(2, max(size) // MIN_TILE + 1)
    sides = [(max(size) - 1) // grid * grid] * bool(counts) + [-(-max(size) // n // grid) * grid for n in counts]
    for side in sides:
        tiled = _fit(size, layers, content_layers, side, bool(checkpointing), history)
        if tiled.peak_bytes <= budget:
            return tiled
    return None

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
instead of the whole image's. :func:`plan_memory` picks, for a budget: the whole image if it
fits; else gradient checkpointing if that fits; else two tiles (halves, or bands: the grid
with the fewest crop pixels, :func:`nst.tiling.tile_grid`) if they fit; else the largest
tiles that fit. What the budget leaves over a tiled level's peak buys time: as many tiles as
fit keep their graph after :data:`nst.tiled.TAIL_AFTER` between the passes (a third of a
crop's activations each in VGG19 up to ``relu5_1``, for three quarters of its second forward
pass). Without a budget a tile size bounds memory, and no tail is kept. L-BFGS's
history may take at most half the budget: a level that would need more keeps fewer pairs
(at least :data:`MIN_HISTORY`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .tiled import TAIL_AFTER
from .tiling import align, receptive_field, tile_grid
from .vgg import LAYER_INDEX, VGG19_LAYERS, splits

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
#: graph, costs 1; a tile whose tail is kept, 1 plus the head's share of the half. Measured at
#: 1024 px in one process (``benchmarks/RESULTS.md``, "Tiling overhead, one process", fifth
#: session), against this model's pixels (and with the CPU's speed curve, which weighs a crop's
#: pixels below the whole image's, ``nst_http.budget.SpeedCurve``): 4 squares (crops 1.34x the
#: image's pixels) 1.65x (1.84x; 1.70x), with 3 tails kept 1.50x (1.47x; 1.35x); 2 bands (crops
#: 1.16x) 1.30x (1.45x; 1.39x), with 1 tail kept 1.16x (1.23x; 1.18x).
TILED_PASSES_COST = 1.5
#: Fewest L-BFGS history pairs a level keeps to fit a budget.
MIN_HISTORY = 5
#: Smallest tile side the planner picks, pixels (smaller tiles spend most of their time on halos).
MIN_TILE = 128
#: Bytes of an fp32 RGB pixel.
PIXEL_BYTES = 12
#: Image-sized vectors besides L-BFGS's history: image, gradient, and L-BFGS's direction,
#: previous gradient, previous step and one temporary (Adam: image, gradient, two moments);
#: the step projected onto the box and the image before it (``bounded``), and the best image
#: so far (:func:`nst.stylize.stylize`).
WORK_VECTORS = 9

_CHANNELS = (64, 128, 256, 512, 512)


def layer_floats(name: str) -> float:
    """Floats per input pixel of one layer's output: its channels over its output stride
    squared (Simonyan & Zisserman 2015, table 1: 64, 128, 256, 512, 512 channels per block)."""
    block = int(name.removeprefix("conv").removeprefix("relu").removeprefix("pool")[0])
    stride = receptive_field(name).stride * (2 if name.startswith("pool") else 1)
    return _CHANNELS[block - 1] / stride**2


def feature_floats(layers: Sequence[str]) -> float:
    """Floats per input pixel of every feature map up to the deepest of ``layers``."""
    return sum(layer_floats(n) for n in _network(layers))


def layer_macs(name: str) -> float:
    """Multiply-adds per input pixel of one layer: a 3x3 convolution's ``9 C_in C_out`` over
    its input stride squared; 0 for ReLUs and pools."""
    if not name.startswith("conv"):
        return 0.0
    block, n = (int(k) for k in name.removeprefix("conv").split("_"))
    c_in = _CHANNELS[block - 1] if n > 1 else (_CHANNELS[block - 2] if block > 1 else 3)
    return 9 * c_in * _CHANNELS[block - 1] / receptive_field(name).stride ** 2


def tail_shares(layers: Sequence[str]) -> tuple[float, float] | None:
    """The part of the network after :data:`nst.tiled.TAIL_AFTER`, up to the deepest of
    ``layers``, as shares of the whole: ``(activations with its input, multiply-adds)``
    (0.34 and 0.74 for VGG19 up to ``relu5_1``); ``None`` where the deepest layer is not after it."""
    net = _network(layers)
    if not splits(net, TAIL_AFTER):
        return None
    tail = net[net.index(TAIL_AFTER):]
    return (sum(map(layer_floats, tail)) / feature_floats(layers),
            sum(map(layer_macs, tail)) / sum(map(layer_macs, net)))


def _network(layers: Sequence[str]) -> tuple[str, ...]:
    """VGG19's layer names up to the deepest of ``layers``."""
    return VGG19_LAYERS[: max(LAYER_INDEX[n] for n in layers) + 1]


@dataclass(frozen=True)
class MemoryPlan:
    """How one level runs within a budget, and what it is expected to need."""

    tile: int | None
    """Tile side, pixels; ``None``: the whole image."""
    tiles: int
    """Tiles per pass (1 untiled)."""
    kept_tails: int
    """Tiles whose graph after :data:`nst.tiled.TAIL_AFTER` is kept between the passes."""
    checkpointing: bool | None
    """``None``: by the run's own rule (:data:`CHECKPOINT_PIXELS`)."""
    history: int
    """L-BFGS history pairs kept."""
    peak_bytes: int
    """Expected peak of the optimization's own memory (not the process's baseline)."""
    cost: float
    """Pixels one iteration processes, relative to one untiled pass: the crops' area (halos
    counted again) x :data:`TILED_PASSES_COST` for the tiles' extra forward pass, but the last
    tile's, which runs once (:mod:`nst.tiled`), and a kept tail's, whose share of the
    multiply-adds runs once; x :data:`CHECKPOINT_COST` with checkpointing."""
    pass_pixels: int
    """Pixels of the images one pass of the network runs on: the level's, or on average one of
    its tiles' crops (what a device's speed per pixel depends on: caches, GPU occupancy)."""


def level_bytes(size: tuple[int, int], layers: Sequence[str], content_layers: Sequence[str], *,
                tile: int | None, checkpointing: bool, history: int, kept_tails: int = 0) -> int:
    """Expected peak bytes of a level of ``size = (h, w)`` pixels (see the module)."""
    h, w = size
    pixels = h * w
    factor = CHECKPOINT_FACTOR if checkpointing else ACTIVATION_FACTOR
    active = float(pixels if tile is None else max(t.crop_pixels for t in tile_grid(size, tile, layers)))
    if kept_tails:
        shares = tail_shares(layers)
        assert tile is not None and shares is not None
        active *= 1 + kept_tails * shares[0]
    vectors = (WORK_VECTORS + 2 * history) * PIXEL_BYTES * pixels
    return int(factor * feature_floats(layers) * 4 * active + vectors + sum(map(layer_floats, content_layers)) * 4 * pixels)


def _tiled_cost(size: tuple[int, int], tile: int, layers: Sequence[str], kept_tails: int) -> tuple[int, float, int]:
    """Tiles of the grid the run will cut, the pixels one iteration processes over the image's
    (:attr:`MemoryPlan.cost`), and a crop's mean area (pixels)."""
    tiles = tile_grid(size, tile, layers)
    area = sum(t.crop_pixels for t in tiles)
    extra = TILED_PASSES_COST - 1  # a crop's gradient-free forward pass, per pixel
    kept_extra = extra * (1 - (tail_shares(layers) or (0.0, 0.0))[1])  # its head's, for a kept tail
    passes = (TILED_PASSES_COST * area - extra * tiles[-1].crop_pixels
              - (extra - kept_extra) * sum(t.crop_pixels for t in tiles[: min(kept_tails, len(tiles) - 1)]))
    return len(tiles), passes / (size[0] * size[1]), area // len(tiles)


def plan_memory(size: tuple[int, int], layers: Sequence[str], content_layers: Sequence[str], *,
              budget: int | None, history: int, tile: int | None = None,
              checkpointing: bool | None = None) -> MemoryPlan | None:
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
        return _memory_plan(size, layers, content_layers, tile, checkpointing, history)
    histories = [history]
    if history:  # at most half the budget; failing that, the fewest pairs
        pair_bytes = 2 * PIXEL_BYTES * size[0] * size[1]
        histories = sorted({min(history, max(MIN_HISTORY, budget // 2 // pair_bytes)), min(history, MIN_HISTORY)},
                           reverse=True)
    for kept in histories:
        chosen = _within_budget(size, layers, content_layers, budget, kept, tile, checkpointing)
        if chosen is not None:
            return chosen
    return None


def checkpoints(size: tuple[int, int], tile: int | None, checkpointing: bool | None) -> bool:
    """Whether a level of ``size`` (pixels) runs with gradient checkpointing: ``checkpointing``
    where given, else untiled levels of more than :data:`CHECKPOINT_PIXELS` pixels."""
    return checkpointing if checkpointing is not None else tile is None and size[0] * size[1] > CHECKPOINT_PIXELS


def _memory_plan(size: tuple[int, int], layers: Sequence[str], content_layers: Sequence[str], tile: int | None,
         checkpointing: bool | None, history: int, kept_tails: int = 0) -> MemoryPlan:
    """The :class:`MemoryPlan` of one choice."""
    tiles, cost, crop = (1, 1.0, size[0] * size[1]) if tile is None else _tiled_cost(size, tile, layers, kept_tails)
    on = checkpoints(size, tile, checkpointing)
    peak = level_bytes(size, layers, content_layers, tile=tile, checkpointing=on, history=history,
                       kept_tails=kept_tails)
    return MemoryPlan(tile, tiles, kept_tails, checkpointing, history, peak, cost * (CHECKPOINT_COST if on else 1.0), crop)


def _keep_tails(chosen: MemoryPlan, size: tuple[int, int], layers: Sequence[str], content_layers: Sequence[str],
                budget: int) -> MemoryPlan:
    """``chosen`` (tiled, within ``budget``) with as many kept tails as the rest of the budget holds."""
    if chosen.tile is None or chosen.checkpointing or tail_shares(layers) is None:
        return chosen
    one = _memory_plan(size, layers, content_layers, chosen.tile, chosen.checkpointing, chosen.history, 1).peak_bytes - chosen.peak_bytes
    for kept in range(min(chosen.tiles - 1, (budget - chosen.peak_bytes) // max(one, 1)), 0, -1):
        keeping = _memory_plan(size, layers, content_layers, chosen.tile, chosen.checkpointing, chosen.history, kept)
        if keeping.peak_bytes <= budget:  # (the estimate's rounding)
            return keeping
    return chosen


def _within_budget(size: tuple[int, int], layers: Sequence[str], content_layers: Sequence[str], budget: int,
                history: int, tile: int | None, checkpointing: bool | None) -> MemoryPlan | None:
    """The first choice that fits ``budget``: the tile asked for; else the whole image, without
    then with checkpointing; else two tiles; else the largest tiles; tiles with as many kept
    tails as fit."""
    if tile is not None:
        chosen = _memory_plan(size, layers, content_layers, tile, bool(checkpointing), history)
        return _keep_tails(chosen, size, layers, content_layers, budget) if chosen.peak_bytes <= budget else None
    for ckpt in ((checkpointing,) if checkpointing is not None else (False, True)):
        whole = _memory_plan(size, layers, content_layers, None, ckpt, history)
        if whole.peak_bytes <= budget:
            return whole
    grid = align(layers)
    # Two tiles (halves or bands, :func:`nst.tiling.tile_grid`), then the largest that fit: n per long side.
    counts = range(2, max(size) // MIN_TILE + 1)
    sides = [(max(size) - 1) // grid * grid] * bool(counts) + [-(-max(size) // n // grid) * grid for n in counts]
    for side in sides:
        tiled = _memory_plan(size, layers, content_layers, side, bool(checkpointing), history)
        if tiled.peak_bytes <= budget:
            return _keep_tails(tiled, size, layers, content_layers, budget)
    return None

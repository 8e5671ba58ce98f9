"""Tiles for an exact tiled objective: where each tile's features are exactly the full image's.

Every loss term is a sum over feature positions (content and TV terms are local; a Gram matrix
is a mean of outer products over positions), so the loss of the full image, and its gradient,
can be computed tile by tile (:mod:`nst.tiled`). For that, the features a tile contributes
must equal the full image's. A feature of VGG layer ``l`` at position ``i`` depends only on the
input pixels of its receptive field, ``[i * stride + lo, i * stride + hi]``: so a tile owns
the features of its *interior* and is computed from a *crop* that adds a halo of at least the
receptive field's reach on every side (clipped at the image's edges, where the zero padding is
the full image's own), with the crop's origin on the pooling grid (a multiple of the deepest
layer's stride) so that every 2x2 pool pairs the same pixels as in the full image. The
interiors partition the image, and so every layer's feature grid.

The receptive field follows from the layer names alone: every VGG convolution is 3x3 with
padding 1 (it widens the field by one stride on each side) and every pool 2x2 with stride 2
(it widens it by one stride on the far side, then doubles the stride): Simonyan & Zisserman,
"Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015, sec. 2.1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache

from .vgg import LAYER_INDEX, VGG19_LAYERS

Size = tuple[int, int]


@dataclass(frozen=True)
class Field:
    """The receptive field of one layer: feature ``i`` sees input pixels
    ``[i * stride + lo, i * stride + hi]`` (one axis; the same on both)."""

    lo: int
    """Reach before ``i * stride``, pixels (<= 0)."""
    hi: int
    """Reach after ``i * stride``, pixels (>= 0)."""
    stride: int
    """Input pixels per feature position: 2 to the number of pools before the layer."""


@cache
def receptive_field(layer: str) -> Field:
    """The :class:`Field` of a VGG layer (VGG16 and VGG19 share the names' geometry: a block's
    convolutions come before its pool in both).

    Raises:
        KeyError: an unknown layer name.
    """
    lo = hi = 0
    stride = 1
    for name in VGG19_LAYERS[: LAYER_INDEX[layer] + 1]:
        if name.startswith("conv"):
            lo, hi = lo - stride, hi + stride
        elif name.startswith("pool"):
            hi += stride
            stride *= 2
    return Field(lo, hi, stride)


def align(layers: Iterable[str]) -> int:
    """The pooling grid of ``layers``: the largest stride among them, pixels. Tile interiors and
    crops start on multiples of it."""
    return max(receptive_field(n).stride for n in layers)


def halo(layers: Iterable[str]) -> int:
    """Pixels a tile's crop adds on each side of its interior so that every interior feature
    of every layer in ``layers`` sees only pixels of the crop (or the image's own edge): the
    largest reach of their receptive fields, rounded up to the pooling grid (:func:`align`)."""
    layers = tuple(layers)
    reach = max(max(-f.lo, f.hi - f.stride + 1) for f in map(receptive_field, layers))
    grid = align(layers)
    return math.ceil(reach / grid) * grid


@dataclass(frozen=True)
class Tile:
    """One tile: the interior it owns and the crop its features are computed from, pixels,
    ``[y0, y1) x [x0, x1)`` in the full image."""

    interior: tuple[int, int, int, int]
    """``(y0, y1, x0, x1)``."""
    crop: tuple[int, int, int, int]
    """``(y0, y1, x0, x1)``: the interior plus the halo, clipped to the image."""

    @property
    def crop_pixels(self) -> int:
        """The crop's area, pixels (what one pass over the tile runs on)."""
        y0, y1, x0, x1 = self.crop
        return (y1 - y0) * (x1 - x0)

    def crop_slices(self) -> tuple[slice, slice]:
        """Rows and columns of the crop in the full image."""
        y0, y1, x0, x1 = self.crop
        return slice(y0, y1), slice(x0, x1)

    def owned(self, layer: str, image_size: Size) -> tuple[slice, slice]:
        """Rows and columns of ``layer``'s features that this tile owns, in the full image's
        feature grid (the last tile of a row or column owns up to the grid's end, which the
        pools' rounding down may leave short of ``side / stride``)."""
        s = receptive_field(layer).stride
        y0, y1, x0, x1 = self.interior
        h, w = image_size
        return (slice(y0 // s, h // s if y1 == h else y1 // s),
                slice(x0 // s, w // s if x1 == w else x1 // s))

    def interior_of(self, layer: str, image_size: Size) -> tuple[slice, slice]:
        """The same features in the crop's own feature grid (what the crop's forward pass gives)."""
        s = receptive_field(layer).stride
        rows, cols = self.owned(layer, image_size)
        cy, cx = self.crop[0] // s, self.crop[2] // s
        return slice(rows.start - cy, rows.stop - cy), slice(cols.start - cx, cols.stop - cx)


def _axis_cuts(side: int, n: int, grid: int, margin: int) -> tuple[tuple[int, int, int, int], ...]:
    """``n`` interiors ``(lo, hi)`` as equal as the pooling ``grid`` allows (the remainder goes
    to the last) along one axis of ``side`` pixels, each with its crop ``(lo - margin, hi +
    margin)`` clipped to the axis: ``(lo, hi, crop_lo, crop_hi)``, pixels."""
    cells = side // grid
    bounds = sorted({round(cells * k / n) * grid for k in range(n)} | {side})
    return tuple((lo, hi, max(0, lo - margin), min(side, hi + margin)) for lo, hi in zip(bounds, bounds[1:]))


@lru_cache(maxsize=4096)
def _axis_extent(side: int, n: int, grid: int, margin: int) -> tuple[int, int]:
    """The sum and the largest of :func:`_axis_cuts`'s crop lengths, pixels."""
    lengths = [c1 - c0 for _, _, c0, c1 in _axis_cuts(side, n, grid, margin)]
    return sum(lengths), max(lengths)


def tile_grid(size: Size, tile_side: int, layers: Iterable[str]) -> list[Tile]:
    """:func:`_tile_grid`, remembered for the last few sizes (a plan prices each candidate's
    grid for time and memory, and the run cuts the same grid again)."""
    return list(_tile_grid(size, tile_side, tuple(layers)))


@lru_cache(maxsize=256)
def _tile_grid(size: Size, tile_side: int, layers: tuple[str, ...]) -> tuple[Tile, ...]:
    """Tiles that partition an image of ``size = (H, W)``, with the crops that make their
    features exact for ``layers`` (row by row), none of whose crops is larger than a
    ``tile_side`` square tile's: the grid, of at least two tiles, whose crops add up to the
    fewest pixels (ties: the fewest tiles, then the most rows: a band as wide as the image has
    its interior features contiguous in ``channels_last`` memory, and computes faster than a
    column band of as many pixels: 1.20x against 1.35x the whole image's time per iteration at
    1024 px in one process). That is what one tiled iteration's time is
    proportional to; the largest crop, what its memory is. So where the memory of a square
    tile allows it, an image is cut in bands: 1024 x 1024 px with ``tile_side`` 768 in two
    1024 x 512 bands (crops 1.16x the image's pixels) rather than four 512 px squares (1.34x).

    Each interior side is a multiple of the pooling grid (:func:`align`), but the last of a row
    or column, which ends at the image's edge; the sides are as equal as that allows.

    Raises:
        ValueError: ``tile_side`` smaller than the pooling grid, or no layer.
    """
    if not layers:
        raise ValueError("tiling needs at least one layer")
    grid, margin = align(layers), halo(layers)
    if tile_side < grid:
        raise ValueError(f"tile side must be at least {grid} pixels (the pooling grid of {layers[-1]}), got {tile_side}")
    h, w = size
    counts = (max(1, h // grid), max(1, w // grid))  # most interiors per axis: one grid cell each
    square = [min(counts[i], max(1, math.ceil(side / tile_side))) for i, side in enumerate(size)]
    largest = max(min(tile_side + 2 * margin, h) * min(tile_side + 2 * margin, w),
                  _axis_extent(h, square[0], grid, margin)[1] * _axis_extent(w, square[1], grid, margin)[1])
    best: tuple[int, int, int, int] | None = None  # (pixels, tiles, -rows, columns)
    for ny in range(1, counts[0] + 1):
        rows_sum, rows_max = _axis_extent(h, ny, grid, margin)
        for nx in range(1 if ny > 1 else 2, counts[1] + 1):  # the first that fits has the fewest pixels
            cols_sum, cols_max = _axis_extent(w, nx, grid, margin)
            if rows_max * cols_max <= largest:
                candidate = (rows_sum * cols_sum, ny * nx, -ny, nx)
                best = candidate if best is None or candidate < best else best
                break
    return tuple(grid_tiles(size, (square[0], square[1]) if best is None else (-best[2], best[3]), layers))


def grid_tiles(size: Size, counts: tuple[int, int], layers: Iterable[str]) -> list[Tile]:
    """The tiles of a grid of ``counts = (rows, columns)`` over an image of ``size = (H, W)``,
    row by row, with the crops that make their features exact for ``layers`` (interiors as
    :func:`tile_grid` cuts them; fewer where an axis has fewer pooling-grid cells)."""
    layers = tuple(layers)
    grid, margin = align(layers), halo(layers)
    return [Tile((y0, y1, x0, x1), (cy0, cy1, cx0, cx1))
            for y0, y1, cy0, cy1 in _axis_cuts(size[0], counts[0], grid, margin)
            for x0, x1, cx0, cx1 in _axis_cuts(size[1], counts[1], grid, margin)]

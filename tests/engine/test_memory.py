"""The memory model's choices within a budget (issue 13): the whole image, gradient
checkpointing, two tiles (bands), then more tiles; and what a tiled iteration costs."""

from __future__ import annotations

import pytest
from nst.memory import CHECKPOINT_COST, MIN_HISTORY, TILED_PASSES_COST, fit_level, level_bytes
from nst.tiling import tile_grid
from nst.vgg import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS

LAYERS = DEFAULT_CONTENT_LAYERS + DEFAULT_STYLE_LAYERS
SIZE = (1024, 1024)


def fit(budget: int | None, **kw):
    return fit_level(SIZE, LAYERS, DEFAULT_CONTENT_LAYERS, budget=budget, history=20, **kw)


def need(tile: int | None, checkpointing: bool = False) -> int:
    return level_bytes(SIZE, LAYERS, DEFAULT_CONTENT_LAYERS, tile=tile, checkpointing=checkpointing, history=20)


def test_a_budget_picks_whole_then_checkpointing_then_two_bands_then_more_tiles() -> None:
    whole, checkpointed, bands, squares = need(None), need(None, True), need(1008), need(512)
    assert whole > checkpointed > bands > squares  # a band's crop holds 58% of the pixels
    assert fit(whole).tile is None and not fit(whole).checkpointing
    assert fit(checkpointed).tile is None and fit(checkpointed).checkpointing
    two = fit(bands)
    assert (two.tiles, two.peak_bytes, two.history) == (2, bands, 20)
    assert two.pass_pixels == 1024 * 592  # a band and its halo: 512 + 80 rows
    four = fit(bands - 1)
    assert four.tiles == 4 and four.peak_bytes <= bands - 1
    smallest = level_bytes(SIZE, LAYERS, DEFAULT_CONTENT_LAYERS, tile=128, checkpointing=False, history=MIN_HISTORY)
    last = fit(smallest)
    assert last is not None and (last.tile, last.history) == (128, MIN_HISTORY)  # the history shrinks first
    assert fit(smallest - 1) is None


def test_a_tiled_iteration_costs_one_and_a_half_passes_per_crop_pixel_but_the_last_tile_s() -> None:
    tiles = tile_grid(SIZE, 512, LAYERS)
    crops = [t.crop_pixels for t in tiles]
    assert crops == [592 * 592] * 4
    expected = (TILED_PASSES_COST * sum(crops) - (TILED_PASSES_COST - 1) * crops[-1]) / (1024 * 1024)
    assert fit(None, tile=512).cost == pytest.approx(expected)
    assert fit(None, tile=768).cost == pytest.approx((1.5 + 1.0) * 1024 * 592 / 1024**2)  # two bands
    assert fit(None, checkpointing=True).cost == CHECKPOINT_COST
    assert fit(None).cost == 1.0

"""The memory model's choices within a budget (issue 13): the whole image, gradient
checkpointing, two tiles (bands), then more tiles, then kept tails with what is left; and what
a tiled iteration costs."""

from __future__ import annotations

import pytest
from nst.memory import (
    ACTIVATION_FACTOR,
    CHECKPOINT_COST,
    MIN_HISTORY,
    TILED_PASSES_COST,
    feature_floats,
    layer_macs,
    level_bytes,
    plan_memory,
    tail_shares,
)
from nst.tiling import tile_grid
from nst.vgg import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS

LAYERS = DEFAULT_CONTENT_LAYERS + DEFAULT_STYLE_LAYERS
SIZE = (1024, 1024)


def memory_plan(budget: int | None, **kw):
    return plan_memory(SIZE, LAYERS, DEFAULT_CONTENT_LAYERS, budget=budget, history=20, **kw)


def need(tile: int | None, checkpointing: bool = False, kept_tails: int = 0) -> int:
    return level_bytes(SIZE, LAYERS, DEFAULT_CONTENT_LAYERS, tile=tile, checkpointing=checkpointing, history=20,
                       kept_tails=kept_tails)


def test_a_budget_picks_whole_then_checkpointing_then_two_bands_then_more_tiles() -> None:
    whole, checkpointed, bands, squares = need(None), need(None, True), need(1008), need(512)
    assert whole > checkpointed > bands > squares  # a band's crop holds 58% of the pixels
    assert memory_plan(whole).tile is None and not memory_plan(whole).checkpointing
    assert memory_plan(checkpointed).tile is None and memory_plan(checkpointed).checkpointing
    two = memory_plan(bands)
    assert (two.tiles, two.peak_bytes, two.history) == (2, bands, 20)
    assert two.pass_pixels == 1024 * 592  # a band and its halo: 512 + 80 rows
    four = memory_plan(bands - 1)
    assert four.tiles == 4 and four.peak_bytes <= bands - 1
    smallest = level_bytes(SIZE, LAYERS, DEFAULT_CONTENT_LAYERS, tile=128, checkpointing=False, history=MIN_HISTORY)
    last = memory_plan(smallest)
    assert last is not None and (last.tile, last.history) == (128, MIN_HISTORY)  # the history shrinks first
    assert memory_plan(smallest - 1) is None


def test_a_tiled_iteration_costs_one_and_a_half_passes_per_crop_pixel_but_the_last_tile_s() -> None:
    tiles = tile_grid(SIZE, 512, LAYERS)
    crops = [t.crop_pixels for t in tiles]
    assert crops == [592 * 592] * 4
    expected = (TILED_PASSES_COST * sum(crops) - (TILED_PASSES_COST - 1) * crops[-1]) / (1024 * 1024)
    assert memory_plan(None, tile=512).cost == pytest.approx(expected)
    assert memory_plan(None, tile=768).cost == pytest.approx((1.5 + 1.0) * 1024 * 592 / 1024**2)  # two bands
    assert memory_plan(None, checkpointing=True).cost == CHECKPOINT_COST
    assert memory_plan(None).cost == 1.0


def test_the_tail_after_pool2_is_a_third_of_the_activations_and_three_quarters_of_the_multiply_adds() -> None:
    shares = tail_shares(LAYERS)
    assert shares is not None
    activations, macs = shares
    assert activations == pytest.approx(0.34, abs=0.005) and macs == pytest.approx(0.74, abs=0.005)
    assert layer_macs("conv1_1") == 9 * 3 * 64 and layer_macs("conv3_2") == 9 * 256 * 256 / 16
    assert layer_macs("relu3_1") == layer_macs("pool2") == 0
    assert tail_shares(("relu1_1", "relu2_1")) is None  # nothing after pool2 to keep


def test_what_a_budget_leaves_over_the_tiles_keeps_tails_and_each_saves_most_of_a_second_pass() -> None:
    shares = tail_shares(LAYERS)
    assert shares is not None
    plain = memory_plan(None, tile=512)
    assert plain.kept_tails == 0  # without a budget a tile size bounds memory
    one = need(512, kept_tails=1) - need(512)
    crop = max(t.crop_pixels for t in tile_grid(SIZE, 512, LAYERS))
    assert one == pytest.approx(ACTIVATION_FACTOR * feature_floats(LAYERS) * 4 * crop * shares[0], abs=2)
    kept = [memory_plan(need(512) + k * one, tile=512).kept_tails for k in range(5)]
    assert kept == [0, 1, 2, 3, 3]  # at most every tile but the last, whose whole graph is kept anyway
    assert memory_plan(need(512) + 3 * one, tile=512).peak_bytes <= need(512) + 3 * one
    crops = [t.crop_pixels for t in tile_grid(SIZE, 512, LAYERS)]
    saved = (TILED_PASSES_COST - 1) * shares[1] * crops[0] / (1024 * 1024)
    assert memory_plan(need(512) + one, tile=512).cost == pytest.approx(plain.cost - saved)
    assert memory_plan(need(512) + 3 * one, tile=512).cost == pytest.approx(plain.cost - 3 * saved)
    assert memory_plan(need(512, True) + 3 * one, tile=512, checkpointing=True).kept_tails == 0  # it keeps nothing

"""time_budget_s: the run stops early with the image so far, and says so."""

from __future__ import annotations

import time

import pytest
from nst.stylize import Iterate, StylizeOptions, stylize
from nst.vgg import VGGFeatures


def slow(seconds: float):
    """A progress callback that makes every evaluation take at least ``seconds``."""
    def callback(it: Iterate) -> None:
        time.sleep(seconds)
    return callback


def test_no_budget_runs_every_step(load_image, features: VGGFeatures) -> None:
    content, style = load_image("tubingen_64x64.png"), load_image("starry_night_64x64.png")
    result = stylize(content, style, features, StylizeOptions(iterations=3))
    assert result.stopped == "iterations" and result.iterations == 3


def test_budget_stops_early_with_a_consistent_result(load_image, features: VGGFeatures) -> None:
    content, style = load_image("tubingen_64x64.png"), load_image("starry_night_64x64.png")
    # Every evaluation takes >= 0.1 s, so 1000 iterations cannot fit in 0.5 s.
    result = stylize(content, style, features, StylizeOptions(iterations=1000, time_budget_s=0.5), callback=slow(0.1))
    assert result.stopped == "time_budget"
    assert 1 <= result.iterations < 1000
    assert len(result.history) == result.iterations
    assert [it.iteration for it in result.history] == list(range(1, result.iterations + 1))
    assert result.history[-1].losses == result.losses
    assert result.image.shape == content.shape and 0 <= result.image.min() and result.image.max() <= 1


def test_budget_spent_at_a_coarse_level_still_answers_full_size(load_image, features: VGGFeatures) -> None:
    content, style = load_image("tubingen_64x64.png"), load_image("starry_night_64x64.png")
    options = StylizeOptions(iterations=200, scales=(32, 64), time_budget_s=0.4)
    result = stylize(content, style, features, options, callback=slow(0.1))
    assert result.stopped == "time_budget"
    assert result.sizes == [(32, 32)]  # the fine level never ran...
    assert result.image.shape == (1, 3, 64, 64)  # ...but the answer has the output's size
    assert result.history[-1].iteration == result.iterations and result.history[-1].level == 1
    # The reported losses are those of the returned full-size image: a run starting from it
    # evaluates the same losses at its iteration 0.
    seen: list[Iterate] = []
    stylize(content, style, features, StylizeOptions(iterations=1, init="image"), init_image=result.image,
            callback=seen.append)
    assert seen[0].losses == pytest.approx(result.losses, rel=1e-4)

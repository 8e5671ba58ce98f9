"""The style-target cache: a repeated style skips its feature extraction and changes nothing."""

from __future__ import annotations

import importlib

import pytest
import torch
from nst.cache import StyleCache, StyleTargets
from nst.stylize import StylizeOptions, stylize
from nst.vgg import VGGFeatures

objective_module = importlib.import_module("nst.objective")


def test_lru_evicts_the_least_recently_used() -> None:
    cache = StyleCache(2)
    cache.put("a", {"x": torch.zeros(1)})
    cache.put("b", {"x": torch.ones(1)})
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", {"x": torch.ones(1)})
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert len(cache) == 2 and (cache.hits, cache.misses) == (3, 1)
    disabled = StyleCache(0)
    disabled.put("a", {})
    assert disabled.get("a") is None
    with pytest.raises(ValueError):
        StyleCache(-1)


def test_a_hit_gives_identical_pixels_and_skips_the_style_pass(load_image, features: VGGFeatures,
                                                               monkeypatch) -> None:
    content, style = load_image("tubingen_64x64.png"), load_image("starry_night_64x64.png")
    cache = StyleCache(8)
    options = StylizeOptions(iterations=3)
    first = stylize(content, style, features, options, style_targets=StyleTargets(cache, ["starry"]))
    assert first.cache == "miss" and len(cache) == 1

    passes = []
    real = objective_module.FeatureExtractor

    def counting(features, layers, pooling="max", **kwargs):
        passes.append(tuple(layers))
        return real(features, layers, pooling, **kwargs)

    monkeypatch.setattr(objective_module, "FeatureExtractor", counting)
    second = stylize(content, style, features, options, style_targets=StyleTargets(cache, ["starry"]))
    assert second.cache == "hit"
    assert torch.equal(first.image, second.image) and first.losses == second.losses
    assert options.style_layers not in passes  # no extractor was built for the style layers alone
    uncached = stylize(content, style, features, options)
    assert uncached.cache is None and torch.equal(uncached.image, first.image)


@pytest.mark.parametrize("change", [
    {"style_scale": 0.5}, {"pooling": "avg"}, {"style_layers": ("relu1_1",)}, {"color_control": "histogram"},
])
def test_what_the_targets_depend_on_is_in_the_key(load_image, features: VGGFeatures, change: dict) -> None:
    content, style = load_image("tubingen_64x64.png"), load_image("starry_night_64x64.png")
    cache = StyleCache(8)
    stylize(content, style, features, StylizeOptions(iterations=1), style_targets=StyleTargets(cache, ["starry"]))
    other = stylize(content, style, features, StylizeOptions(iterations=1, **change), style_targets=StyleTargets(cache, ["starry"]))
    assert other.cache == "miss"


def test_the_run_s_lookups_are_its_own(load_image, features: VGGFeatures) -> None:
    """A run counts its own lookups (one per style image and level), the cache all of them."""
    content, style = load_image("tubingen_64x64.png"), load_image("starry_night_64x64.png")
    cache = StyleCache(8)
    options = StylizeOptions(iterations=2, scales=(32, 64))
    first = stylize(content, [style, style], features, options, style_targets=StyleTargets(cache, ["a", "b"]))
    targets = StyleTargets(cache, ["a", "c"])
    second = stylize(content, [style, style], features, options, style_targets=targets)
    assert (first.cache_hits, first.cache_misses, first.cache) == (0, 4, "miss")
    assert (second.cache_hits, second.cache_misses, second.cache) == (2, 2, "miss") == (targets.hits, targets.misses, "miss")
    assert (cache.hits, cache.misses, len(cache)) == (2, 6, 6)


def test_no_keys_no_caching(load_image, features: VGGFeatures) -> None:
    content, style = load_image("tubingen_64x64.png"), load_image("starry_night_64x64.png")
    cache = StyleCache(8)
    assert stylize(content, style, features, StylizeOptions(iterations=1)).cache is None
    assert len(cache) == 0

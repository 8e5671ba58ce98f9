"""What a run returns (issue 25): pixels kept in ``[0, 1]`` throughout (``bounded``), the lowest
loss evaluated rather than the last iterate (``keep_best``), a divergence ended with the best image
so far, and any ``(1, 3, H, W)`` input whatever its strides."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from engine.objective_helpers import stylize_module
from nst.objective import Objective
from nst.options import StylizeOptions
from nst.stylize import Iterate, stylize
from nst.vgg import VGGFeatures


def test_pixels_stay_in_range_and_the_returned_loss_is_the_lowest(hed_features: VGGFeatures, tensor) -> None:
    """On trained weights at 128x96, where unbounded L-BFGS steps leave ``[0, 1]`` (checked
    too, so that the bound is what keeps them in) and the last iterate is not the best."""
    content, style = tensor("tubingen_128x96.png"), tensor("starry_night_128x96.png")
    ranges: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    results = {}
    for bounded in (True, False):
        def seen(it: Iterate, bounded: bool = bounded) -> None:
            assert it.image is not None
            ranges[bounded].append((float(it.image.min()), float(it.image.max())))

        results[bounded] = stylize(content, style, hed_features, StylizeOptions(iterations=60, bounded=bounded),
                                   callback=seen)
    assert all(0.0 <= low and high <= 1.0 for low, high in ranges[True])
    assert any(low < 0.0 or high > 1.0 for low, high in ranges[False])
    for result in results.values():
        lowest = min(it.losses["total"] for it in result.history)
        assert result.losses["total"] <= 1.01 * lowest
        assert result.history[-1].losses == result.losses


def test_the_last_iterate_is_returned_only_when_asked(features: VGGFeatures, tensor) -> None:
    content, style = tensor("tubingen_64x64.png"), tensor("starry_night_64x64.png")
    options: dict[str, Any] = {"iterations": 12, "content_layers": ("relu2_2",), "style_layers": ("relu1_1", "relu2_1")}
    kept = stylize(content, style, features, StylizeOptions(**options))
    last = stylize(content, style, features, StylizeOptions(keep_best=False, **options))
    totals = [it.losses["total"] for it in kept.history]
    assert kept.losses["total"] == min(totals)
    assert [it.losses for it in last.history[:-1]] == [it.losses for it in kept.history[:-1]]  # the same run


class _NaNAfter(Objective):
    """The objective a run builds, whose evaluations from the ``after``-th on return NaN."""

    def __init__(self, inner: Objective, after: int) -> None:
        self.inner, self.after, self.calls = inner, after, 0
        self.loss_terms = inner.loss_terms

    def evaluate(self, image: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        terms = self.inner.evaluate(image)
        return terms * float("nan") if self.calls > self.after else terms

    def terms(self, image: torch.Tensor) -> torch.Tensor:
        return self.inner.terms(image)


def test_a_non_finite_loss_ends_the_run_with_the_best_image(features: VGGFeatures, tensor,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    build = stylize_module.build_objective
    monkeypatch.setattr(stylize_module, "build_objective", lambda *a, **k: _NaNAfter(build(*a, **k), after=5))
    content, style = tensor("tubingen_64x64.png"), tensor("starry_night_64x64.png")
    seen: list[Iterate] = []
    result = stylize(content, style, features, StylizeOptions(iterations=20), callback=seen.append)
    assert result.stopped == "diverged"
    assert result.iterations == 5  # five evaluations and updates; the sixth evaluation (of the 5th update) was NaN
    assert torch.isfinite(result.image).all() and 0.0 <= float(result.image.min()) <= float(result.image.max()) <= 1.0
    assert all(math.isfinite(v) for it in result.history for v in it.losses.values())
    best = min(seen, key=lambda it: it.losses["total"])
    assert result.losses == best.losses


def _strided(image: torch.Tensor, how: str) -> torch.Tensor:
    """The same ``(1, 3, H, W)`` values with other strides."""
    if how == "permuted":
        return image.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # an NHWC buffer
    if how == "channels_last":
        return image.contiguous(memory_format=torch.channels_last)
    if how == "transposed":
        return image.transpose(-1, -2).contiguous().transpose(-1, -2)
    return image[..., ::1, :]  # a plain view


@pytest.mark.parametrize("how", ["permuted", "channels_last", "transposed", "view"])
@pytest.mark.parametrize("init", ["content", "image"])
def test_any_strides_give_the_contiguous_input_s_pixels(features: VGGFeatures, tensor, how: str, init: str) -> None:
    content, style = tensor("tubingen_64x64.png"), tensor("starry_night_64x64.png")
    options = StylizeOptions(iterations=3, init=init, content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1"))
    start = style if init == "image" else None
    expected = stylize(content, style, features, options, init_image=start).image
    got = stylize(_strided(content, how), _strided(style, how), features, options,
                  init_image=None if start is None else _strided(start, how)).image
    assert how == "view" or not _strided(content, how).is_contiguous()
    assert torch.allclose(got, expected, atol=1e-5)

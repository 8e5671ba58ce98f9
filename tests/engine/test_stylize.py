"""The L-BFGS optimization: loss decrease, exact step count, determinism, callback, validation."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from nst.stylize import Iterate, StylizeOptions, initial_image, stylize
from nst.vgg import VGGFeatures


@pytest.fixture(scope="module")
def content(load_image) -> torch.Tensor:
    return load_image("tubingen_64x64.png")


@pytest.fixture(scope="module")
def style(load_image) -> torch.Tensor:
    return load_image("starry_night_64x64.png")


def test_total_loss_falls(content, style, features: VGGFeatures) -> None:
    seen: list[Iterate] = []
    result = stylize(content, style, features, StylizeOptions(iterations=10), callback=seen.append)
    first, last = seen[0].losses, result.losses
    assert last["total"] < first["total"]
    assert last["style"] < first["style"]
    assert result.history[-1].losses == result.losses


def test_runs_exactly_steps_where_default_tolerances_would_stop(content, style, features: VGGFeatures) -> None:
    # Starting at the content image with no style term, the content loss is exactly 0: torch's
    # default LBFGS tolerances would stop after the first evaluation. The engine must not.
    for options in (
        StylizeOptions(iterations=5, style_weight=0.0, init="content"),
        StylizeOptions(iterations=4, style_weight=0.0, tv_weight=0.0, init="content"),  # zero gradient
    ):
        result = stylize(content, style, features, options)
        assert result.iterations == options.iterations
        assert len(result.history) == options.iterations  # one entry per iteration
        assert [it.iteration for it in result.history] == list(range(1, options.iterations + 1))
        assert all(it.iterations == options.iterations for it in result.history)
    # Precondition showing the case is a real one: torch's defaults give up at once here.
    image = content.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([image], max_iter=4)
    calls = []

    def closure() -> torch.Tensor:
        calls.append(1)
        opt.zero_grad()
        loss = (image - content).square().mean()
        loss.backward()
        return loss

    opt.step(closure)
    assert len(calls) == 1


def test_same_seed_same_pixels_different_seed_different(content, style, features: VGGFeatures) -> None:
    options = StylizeOptions(iterations=3, init="noise", seed=7)
    a = stylize(content, style, features, options)
    b = stylize(content, style, features, options)
    c = stylize(content, style, features, replace(options, seed=8))
    assert torch.equal(a.image, b.image)
    assert a.losses == b.losses
    assert not torch.equal(a.image, c.image)


def test_initial_image() -> None:
    content = torch.rand(1, 3, 20, 30)
    start = initial_image(content, "content", 0)
    assert torch.equal(start, content) and start.data_ptr() != content.data_ptr()
    noise = initial_image(content, "noise", 3)
    assert noise.shape == content.shape and 0 <= noise.min() and noise.max() < 1
    assert torch.equal(noise, initial_image(content, "noise", 3))
    assert not torch.equal(noise, initial_image(content, "noise", 4))
    assert not torch.equal(noise, content)


def test_content_init_starts_at_zero_content_loss(content, style, features: VGGFeatures) -> None:
    seen: list[Iterate] = []
    stylize(content, style, features, StylizeOptions(iterations=1, init="content"), callback=seen.append)
    assert seen[0].iteration == 0 and seen[0].losses["content"] == 0.0
    seen.clear()
    stylize(content, style, features, StylizeOptions(iterations=1, init="noise"), callback=seen.append)
    assert seen[0].losses["content"] > 0.1


def test_callback_sees_every_iteration_in_order(content, style, features: VGGFeatures) -> None:
    seen: list[Iterate] = []
    result = stylize(content, style, features, StylizeOptions(iterations=4), callback=seen.append)
    assert [it.iteration for it in seen] == [0, 1, 2, 3, 4]
    assert all(set(it.losses) == {"content", "style", "tv", "total"} for it in seen)
    assert all(isinstance(v, float) for it in seen for v in it.losses.values())
    assert seen[1:] == result.history  # the history leaves out iteration 0, the initial image
    # total is the weighted sum of the terms.
    o = StylizeOptions()
    for it in seen:
        terms = it.losses
        expected = o.content_weight * terms["content"] + o.style_weight * terms["style"] + o.tv_weight * terms["tv"]
        assert terms["total"] == pytest.approx(expected, rel=1e-4)


def test_output_shape_and_range(load_image, style, features: VGGFeatures) -> None:
    content = load_image("chelsea_128x96.png")  # not the style image's size
    result = stylize(content, style, features, StylizeOptions(iterations=2, init="noise", style_weight=1e6))
    assert result.image.shape == (1, 3, 96, 128)
    assert result.image.min() >= 0.0 and result.image.max() <= 1.0
    assert not result.image.requires_grad
    assert not torch.equal(result.image, initial_image(content, "noise", 0).clamp(0, 1))


@pytest.mark.parametrize(
    "content_shape, style_shape",
    [((3, 64, 64), (1, 3, 64, 64)), ((2, 3, 64, 64), (1, 3, 64, 64)), ((1, 1, 64, 64), (1, 3, 64, 64)),
     ((1, 3, 64, 64), (1, 4, 64, 64)), ((1, 3, 64, 64), (64, 64))],
)
def test_wrong_shapes_are_refused(features: VGGFeatures, content_shape, style_shape) -> None:
    with pytest.raises(ValueError, match="must have shape"):
        stylize(torch.rand(content_shape), torch.rand(style_shape), features, StylizeOptions(iterations=1))


def test_too_small_images_are_refused(features: VGGFeatures) -> None:
    with pytest.raises(ValueError, match="at least 16 pixels"):
        stylize(torch.rand(1, 3, 8, 64), torch.rand(1, 3, 64, 64), features, StylizeOptions(iterations=1))
    with pytest.raises(ValueError, match="at least 16 pixels"):
        stylize(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 12, 64), features, StylizeOptions(iterations=1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"iterations": 0}, "iterations"),
        ({"iterations": -3}, "iterations"),
        ({"content_weight": -1.0}, "content_weight"),
        ({"style_weight": -1e-9}, "style_weight"),
        ({"tv_weight": -2.0}, "tv_weight"),
        ({"init": "random"}, "init"),
        ({"content_layers": ("relu9_9",)}, "relu9_9"),
        ({"style_layers": ("relu1_1", "fc6")}, "fc6"),
    ],
)
def test_options_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StylizeOptions(**kwargs)


def test_options_accept_boundaries() -> None:
    o = StylizeOptions(iterations=1, content_weight=0.0, style_weight=0.0, tv_weight=0.0, init="noise")
    assert (o.iterations, o.init) == (1, "noise")


def test_custom_layers_are_used(content, style, features: VGGFeatures) -> None:
    # A shallow style layer only: the result still has the content's size and the terms differ
    # from the default layers'.
    shallow = stylize(content, style, features, StylizeOptions(iterations=1, style_layers=("relu1_1",)))
    default = stylize(content, style, features, StylizeOptions(iterations=1))
    assert shallow.losses["style"] != default.losses["style"]


def test_final_losses_are_those_of_the_returned_image(load_image, features: VGGFeatures) -> None:
    content, style = load_image("chelsea_128x96.png", 64), load_image("the_scream_128x96.png", 64)
    result = stylize(content, style, features, StylizeOptions(iterations=8))
    # The raw iterate leaves [0, 1] here, so clamping changes the losses; the report must follow.
    assert result.history[-1].losses == result.losses
    seen: list[Iterate] = []
    stylize(result.image, style, features, StylizeOptions(iterations=1), callback=seen.append)
    assert result.losses["style"] == pytest.approx(seen[0].losses["style"], rel=1e-5)
    assert result.losses["tv"] == pytest.approx(seen[0].losses["tv"], rel=1e-5)

"""Stylization controls of the engine: style blending, colour control, style scale, inits,
pooling, layer choice, optimizers, coarse-to-fine scales, reconstruction modes, spatial masks.

Everything runs on 32-64 px images with the session's random VGG19 weights and mostly shallow
layers (``relu1_1``/``relu2_1``), so that the whole module takes seconds on a small CPU.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch
import torch.nn.functional as F
from engine.objective_helpers import Built, level_objective, record_objectives
from nst import color
from nst.losses import gram_matrix, guided_gram_matrix
from nst.masks import MAX_REGIONS, MaskError
from nst.objective import Objective
from nst.options import RECONSTRUCTION_TV_WEIGHT
from nst.plan import make_plan, pyramid_sides, reconstruction_sides, split_iterations
from nst.stylize import Iterate, StylizeOptions, initial_image, stylize
from nst.vgg import DEFAULT_STYLE_LAYERS, LAYER_INDEX, FeatureExtractor, VGGFeatures
from torch import nn

# The module, not the function `nst.stylize` that the package's __init__ re-exports under its name.

#: Shallow layers: cheap, and relu2_1 sits behind a pool, so pooling matters.
SHALLOW = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}



def opts(**kwargs) -> StylizeOptions:
    return StylizeOptions(**(SHALLOW | kwargs))


@pytest.fixture(scope="module")
def content(load_image) -> torch.Tensor:
    return load_image("tubingen_64x64.png", 32)  # (1, 3, 32, 32)


@pytest.fixture(scope="module")
def starry(load_image) -> torch.Tensor:
    return load_image("starry_night_64x64.png", 32)  # (1, 3, 32, 32)


@pytest.fixture(scope="module")
def scream(load_image) -> torch.Tensor:
    return load_image("the_scream_128x96.png", 32)  # (1, 3, 24, 32)


@pytest.fixture(scope="module")
def chelsea(load_image) -> torch.Tensor:
    return load_image("chelsea_128x96.png", 32)  # (1, 3, 24, 32)


def objective(features: VGGFeatures, options: StylizeOptions, content: torch.Tensor,
              styles: list[torch.Tensor]) -> Objective:
    """The engine's objective for one level whose styles are already at their level size."""
    return level_objective(features, options, content, styles)


@pytest.fixture
def recorded(monkeypatch) -> list[Built]:
    return record_objectives(monkeypatch)


# --- style blending ----------------------------------------------------------------------------

def test_blend_weights(content, starry, scream, features: VGGFeatures) -> None:
    o = opts(iterations=2)
    first = stylize(content, starry, features, o)
    second = stylize(content, scream, features, o)
    only_first = stylize(content, [starry, scream], features, opts(iterations=2, style_blend_weights=(1.0, 0.0)))
    assert torch.allclose(only_first.image, first.image, atol=1e-6, rtol=0)
    assert only_first.losses == pytest.approx(first.losses, rel=1e-5)
    half = stylize(content, [starry, scream], features, opts(iterations=2, style_blend_weights=(0.5, 0.5)))
    assert (half.image - first.image).abs().max() > 1e-3
    assert (half.image - second.image).abs().max() > 1e-3
    # None means equal weights; weights are normalized, so (2, 2) is (0.5, 0.5).
    for weights in (None, (2.0, 2.0)):
        equal = stylize(content, [starry, scream], features, opts(iterations=2, style_blend_weights=weights))
        assert torch.allclose(equal.image, half.image, atol=1e-6, rtol=0), weights


def test_blend_weights_must_match_the_styles(content, starry, features: VGGFeatures) -> None:
    with pytest.raises(ValueError, match="style_blend_weights"):
        stylize(content, [starry, starry], features, opts(iterations=1, style_blend_weights=(1.0, 1.0, 1.0)))
    for bad in ((-1.0, 2.0), (0.0, 0.0)):
        with pytest.raises(ValueError, match="style_blend_weights"):
            StylizeOptions(style_blend_weights=bad)


# --- colour control ----------------------------------------------------------------------------

def chroma_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of the I, Q (chroma) channels of YIQ."""
    return float((color.rgb_to_yiq(a)[:, 1:] - color.rgb_to_yiq(b)[:, 1:]).abs().mean())


def test_luminance_only_keeps_the_content_colours(chelsea, scream, features: VGGFeatures, recorded) -> None:
    # Adam: its bounded steps make 8 iterations change the image for sure on a 24x32 image, where
    # L-BFGS's second, unit-length step can overshoot and stall the run (see docs/api.md, optimizer).
    plain = stylize(chelsea, scream, features, opts(iterations=8, optimizer="adam"))
    seen: list[Iterate] = []
    lum = stylize(chelsea, scream, features, opts(iterations=8, optimizer="adam", color_control="luminance"),
                  callback=seen.append)
    # The transfer runs on grey images: the content's luminance, and the style's luminance
    # matched to the content's mean and deviation (Gatys et al. 2017, sec. 4.1)...
    target = recorded[-1]
    content_lum = color.luminance(chelsea)
    assert torch.allclose(target.objective.loss_terms.content["relu2_1"].target,
                          FeatureExtractor(features, ["relu2_1"])(content_lum)["relu2_1"], atol=1e-6)
    style_lum = color.match_luminance(color.luminance(scream), content_lum)
    assert torch.allclose(target.objective.loss_terms.style["relu1_1"].target,
                          gram_matrix(FeatureExtractor(features, ["relu1_1"])(style_lum)["relu1_1"]), rtol=1e-4)
    assert seen[0].losses["content"] < 1e-10  # ...from the content's luminance
    # Any start is made grey: a noise start is the noise's luminance.
    noisy: list[Iterate] = []
    stylize(chelsea, scream, features, opts(iterations=1, init="noise", color_control="luminance"), callback=noisy.append)
    grey_noise = color.luminance(initial_image(chelsea, "noise", 0))
    assert noisy[0].losses == pytest.approx(recorded[-1].objective.losses(grey_noise), rel=1e-5)
    # Precondition: without colour control the orange style changes the colours measurably.
    assert chroma_difference(plain.image, chelsea) > 0.005
    assert chroma_difference(lum.image, chelsea) < 0.2 * chroma_difference(plain.image, chelsea)
    assert chroma_difference(lum.image, chelsea) < 2e-3
    # ...while the luminance was stylized (it is not the content's).
    y = lambda x: color.rgb_to_yiq(x)[:, :1]  # noqa: E731
    assert (y(lum.image) - y(chelsea)).abs().mean() > 0.01


def test_original_colors_give_the_stylized_luma_the_content_chroma(chelsea, scream, features: VGGFeatures) -> None:
    # jcjohnson/neural-style's -original_colors 1: an ordinary RGB run, recombined in YUV afterwards.
    plain = stylize(chelsea, scream, features, opts(iterations=8, optimizer="adam"))
    kept = stylize(chelsea, scream, features, opts(iterations=8, optimizer="adam", color_control="original_colors"))
    assert kept.losses == plain.losses  # the optimization is the plain one...
    yuv_kept, yuv_plain, yuv_content = (color.rgb_to_yuv(x) for x in (kept.image, plain.image, chelsea))
    # ...recombined: pixels whose recombination fell inside the RGB cube (clamping moves the others).
    unclamped = color.yuv_to_rgb(torch.cat([yuv_plain[:, :1], yuv_content[:, 1:]], 1))
    inside = ((unclamped >= 0) & (unclamped <= 1)).all(1, keepdim=True)
    assert inside.float().mean() > 0.8
    assert (yuv_kept - yuv_content)[:, 1:].abs().masked_select(inside).max() < 1e-5  # the content's chroma
    assert (yuv_kept - yuv_plain)[:, :1].abs().masked_select(inside).max() < 1e-5  # the stylized luma
    assert chroma_difference(plain.image, chelsea) > 0.005  # precondition: the style changed the colours
    assert (yuv_kept[:, :1] - yuv_content[:, :1]).abs().mean() > 0.01  # and the luma is stylized


def test_histogram_matching_gives_the_content_statistics(chelsea, scream) -> None:
    stats = lambda x: (x.reshape(3, -1).double().mean(1), torch.cov(x.reshape(3, -1).double()))  # noqa: E731
    matched = color.match_color_histogram(scream, chelsea)
    assert matched.shape == scream.shape and matched.min() >= 0 and matched.max() <= 1
    (m_mean, m_cov), (c_mean, c_cov), (s_mean, _) = stats(matched), stats(chelsea), stats(scream)
    assert (s_mean - c_mean).abs().max() > 0.05  # precondition: the colours differed
    assert torch.allclose(m_mean, c_mean, atol=2e-3)
    assert torch.allclose(m_cov, c_cov, atol=2e-3)


def test_histogram_control_stylizes_with_the_recoloured_style(chelsea, scream, features: VGGFeatures) -> None:
    plain = stylize(chelsea, scream, features, opts(iterations=2))
    hist = stylize(chelsea, scream, features, opts(iterations=2, color_control="histogram"))
    assert (hist.image - plain.image).abs().max() > 1e-3
    # It is exactly the plain run on the style recoloured to the content's statistics.
    recoloured = stylize(chelsea, color.match_color_histogram(scream, chelsea), features, opts(iterations=2))
    assert torch.allclose(hist.image, recoloured.image, atol=1e-6, rtol=0)


# --- style scale -------------------------------------------------------------------------------

def test_style_scale_resizes_the_style_reaching_the_network(content, load_image, features: VGGFeatures,
                                                           recorded) -> None:
    starry64 = load_image("starry_night_64x64.png")  # 64x64, the output is 32 px
    scream128 = load_image("the_scream_128x96.png")  # 128x96
    results = {}
    for scale in (0.5, 1.0, 1.5):
        results[scale] = stylize(content, [starry64, scream128], features, opts(iterations=1, style_scale=scale))
    # Long side round(32 * scale), aspect ratio kept.
    assert [t.style_shapes for t in recorded] == [
        [(1, 3, 16, 16), (1, 3, 12, 16)],
        [(1, 3, 32, 32), (1, 3, 24, 32)],
        [(1, 3, 48, 48), (1, 3, 36, 48)],
    ]
    assert all(t.content_shape == (1, 3, 32, 32) for t in recorded)
    # The style targets (blended Gram matrices) and so the results differ.
    small, full = recorded[0].objective.loss_terms.style["relu1_1"].target, recorded[1].objective.loss_terms.style["relu1_1"].target
    assert not torch.allclose(small, full, rtol=1e-3)
    for scale in (0.5, 1.5):
        assert results[scale].losses["style"] != pytest.approx(results[1.0].losses["style"], rel=1e-3)
        assert not torch.allclose(results[scale].image, results[1.0].image, atol=1e-5, rtol=0)


# --- initialization ----------------------------------------------------------------------------

def test_initial_image_of_each_init(content, scream, chelsea) -> None:
    assert torch.equal(initial_image(content, "content", 0), content)
    expected_noise = torch.rand(content.shape, generator=torch.Generator().manual_seed(5))
    assert torch.equal(initial_image(content, "noise", 5), expected_noise)
    bicubic = lambda x: F.interpolate(x, size=(32, 32), mode="bicubic", antialias=True,  # noqa: E731
                                      align_corners=False).clamp(0, 1)
    style_start = initial_image(content, "style", 0, style=scream)  # 24x32 stretched to 32x32
    assert style_start.shape == content.shape and torch.allclose(style_start, bicubic(scream), atol=1e-6)
    image_start = initial_image(content, "image", 0, init_image=chelsea)
    assert image_start.shape == content.shape and torch.allclose(image_start, bicubic(chelsea), atol=1e-6)
    with pytest.raises(ValueError, match="init_image"):
        initial_image(content, "image", 0)


def test_each_init_starts_where_it_says(content, starry, chelsea, features: VGGFeatures) -> None:
    starts = {
        "content": content,
        "noise": torch.rand(content.shape, generator=torch.Generator().manual_seed(3)),
        "style": starry,  # the same size as the content: no resize
        "image": initial_image(content, "image", 0, init_image=chelsea),
    }
    first: dict[str, Mapping[str, float]] = {}
    for init, start in starts.items():
        o = opts(iterations=1, init=init, seed=3)
        seen: list[Iterate] = []
        stylize(content, starry, features, o, init_image=chelsea if init == "image" else None, callback=seen.append)
        assert seen[0].iteration == 0
        expected = objective(features, o, content, [starry]).losses(start)
        assert seen[0].losses == pytest.approx(expected, rel=1e-5, abs=1e-7), init
        first[init] = seen[0].losses
    assert first["content"]["content"] == 0.0
    assert all(first[i]["content"] > 0.05 for i in ("noise", "style", "image"))
    assert first["style"]["style"] < first["content"]["style"]  # starting at the style matches it best
    assert len({round(f["total"], 6) for f in first.values()}) == 4
    with pytest.raises(ValueError, match="init_image"):
        stylize(content, starry, features, opts(iterations=1, init="image"))


# --- pooling and layers ------------------------------------------------------------------------

def test_avg_pooling_swaps_every_max_pool(features: VGGFeatures) -> None:
    for layers in (["relu5_1"], ["pool5"], ["relu2_1"]):
        max_net = FeatureExtractor(features, layers, "max").net
        avg_net = FeatureExtractor(features, layers, "avg").net
        n_max = sum(isinstance(m, nn.MaxPool2d) for m in max_net)
        assert n_max > 0
        assert not any(isinstance(m, nn.MaxPool2d) for m in avg_net)
        assert sum(isinstance(m, nn.AvgPool2d) for m in avg_net) == n_max
        assert len(avg_net) == len(max_net)
        # The convolutions are the same modules, shared, not copies.
        assert all(a is m for a, m in zip(avg_net, max_net) if isinstance(m, nn.Conv2d))
    assert sum(isinstance(m, nn.AvgPool2d) for m in FeatureExtractor(features, ["pool5"], "avg").net) == 5


def test_avg_pooling_changes_features_and_losses(content, starry, features: VGGFeatures, recorded) -> None:
    image = content
    by_max = FeatureExtractor(features, ["relu1_1", "relu2_1"], "max")(image)
    by_avg = FeatureExtractor(features, ["relu1_1", "relu2_1"], "avg")(image)
    assert torch.equal(by_max["relu1_1"], by_avg["relu1_1"])  # before the first pool
    assert not torch.allclose(by_max["relu2_1"], by_avg["relu2_1"], rtol=1e-3)
    runs = {}
    for pooling in ("max", "avg"):
        seen: list[Iterate] = []
        stylize(content, starry, features, opts(iterations=1, init="noise", pooling=pooling), callback=seen.append)
        runs[pooling] = seen[0].losses
    assert runs["max"]["content"] != pytest.approx(runs["avg"]["content"], rel=1e-3)
    assert runs["max"]["style"] != pytest.approx(runs["avg"]["style"], rel=1e-3)
    assert [sum(isinstance(m, nn.AvgPool2d) for m in t.objective.extractor.net) for t in recorded] == [0, 1]


def by_hand(features: VGGFeatures, layer: str, image: torch.Tensor, content: torch.Tensor,
            style: torch.Tensor) -> tuple[float, float]:
    """The normalized content and style terms of ``image`` at one layer, computed from scratch."""
    ex = FeatureExtractor(features, [layer])
    f, fc, fs = ex(image)[layer], ex(content)[layer], ex(style)[layer]
    content_term = F.mse_loss(f, fc) / (fc.square().mean() + 1e-8)
    style_term = F.mse_loss(gram_matrix(f), gram_matrix(fs)) / (gram_matrix(fs).square().mean() + 1e-8)
    return float(content_term), float(style_term)


def test_custom_layers_are_the_ones_used(content, starry, features: VGGFeatures, recorded) -> None:
    seen = {}
    for name, kwargs in [("default", {}), ("custom", {"content_layers": ("relu2_2",), "style_layers": ("relu1_1",)})]:
        calls: list[Iterate] = []
        stylize(content, starry, features, opts(iterations=1, init="noise", **kwargs), callback=calls.append)
        seen[name] = calls[0].losses
    noise = initial_image(content, "noise", 0)
    content_22, _ = by_hand(features, "relu2_2", noise, content, starry)
    content_21, style_21 = by_hand(features, "relu2_1", noise, content, starry)
    _, style_11 = by_hand(features, "relu1_1", noise, content, starry)
    assert seen["custom"]["content"] == pytest.approx(content_22, rel=1e-5)
    assert seen["default"]["content"] == pytest.approx(content_21, rel=1e-5)
    assert seen["custom"]["style"] == pytest.approx(style_11, rel=1e-5)
    assert seen["default"]["style"] == pytest.approx((style_11 + style_21) / 2, rel=1e-5)
    default, custom = recorded
    assert (set(default.objective.loss_terms.content), set(default.objective.loss_terms.style)) == ({"relu2_1"}, {"relu1_1", "relu2_1"})
    assert (set(custom.objective.loss_terms.content), set(custom.objective.loss_terms.style)) == ({"relu2_2"}, {"relu1_1"})
    # The network is cut after the deepest layer in use.
    assert len(default.objective.extractor.net) == LAYER_INDEX["relu2_1"] + 1
    assert len(custom.objective.extractor.net) == LAYER_INDEX["relu2_2"] + 1
    assert content_22 != pytest.approx(content_21, rel=1e-4)
    assert style_11 != pytest.approx(style_21, rel=1e-3)


def test_style_layer_weights(content, starry, features: VGGFeatures) -> None:
    # 16 px, the least the five default style layers take: relu5_1 is costly.
    small_content, small_style = content[..., ::2, ::2], starry[..., ::2, ::2]
    start = torch.rand(small_content.shape, generator=torch.Generator().manual_seed(0))
    style_term = lambda **kw: objective(  # noqa: E731
        features, StylizeOptions(**kw), small_content, [small_style]).losses(start)["style"]
    default = style_term()
    first_only = style_term(style_layer_weights=(1.0, 0.0, 0.0, 0.0, 0.0))
    alone = style_term(style_layers=("relu1_1",))
    assert first_only == pytest.approx(alone, rel=1e-5)
    assert first_only != pytest.approx(default, rel=1e-3)
    # Unnormalized weights are normalized: (2, 2, 2, 2, 2) is the default.
    assert style_term(style_layer_weights=(2.0,) * 5) == pytest.approx(default, rel=1e-5)
    assert len(DEFAULT_STYLE_LAYERS) == 5
    # And through stylize.
    runs = []
    for weights in ((1.0, 0.0), None):
        seen: list[Iterate] = []
        stylize(content, starry, features, opts(iterations=1, init="noise", style_layer_weights=weights), callback=seen.append)
        runs.append(seen[0].losses["style"])
    assert runs[0] != pytest.approx(runs[1], rel=1e-3)
    with pytest.raises(ValueError, match="style_layer_weights"):
        StylizeOptions(style_layer_weights=(1.0, 1.0))


# --- optimizers --------------------------------------------------------------------------------

def test_adam_and_lbfgs_both_reduce_the_loss(content, starry, features: VGGFeatures) -> None:
    images = {}
    for optimizer in ("lbfgs", "adam"):
        seen: list[Iterate] = []
        o = opts(iterations=5, init="noise", optimizer=optimizer, learning_rate=0.05)
        result = stylize(content, starry, features, o, callback=seen.append)
        assert seen[0].iteration == 0 and seen[-1].iteration == 5
        assert result.losses["total"] < 0.9 * seen[0].losses["total"], optimizer
        assert len(result.history) == 5
        images[optimizer] = result.image
    assert (images["adam"] - images["lbfgs"]).abs().max() > 1e-3


@pytest.mark.parametrize("learning_rate", [0.05, 0.01])
def test_adam_steps_by_the_learning_rate(content, starry, features: VGGFeatures, learning_rate: float) -> None:
    # Adam's first update moves every pixel with a gradient by the learning rate exactly
    # (m / sqrt(v) is the sign of the gradient); L-BFGS's first step is the gradient scaled by
    # min(1, 1 / |g|_1), nothing like it.
    result = stylize(content, starry, features, opts(iterations=1, init="noise", optimizer="adam",
                                                     learning_rate=learning_rate))
    step = (result.image - initial_image(content, "noise", 0)).abs()
    assert step.max() <= learning_rate + 1e-5
    assert (step - learning_rate).abs().lt(1e-4).float().mean() > 0.5


# --- coarse-to-fine ----------------------------------------------------------------------------

def test_pyramid_sides_and_split_steps() -> None:
    assert pyramid_sides(512, 3) == (128, 256, 512)
    assert pyramid_sides(64, 2) == (32, 64)
    assert pyramid_sides(64, 1) == (64,)
    assert pyramid_sides(100, 3) == (25, 50, 100)
    assert split_iterations(4, 2) == [2, 2]
    assert split_iterations(10, 3) == [3, 3, 4]
    assert split_iterations(7, 1) == [7]
    assert split_iterations(3, 3) == [1, 1, 1]
    for steps in range(3, 20):
        assert sum(split_iterations(steps, 3)) == steps and min(split_iterations(steps, 3)) >= 1


@pytest.mark.parametrize("name, size", [("tubingen_64x64.png", (64, 64)), ("chelsea_128x96.png", (48, 64))])
def test_two_scales(load_image, starry, features: VGGFeatures, recorded, name, size) -> None:
    content = load_image(name, 64)
    h, w = size
    seen: list[Iterate] = []
    result = stylize(content, starry, features, opts(scales=(32, 64), iterations=4), callback=seen.append)
    assert result.sizes == [(h // 2, w // 2), (h, w)]
    assert [t.content_shape[-2:] for t in recorded] == [(h // 2, w // 2), (h, w)]
    assert result.image.shape == (1, 3, h, w)
    assert result.iterations == 4 and len(result.history) == 4
    assert [it.iteration for it in result.history] == [1, 2, 3, 4]
    assert [(it.level, it.levels) for it in result.history] == [(0, 2), (0, 2), (1, 2), (1, 2)]
    assert [it.iteration for it in seen] == [0, 1, 2, 3, 4]
    assert result.history[-1].losses == result.losses


def test_scales_are_checked(content, starry, features: VGGFeatures) -> None:
    with pytest.raises(ValueError, match="last scale"):
        stylize(content, starry, features, opts(scales=(16, 24), iterations=2))  # the output's long side is 32
    with pytest.raises(ValueError, match="number of scales"):
        StylizeOptions(scales=(16, 32), iterations=1)
    for bad in ((32, 16), (16, 16), (0, 32)):
        with pytest.raises(ValueError, match="scales"):
            StylizeOptions(scales=bad, iterations=4)


# --- reconstruction modes ----------------------------------------------------------------------

@pytest.mark.parametrize("mode, term", [("reconstruct_content", "content"), ("reconstruct_style", "style")])
def test_reconstruction(content, starry, features: VGGFeatures, mode: str, term: str) -> None:
    o = opts(iterations=5, mode=mode, seed=2)
    effective = o.effective()
    weight = 1.0 if term == "content" else 10.0
    assert effective.init == "noise" and effective.tv_weight == weight * RECONSTRUCTION_TV_WEIGHT
    assert (effective.content_weight, effective.style_weight) == ((weight, 0.0) if term == "content" else (0.0, weight))
    plan = make_plan(tuple(content.shape[-2:]), [tuple(starry.shape[-2:])], o)
    # A content reconstruction runs coarse to fine from 32 px; a style reconstruction at one level.
    sides = reconstruction_sides(tuple(content.shape[-2:]), [], 1.0, 1, 5) if term == "content" else (max(content.shape),)
    assert [level.side for level in plan.levels] == list(sides)
    seen: list[Iterate] = []
    result = stylize(content, starry, features, o, callback=seen.append)
    # Iteration 0 is the seeded noise at the first level's size (init="content" is overridden).
    first = plan.levels[0]
    small_content, small_starry = F.interpolate(content, first.size), F.interpolate(starry, first.style_sizes[0])
    noise = initial_image(small_content, "noise", 2)
    expected = objective(features, o, small_content, [small_starry]).losses(noise)
    assert seen[0].losses == pytest.approx(expected, rel=1e-5)
    assert seen[0].losses[term] > 0.05
    for it in seen:
        assert it.losses["total"] == pytest.approx(weight * it.losses[term] + effective.tv_weight * it.losses["tv"], rel=1e-5)
    assert result.losses[term] < 0.9 * seen[0].losses[term]


def test_a_content_reconstruction_s_pyramid_halves_down_to_32_px_or_the_layers_need() -> None:
    assert reconstruction_sides((192, 256), [], 1.0, 16, 300) == (32, 64, 128, 256)
    assert reconstruction_sides((192, 256), [], 1.0, 16, 2) == (128, 256)  # a level per iteration at most
    assert reconstruction_sides((64, 256), [], 1.0, 16, 300) == (64, 128, 256)  # 16x64 would be too small
    assert reconstruction_sides((192, 256), [(100, 30)], 1.0, 16, 300) == (64, 128, 256)  # so would the style
    assert reconstruction_sides((20, 20), [], 1.0, 16, 300) == (20,)


# --- spatial control (masks) -------------------------------------------------------------------

RED = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
BLUE = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)


def flat(rgb: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return rgb.expand(1, 3, h, w).contiguous()


def halves_mask(h: int, w: int) -> torch.Tensor:
    """Left half red, right half blue."""
    return torch.cat([flat(RED, h, w // 2), flat(BLUE, h, w - w // 2)], dim=3)


def test_guided_gram_matrix() -> None:
    feats = torch.rand(1, 8, 6, 10)
    ones = torch.ones(1, 1, 6, 10)
    assert torch.allclose(guided_gram_matrix(feats, ones), gram_matrix(feats), atol=1e-6)
    left = torch.zeros(1, 1, 6, 10)
    left[..., :4] = 1
    assert torch.allclose(guided_gram_matrix(feats, left), gram_matrix(feats[..., :4]), atol=1e-6)
    both = guided_gram_matrix(feats, torch.cat([left, 1 - left]))
    assert both.shape == (2, 8, 8)
    assert torch.allclose(both[1], gram_matrix(feats[..., 4:])[0], atol=1e-6)


def test_masks_send_each_style_to_its_region(content, starry, scream, features: VGGFeatures) -> None:
    mean_of = lambda x: x.mean(dim=(0, 2, 3))  # noqa: E731
    dist = lambda a, b: float((a - b).norm())  # noqa: E731
    s1, s2 = mean_of(starry), mean_of(scream)
    assert dist(s1, s2) > 0.1  # precondition: the styles' colours differ
    mask = halves_mask(32, 32)
    halves = {}
    for name, (m1, m2) in {"straight": (RED, BLUE), "swapped": (BLUE, RED)}.items():
        result = stylize(content, [starry, scream], features, opts(iterations=6), content_mask=mask,
                         style_masks=[flat(m1, 32, 32), flat(m2, 24, 32)])
        assert result.image.shape == content.shape and torch.isfinite(result.image).all()
        halves[name] = (mean_of(result.image[..., :16]), mean_of(result.image[..., 16:]))
    left, right = halves["straight"]
    # Starry night paints the left (red) half, the scream the right (blue) half...
    assert dist(left, s1) < dist(right, s1)
    assert dist(right, s2) < dist(left, s2)
    # ...and swapping the style masks swaps where each style goes.
    swapped_left, swapped_right = halves["swapped"]
    assert dist(left, s1) < dist(swapped_left, s1)
    assert dist(right, s2) < dist(swapped_right, s2)
    assert dist(swapped_right, s1) < dist(right, s1)


def test_mask_errors(content, starry, scream, features: VGGFeatures) -> None:
    o = opts(iterations=1)
    noisy = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(MaskError, match=f"at most {MAX_REGIONS}"):
        stylize(content, [starry, scream], features, o, content_mask=noisy,
                style_masks=[flat(RED, 32, 32), flat(BLUE, 24, 32)])
    # Blue is in the content mask but in no style mask.
    with pytest.raises(MaskError, match=r"\(0, 0, 255\)"):
        stylize(content, [starry, scream], features, o, content_mask=halves_mask(32, 32),
                style_masks=[flat(RED, 32, 32), flat(RED, 24, 32)])
    # Blue is only in the mask of a style whose blend weight is 0: no style paints it.
    with pytest.raises(MaskError, match=r"\(0, 0, 255\)"):
        stylize(content, [starry, scream], features, opts(iterations=1, style_blend_weights=(1.0, 0.0)),
                content_mask=halves_mask(32, 32), style_masks=[flat(RED, 32, 32), flat(BLUE, 24, 32)])
    # Masks must come together, one per style.
    with pytest.raises(MaskError):
        stylize(content, [starry, scream], features, o, content_mask=halves_mask(32, 32), style_masks=[flat(RED, 32, 32)])
    with pytest.raises(MaskError):
        stylize(content, starry, features, o, content_mask=halves_mask(32, 32))
    assert issubclass(MaskError, ValueError)


def test_sixteen_colours_are_accepted(content, starry, features: VGGFeatures) -> None:
    # 16 vertical stripes of distinct colours in the content mask, all present in the style mask.
    colours = torch.stack([torch.tensor([i * 16, 255 - i * 16, (i * 64) % 256]) for i in range(16)]).float() / 255
    mask = colours.T.reshape(1, 3, 1, 16).repeat_interleave(2, dim=3).expand(1, 3, 32, 32).contiguous()
    result = stylize(content, starry, features, opts(iterations=1), content_mask=mask, style_masks=[mask])
    assert torch.isfinite(result.image).all()
    assert result.losses["style"] > 0

"""The Wasserstein-2 style loss (``style_loss="w2"``, :mod:`nst.wasserstein`): the closed form it
computes, its gradient, and its tiled loss and gradient equal to the whole image's (with masks
and a blend of two styles), on seeded random VGG19 weights."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch
from engine.objective_helpers import level_objective
from engine.test_tiled import guided, rand, rel, square_grid
from nst.losses import gram_matrix
from nst.objective import Tiled
from nst.options import StylizeOptions
from nst.records import Iterate, named_terms
from nst.stylize import stylize
from nst.vgg import VGGFeatures
from nst.wasserstein import RIDGE, W2StyleLoss, with_ones


def sqrtm(m: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a positive definite float64 matrix (the test's own)."""
    values, vectors = torch.linalg.eigh(m)
    return vectors @ torch.diag(values.sqrt()) @ vectors.T


def test_the_loss_is_the_closed_form_w2_between_the_fitted_gaussians() -> None:
    gen = torch.Generator().manual_seed(0)
    style = torch.randn(1, 4, 9, 11, generator=gen) * 2 + 1
    current = torch.randn(1, 4, 7, 8, generator=gen, dtype=torch.float64)
    loss = W2StyleLoss(gram_matrix(with_ones(style)))
    x, t = current.reshape(4, -1), style.double().reshape(4, -1)
    mu, mu_t = x.mean(1), t.mean(1)
    cov, cov_t = torch.cov(x, correction=0), torch.cov(t, correction=0)
    ridge = RIDGE * torch.diagonal(cov_t).mean()
    cov, cov_t = cov + ridge * torch.eye(4, dtype=torch.float64), cov_t + ridge * torch.eye(4, dtype=torch.float64)
    root_t = sqrtm(cov_t)
    cross = sqrtm(root_t @ cov @ root_t)
    w2 = (mu - mu_t).square().sum() + torch.trace(cov) + torch.trace(cov_t) - 2 * torch.trace(cross)
    normalizer = torch.trace(cov_t) + mu_t.square().sum()
    assert float(loss(current.float())) == pytest.approx(float(w2 / normalizer), rel=1e-4)


def test_the_loss_is_zero_at_the_style_and_about_one_for_zero_features() -> None:
    style = torch.rand(1, 8, 12, 12, generator=torch.Generator().manual_seed(1))
    loss = W2StyleLoss(gram_matrix(with_ones(style)))
    assert abs(float(loss(style))) < 1e-4
    assert float(loss(torch.zeros(1, 8, 5, 5))) == pytest.approx(1.0, abs=0.05)  # the ridge's share aside


@pytest.mark.parametrize("masked", [False, True], ids=["whole grid", "two regions"])
def test_the_written_gradient_equals_autograd_s(masked: bool) -> None:
    gen = torch.Generator().manual_seed(2)
    style = torch.rand(2 if masked else 1, 6, 7, 7, generator=gen)
    target = gram_matrix(with_ones(style))  # (R, 7, 7): one per region
    masks = None
    if masked:
        masks = torch.zeros(2, 1, 6, 5)
        masks[0, :, :3], masks[1, :, 3:] = 1.0, 1.0
    loss = W2StyleLoss(target, masks)
    features = torch.rand(1, 6, 6, 5, generator=gen, requires_grad=True)
    loss(features).backward()
    whole = (slice(None), slice(None))
    stats = loss.partial_statistics(features.detach(), whole, (6, 5)).requires_grad_(True)
    (d_stats,) = torch.autograd.grad(loss.of_statistics(stats), stats)
    written = loss.partial_grad(features.detach(), whole, (6, 5), d_stats)
    assert features.grad is not None and rel(written, features.grad) < 1e-5


CASES: dict[str, tuple[dict[str, Any], int, bool]] = {
    "one style": ({}, 1, False),
    "two styles, blended, guided by masks": ({"style_blend_weights": (0.3, 0.7)}, 2, True),
}


@pytest.mark.parametrize("case", CASES)
def test_tiled_loss_and_gradient_equal_the_whole_image_s(features: VGGFeatures, case: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules["nst.objective"], "tile_grid", square_grid)
    changes, n_styles, masked = CASES[case]
    opts = StylizeOptions(**changes, style_loss="w2", tv_weight=1.0).effective()
    content = rand(1, 3, 100, 88, seed=1)
    styles = [rand(1, 3, 80 + 8 * i, 72, seed=2 + i) for i in range(n_styles)]
    regions = guided(features, opts, content, styles) if masked else (None, None)
    whole = level_objective(features, opts, content, styles, None, *regions)
    tiled = level_objective(features, opts, content, styles, None, *regions, tile=48, kept_tails=2)
    assert isinstance(tiled, Tiled) and len(tiled.tiles) >= 4
    results = []
    for objective in (whole, tiled):
        image = rand(1, 3, 100, 88, seed=9).requires_grad_(True)
        losses = named_terms(objective.evaluate(image).tolist())
        assert image.grad is not None
        results.append((losses, image.grad.clone()))
    (w_losses, w_grad), (t_losses, t_grad) = results
    assert w_losses["style"] > 0
    for term in ("content", "style", "tv", "total"):
        assert abs(t_losses[term] - w_losses[term]) <= 1e-4 * abs(w_losses[term]) + 1e-9, term
    assert rel(t_grad, w_grad) < 1e-4


#: Measured: tubingen_128x96 in the style of starry_night_128x96, 100 iterations, style_loss "w2"
#: at the default weights: the W2 style term falls from 0.383 (the content image's) to 0.041, a
#: fraction STYLE_FALL_W2 of it, and the content term ends at CONTENT_W2 (Gram: 1/27 and 0.357).
STYLE_FALL_W2 = 0.107
CONTENT_W2 = 0.526


def test_a_w2_stylization_takes_the_style_and_keeps_the_content(hed_features: VGGFeatures, tensor) -> None:
    content, style = tensor("tubingen_128x96.png"), tensor("starry_night_128x96.png")
    seen: list[Iterate] = []
    result = stylize(content, style, hed_features, StylizeOptions(iterations=100, style_loss="w2"), callback=seen.append)
    start = seen[0].losses
    assert start["content"] == 0.0 and start["style"] > 0.1  # the content image, far from the style
    assert result.losses["style"] <= 1.5 * STYLE_FALL_W2 * start["style"], (start, result.losses)
    assert result.losses["content"] <= CONTENT_W2 + 0.1, result.losses
    assert torch.isfinite(result.image).all()

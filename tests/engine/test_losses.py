"""Gram matrix and the normalized content, style and total-variation losses."""

from __future__ import annotations

import pytest
import torch
from nst.losses import ContentLoss, StyleLoss, gram_matrix, tv_loss


def test_gram_matrix_shape_and_symmetry() -> None:
    feats = torch.randn(2, 5, 4, 3, generator=torch.Generator().manual_seed(0))
    g = gram_matrix(feats)
    assert g.shape == (2, 5, 5)
    torch.testing.assert_close(g, g.transpose(1, 2))


def test_gram_matrix_matches_hand_computation() -> None:
    # Channel 0 = [[1, 2], [3, 4]], channel 1 = [[0, 1], [-1, 2]]; H * W = 4.
    feats = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [-1.0, 2.0]]]])
    expected = torch.tensor([[[(1 + 4 + 9 + 16) / 4, (0 + 2 - 3 + 8) / 4], [(0 + 2 - 3 + 8) / 4, (0 + 1 + 1 + 4) / 4]]])
    torch.testing.assert_close(gram_matrix(feats), expected)


def test_gram_matrix_is_per_sample_and_equals_f_ft_over_hw() -> None:
    feats = torch.randn(3, 4, 6, 5, generator=torch.Generator().manual_seed(1))
    g = gram_matrix(feats)
    for b in range(3):
        flat = feats[b].reshape(4, 30)
        torch.testing.assert_close(g[b], flat @ flat.T / 30)


def test_gram_matrix_does_not_grow_with_image_size() -> None:
    feats = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    tiled = feats.repeat(1, 1, 2, 3)  # same statistics, 6x the positions
    torch.testing.assert_close(gram_matrix(tiled), gram_matrix(feats))


@pytest.fixture
def target() -> torch.Tensor:
    return torch.randn(1, 8, 5, 6, generator=torch.Generator().manual_seed(3))


def test_content_loss_zero_at_target_positive_elsewhere(target: torch.Tensor) -> None:
    loss = ContentLoss(target)
    assert loss(target.clone()).item() == 0.0
    assert loss(target + 0.1).item() > 0.0


def test_content_loss_is_one_for_zero_features_at_any_scale(target: torch.Tensor) -> None:
    assert ContentLoss(target)(torch.zeros_like(target)).item() == pytest.approx(1.0, rel=1e-6)
    assert ContentLoss(100 * target)(torch.zeros_like(target)).item() == pytest.approx(1.0, rel=1e-6)
    # Half-way to the target is a quarter of the loss (squared error).
    assert ContentLoss(target)(target / 2).item() == pytest.approx(0.25, rel=1e-5)


def test_content_loss_target_is_detached(target: torch.Tensor) -> None:
    t = target.clone().requires_grad_(True)
    loss = ContentLoss(t)
    x = torch.zeros_like(target, requires_grad=True)
    loss(x).backward()
    assert t.grad is None
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_style_loss_zero_at_target_positive_elsewhere(target: torch.Tensor) -> None:
    loss = StyleLoss(gram_matrix(target))
    assert loss(target.clone()).item() == 0.0
    assert loss(target * 1.1).item() > 0.0
    other = torch.randn(target.shape, generator=torch.Generator().manual_seed(4))
    assert loss(other).item() > 0.0


def test_style_loss_normalization_and_size_independence(target: torch.Tensor) -> None:
    loss = StyleLoss(gram_matrix(target))
    assert loss(torch.zeros_like(target)).item() == pytest.approx(1.0, rel=1e-6)
    # Features of another spatial size with the same statistics match the style exactly.
    assert loss(target.repeat(1, 1, 3, 2)).item() == pytest.approx(0.0, abs=1e-10)


def test_tv_loss_zero_for_constant_image() -> None:
    assert tv_loss(torch.full((1, 3, 7, 9), 0.3)).item() == 0.0


def test_tv_loss_hand_computed() -> None:
    # Vertical stripes 0, 1, 0, 1: every horizontal difference is +-1, no vertical ones.
    stripes = torch.tensor([0.0, 1.0, 0.0, 1.0]).repeat(1, 3, 4, 1)
    assert tv_loss(stripes).item() == pytest.approx(1.0)
    # Transposed: the same, from the vertical term.
    assert tv_loss(stripes.transpose(2, 3)).item() == pytest.approx(1.0)
    # A single step in one row of a 1x1x2x2 image: dx = [1, 0] -> 0.5, dy = [0, -1] -> 0.5.
    step = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])
    assert tv_loss(step).item() == pytest.approx(1.0)


def test_tv_loss_does_not_grow_with_image_size() -> None:
    gen = torch.Generator().manual_seed(5)
    small = torch.rand(1, 3, 8, 8, generator=gen)
    big = torch.rand(1, 3, 64, 64, generator=gen)
    assert tv_loss(big).item() == pytest.approx(tv_loss(small).item(), rel=0.3)


def test_style_loss_gradient_matches_autograd_through_the_gram_matrix() -> None:
    """StyleLoss's hand-written backward pass equals autograd's through bmm + mse_loss."""
    torch.manual_seed(0)
    feats = torch.randn(1, 8, 5, 7, dtype=torch.double, requires_grad=True)
    target = gram_matrix(torch.randn(1, 8, 6, 6, dtype=torch.double))
    loss = StyleLoss(target)
    reference = torch.nn.functional.mse_loss(gram_matrix(feats), target) * loss.scale
    (ours,) = torch.autograd.grad(loss(feats), feats)
    (expected,) = torch.autograd.grad(reference, feats)
    assert torch.allclose(loss(feats), reference, rtol=1e-12)
    assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-14)
    assert torch.autograd.gradcheck(loss, (feats,))


def test_gram_and_style_loss_are_the_same_for_channels_last_features() -> None:
    """FeatureExtractor returns NHWC features: the Gram matrix, the loss and its gradient (in the
    features' own layout) equal those of the same features stored NCHW."""
    torch.manual_seed(0)
    nchw = torch.randn(1, 16, 6, 5, dtype=torch.double)
    nhwc = nchw.contiguous(memory_format=torch.channels_last)
    assert not nhwc.is_contiguous()
    assert torch.allclose(gram_matrix(nhwc), gram_matrix(nchw), rtol=1e-12)
    loss = StyleLoss(gram_matrix(torch.randn(1, 16, 4, 4, dtype=torch.double)))
    grads = []
    for feats in (nchw.clone().requires_grad_(True), nhwc.clone().requires_grad_(True)):
        value = loss(feats)
        (grad,) = torch.autograd.grad(value, feats)
        grads.append((value, grad))
    assert torch.allclose(grads[0][0], grads[1][0], rtol=1e-12)
    assert torch.allclose(grads[0][1], grads[1][1], rtol=1e-10)
    assert grads[1][1].is_contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(loss, (nhwc.clone().requires_grad_(True),))

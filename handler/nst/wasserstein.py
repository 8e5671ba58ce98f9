"""The Wasserstein-2 style loss: Gaussians fitted to the style layers' features, compared.

Each layer's features are summarized by their mean ``mu`` and covariance ``S`` over the grid's
positions; two such Gaussians are compared by the squared Wasserstein-2 distance between them
(the Fréchet distance of Dowson & Landau 1982, as in Risser et al. 2017, "Stable and
Controllable Neural Texture Synthesis and Style Transfer Using Histogram Losses", whose
analysis of the Gram loss's instabilities this answers; crowsonkb/style-transfer-pytorch's
default style loss)::

    W2^2 = |mu - mu_t|^2 + tr(S) + tr(S_t) - 2 tr((S_t^1/2 S S_t^1/2)^1/2)

divided by the channels ``C`` and normalized like every term of :mod:`nst.losses`: it is 1.0
when the features are all zero (the style's mean second moment) and 0.0 at the target.

The statistics are the **augmented second moment**: the Gram matrix (:func:`nst.losses.gram_matrix`)
of the features with a channel of ones appended, ``(C+1, C+1)``, a mean over positions. It holds
the second raw moment (``[:C, :C]``), the mean (``[:C, C]``) and the weight (``[C, C]``), so it
is exact under tiling (a sum of the tiles' shares, as Gram matrices are), region-guided by the
same masks (Gatys et al. 2017, sec. 3; the ones channel becomes the mask, so each region gets
its weighted mean and covariance), and blended across styles as a weighted sum, which blends
the means and second moments linearly (as crowsonkb's does). Only the trace of the matrix
square root is needed, so its gradient is ``M^-1/2 / 2`` from one symmetric eigendecomposition
(:class:`_TraceSqrt`), computed in float64.
"""

from __future__ import annotations

import torch
from torch import nn

from .losses import Owned, Size, region_weights

#: Added to each covariance's diagonal, relative to the style's mean variance: keeps the square
#: roots' gradients finite where a covariance is singular (few positions, dead channels).
RIDGE = 1e-3
#: Eigenvalues below this fraction of the largest count as this fraction in the gradient.
EIGEN_FLOOR = 1e-10


def with_ones(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, ...)`` features in float32 with a channel of ones appended: ``(B, C + 1, ...)``,
    in the same memory format; their Gram matrix is the augmented second moment (see the module)."""
    features = features.float()
    return torch.cat([features, torch.ones_like(features[:, :1])], dim=1)


def moments(statistics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean ``(R, C)`` and covariance ``(R, C, C)`` (float64) held by ``(R, C+1, C+1)``
    augmented second moments (each divided by its weight, ``[C, C]``)."""
    s = statistics.double()
    c = s.shape[-1] - 1
    weight = s[:, c, c].clamp_min(1e-12)  # (R,)
    mean = s[:, :c, c] / weight[:, None]
    second = s[:, :c, :c] / weight[:, None, None]
    return mean, second - mean[:, :, None] * mean[:, None, :]


class _TraceSqrt(torch.autograd.Function):
    """``tr(M^1/2)`` of symmetric positive semi-definite ``(R, C, C)`` matrices, summed, with
    the gradient ``M^-1/2 / 2`` (eigenvalues floored at :data:`EIGEN_FLOOR` of the largest)."""

    @staticmethod
    def forward(ctx, m: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        values, vectors = torch.linalg.eigh((m + m.transpose(-2, -1)) / 2)
        floor = values.amax(-1, keepdim=True).clamp_min(0) * EIGEN_FLOOR
        roots = values.clamp_min(0).sqrt()
        inverse = 0.5 / torch.maximum(values, floor).clamp_min(1e-300).sqrt()
        ctx.save_for_backward((vectors * inverse[:, None, :]) @ vectors.transpose(-2, -1))
        return roots.sum(-1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (half_inverse_root,) = ctx.saved_tensors
        return grad_output[:, None, None] * half_inverse_root


def _symmetric_sqrt(m: torch.Tensor) -> torch.Tensor:
    """``M^1/2`` of symmetric positive semi-definite ``(R, C, C)`` matrices (no gradient)."""
    values, vectors = torch.linalg.eigh(m)
    return (vectors * values.clamp_min(0).sqrt()[:, None, :]) @ vectors.transpose(-2, -1)


class W2StyleLoss(nn.Module):
    """Normalized squared Wasserstein-2 distance between the Gaussians of the current features
    and of the style at one layer (see the module); an :class:`nst.losses.StyleTerm`.

    The current image's statistics are taken of the features minus the style's mean (a constant
    per region, so their shares still add up over tiles): a covariance is then a difference of
    numbers of its own size, not of two large second moments, which float32 sums would blur.

    Args:
        target: ``(R, C+1, C+1)`` augmented second moments of the style (one per region; a
            blend of several styles' is their weighted sum).
        masks: ``(R, 1, H, W)`` the output's regions at this layer's resolution (spatial
            control), or ``None`` for one region, the whole grid (``R == 1``).
    """

    # Buffers (declared here so that type checkers see tensors, not nn.Module's __getattr__).
    shift: torch.Tensor  # (R, C, 1) float32, the style's mean
    cov: torch.Tensor  # (R, C, C) float64, ridge added
    cov_root: torch.Tensor  # (R, C, C) float64
    trace: torch.Tensor  # (R,) float64, tr(cov)
    scale: torch.Tensor  # (R,) float64, 1 / (|mu|^2 + tr cov + eps)
    ridge: torch.Tensor  # (R,) float64

    def __init__(self, target: torch.Tensor, masks: torch.Tensor | None = None) -> None:
        super().__init__()
        mean, cov = moments(target.detach())
        c = cov.shape[-1]
        variance = torch.diagonal(cov, dim1=-2, dim2=-1).mean(-1)  # (R,)
        ridge = RIDGE * variance.clamp_min(1e-12)
        cov = cov + ridge[:, None, None] * torch.eye(c, dtype=cov.dtype, device=cov.device)
        trace = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1)
        self.register_buffer("shift", mean.float()[:, :, None])
        self.register_buffer("cov", cov)
        self.register_buffer("cov_root", _symmetric_sqrt(cov))
        self.register_buffer("trace", trace)
        self.register_buffer("scale", 1.0 / (trace + mean.square().sum(-1) + 1e-8))
        self.register_buffer("ridge", ridge)
        self.masks: torch.Tensor | None = None if masks is None else masks.detach()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The scalar loss of one image's ``(1, C, H, W)`` features, with its autograd graph."""
        size = (features.shape[-2], features.shape[-1])
        return self.of_statistics(self.partial_statistics(features, (slice(None), slice(None)), size))

    def of_statistics(self, statistics: torch.Tensor) -> torch.Tensor:
        """The loss of a whole image whose ``(R, C+1, C+1)`` augmented second moments of the
        shifted features are ``statistics``: the regions' normalized distances, averaged
        (0-dim, in the statistics' dtype)."""
        mean, cov = moments(statistics)  # the mean relative to the style's
        cov = cov + self.ridge[:, None, None] * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        roots = _TraceSqrt.apply(self.cov_root @ cov @ self.cov_root)  # (R,)
        trace = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1)
        distance = mean.square().sum(-1) + trace + self.trace - 2 * roots  # (R,)
        return (distance * self.scale).mean().to(statistics.dtype)

    def _shifted(self, features: torch.Tensor, owned: Owned) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``(R, C+1, h*w)`` shifted features with a ones channel, the masks at ``owned``
        ``(R, 1, h*w)`` (``None`` without regions) and what each region divides by ``(R, 1, 1)``
        (without regions: 1; the caller divides by the grid's positions)."""
        b, c, h, w = features.shape
        augmented = with_ones(features.float().reshape(1, c, h * w) - self.shift)  # (R, C+1, h*w)
        if self.masks is None:
            return augmented, None, torch.ones(1, 1, 1, device=features.device)
        masks = self.masks[..., owned[0], owned[1]].reshape(-1, 1, h * w)
        return augmented, masks, region_weights(self.masks)

    def partial_statistics(self, features: torch.Tensor, owned: Owned, layer_size: Size) -> torch.Tensor:
        """The share of the whole grid's augmented second moments (of the shifted features)
        that ``(1, C, h, w)`` ``features`` at ``owned`` contribute: ``(R, C+1, C+1)``."""
        augmented, masks, weights = self._shifted(features, owned)
        if masks is None:
            return torch.bmm(augmented, augmented.transpose(1, 2)) / (layer_size[0] * layer_size[1])
        guided = augmented * masks
        return torch.bmm(guided, guided.transpose(1, 2)) / weights

    def partial_grad(self, features: torch.Tensor, owned: Owned, layer_size: Size,
                     d_statistics: torch.Tensor) -> torch.Tensor:
        """The gradient for ``(1, C, h, w)`` ``features`` at ``owned`` of a loss whose gradient
        with respect to the whole grid's statistics is ``d_statistics`` ``(R, C+1, C+1)``:
        ``(D + D^T) A / N`` (with regions, ``m_r^2 (D_r + D_r^T) A_r / W_r`` summed), its first
        ``C`` channels, where ``A`` are the shifted features with a ones channel."""
        b, c, h, w = features.shape
        augmented, masks, weights = self._shifted(features, owned)
        sym = (d_statistics + d_statistics.transpose(1, 2))[:, :c]  # (R, C, C+1)
        if masks is None:
            grad = torch.bmm(sym / (layer_size[0] * layer_size[1]), augmented)
        else:
            grad = (torch.bmm(sym / weights, augmented) * masks.square()).sum(0, keepdim=True)
        return grad.reshape(b, c, h, w).to(features.dtype)

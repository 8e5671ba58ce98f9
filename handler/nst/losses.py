"""Loss terms of Gatys et al. (2016), each normalized by the size of its target.

Departure from the paper: the paper weights raw sums of squared errors, whose scale depends on
the image size, the layer and the network's weights (with seeded random VGG19 weights the raw
losses are around 1e-4, small enough that L-BFGS stops at its tolerances). Here every term is a
mean squared error divided by the mean square of its target, so it is 1.0 when the current
features are all zero and 0.0 at the target, whatever the size or the weights. One set of
default weights therefore works for every image size and for ImageNet and random weights alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

# Guards the normalization against an all-zero target (a layer that is dead for this image).
_EPS = 1e-8

#: Rows and columns of a layer's feature grid (a tile's share; see :mod:`nst.tiling`).
Owned = tuple[slice, slice]
#: ``(h, w)`` of a feature grid.
Size = tuple[int, int]


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of feature maps (Gatys et al. 2016, eq. 3), averaged over positions.

    Args:
        features: ``(B, C, H, W)`` activations of one layer.

    Returns:
        ``(B, C, C)`` with ``G[b, i, j] = mean over (y, x) of F[b, i, y, x] * F[b, j, y, x]``.
        Dividing by ``H * W`` (the paper sums) makes it independent of the image size.
    """
    h, w = features.shape[-2:]
    flat, channels_first = _flatten(features)
    if channels_first:  # (B, C, H*W)
        return torch.bmm(flat, flat.transpose(1, 2)) / (h * w)  # (B, C, C)
    return torch.bmm(flat.transpose(1, 2), flat) / (h * w)  # flat: (B, H*W, C)


def _flatten(features: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A view of ``(B, C, H, W)`` features as a matrix per image, whatever their memory format:
    ``((B, C, H*W), True)`` for contiguous features, ``((B, H*W, C), False)`` for channels_last
    ones (as :class:`nst.vgg.FeatureExtractor` returns them), so that no copy is made."""
    b, c, h, w = features.shape
    if features.is_contiguous() or not features.is_contiguous(memory_format=torch.channels_last):
        return features.reshape(b, c, h * w), True
    return features.permute(0, 2, 3, 1).reshape(b, h * w, c), False


class StyleTerm(Protocol):
    """One style layer's term of the objective: what the whole-image and the tiled evaluations
    (:mod:`nst.objective`, :mod:`nst.tiled`) need of it. Implemented by :class:`StyleLoss` and
    :class:`GuidedStyleLoss`, whose statistics are Gram matrices; another style loss (e.g. one
    matching means and covariances) is another implementation, with its own statistics.

    The statistics must be a mean over the grid's positions, so that the shares of a partition of
    the grid (the tiles' interiors) add up to the whole grid's.
    """

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """The scalar loss of one image's ``(1, C, H, W)`` features, with its autograd graph."""
        ...

    def of_statistics(self, statistics: torch.Tensor) -> torch.Tensor:
        """The loss of a whole image whose statistics (here Gram matrices) are ``statistics``."""
        ...

    def partial_statistics(self, features: torch.Tensor, owned: Owned, layer_size: Size) -> torch.Tensor:
        """The share of the whole grid's statistics that ``features`` at ``owned`` contribute."""
        ...

    def partial_grad(self, features: torch.Tensor, owned: Owned, layer_size: Size,
                     d_statistics: torch.Tensor) -> torch.Tensor:
        """The gradient for ``features`` at ``owned``, given the loss's gradient with respect
        to the whole grid's statistics."""
        ...


class ContentLoss(nn.Module):
    """Normalized squared error to a content target (Gatys et al. 2016, eq. 1).

    Args:
        target: ``(1, C, H, W)`` features of the content image at one layer.
    """

    # Buffers (declared here so that type checkers see tensors, not nn.Module's __getattr__).
    target: torch.Tensor  # (1, C, H, W)
    scale: torch.Tensor  # () 1 / (mean squared target + eps)

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target.detach())
        self.register_buffer("scale", 1.0 / (target.detach().square().mean() + _EPS))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss for ``features`` shaped like the target."""
        return F.mse_loss(features, self.target) * self.scale

    def part(self, features: torch.Tensor, owned: Owned) -> torch.Tensor:
        """The share of :meth:`forward`'s loss that the positions ``owned`` (rows, columns of
        the target's grid) contribute, for ``features`` of just those positions: the shares
        of a partition add up to the whole loss (:mod:`nst.tiled`)."""
        target = self.target[..., owned[0], owned[1]]
        return (features - target).square().sum() * (self.scale / self.target.numel())

    def part_grad(self, features: torch.Tensor, owned: Owned) -> torch.Tensor:
        """The gradient of :meth:`part` with respect to ``features``: ``2 (F - T) scale / N``
        with ``N`` the target's elements."""
        target = self.target[..., owned[0], owned[1]]
        return (features - target) * (2 * self.scale / self.target.numel())


class StyleLoss(nn.Module):
    """Normalized squared error between Gram matrices (Gatys et al. 2016, eq. 4).

    Args:
        target_gram: ``(1, C, C)`` Gram matrix of the style image at one layer (see
            :func:`gram_matrix`); a blend of several styles' Gram matrices works the same way.
    """

    # Buffers (declared here so that type checkers see tensors, not nn.Module's __getattr__).
    target: torch.Tensor  # (1, C, C)
    scale: torch.Tensor  # () 1 / (mean squared target + eps)

    def __init__(self, target_gram: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target_gram.detach())
        self.register_buffer("scale", 1.0 / (target_gram.detach().square().mean() + _EPS))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss for ``(1, C, H, W)`` features; ``H, W`` may differ from the style image's."""
        return _GramLoss.apply(features, self.target, self.scale)

    def of_statistics(self, gram: torch.Tensor) -> torch.Tensor:
        """The loss of a whole image whose ``(1, C, C)`` Gram matrix is ``gram``."""
        return (gram - self.target).square().mean() * self.scale

    def partial_statistics(self, features: torch.Tensor, owned: Owned, layer_size: Size) -> torch.Tensor:
        """:func:`gram_share` (``owned`` is not needed: every position weighs the same)."""
        return gram_share(features, layer_size)

    def partial_grad(self, features: torch.Tensor, owned: Owned, layer_size: Size,
                     d_statistics: torch.Tensor) -> torch.Tensor:
        """The gradient, for ``features`` at ``owned``, of a loss whose gradient with respect
        to the whole Gram matrix is ``d_statistics`` ``(1, C, C)``: ``(D + D^T) F / N`` with ``N``
        the grid's positions (from ``G = F F^T / N``)."""
        b, c, h, w = features.shape
        sym = (d_statistics + d_statistics.transpose(1, 2)) / (layer_size[0] * layer_size[1])  # (1, C, C)
        flat, channels_first = _flatten(features)
        if channels_first:
            return torch.bmm(sym, flat).reshape(b, c, h, w)
        return torch.bmm(flat, sym).reshape(b, h, w, c).permute(0, 3, 1, 2)  # sym is symmetric


class _GramLoss(torch.autograd.Function):
    """``scale * mean((gram_matrix(F) - T) ** 2)`` with a hand-written backward pass.

    Autograd through ``bmm(F, F^T)`` spends two ``(C, C) x (C, H*W)`` products on the gradient
    (one per factor). The Gram matrix and the target are symmetric, so with ``D = G - T`` both
    are the same product and ``dL/dF = 4 * scale / (B * C^2 * H * W) * D @ F``: one product,
    and no ``(C, H*W)``-sized temporaries besides the gradient itself. First-order only
    (L-BFGS and Adam need no more).
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        diff = gram_matrix(features).sub_(target)  # (B, C, C)
        flat, ctx.channels_first = _flatten(features)  # (B, C, N) or (B, N, C)
        ctx.save_for_backward(flat, diff, scale)
        ctx.shape = features.shape
        return diff.square().sum() * (scale / diff.numel())

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        flat, diff, scale = ctx.saved_tensors
        b, c, h, w = ctx.shape
        coef = grad_output * scale * 4.0 / (diff.numel() * h * w)
        if ctx.channels_first:
            return torch.bmm(diff * coef, flat).reshape(ctx.shape), None, None
        # (B, N, C) @ (B, C, C), D symmetric: the gradient comes back in channels_last layout.
        return torch.bmm(flat, diff * coef).reshape(b, h, w, c).permute(0, 3, 1, 2), None, None


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation: mean squared difference of neighbouring pixels.

    The squared (beta = 2) form of Mahendran & Vedaldi (2015), "Understanding Deep Image
    Representations by Inverting Them", eq. 7, averaged rather than summed so that it does not
    grow with the image size. It is 0 for a constant image.

    Args:
        image: ``(B, 3, H, W)`` with ``H, W >= 2``.
    """
    dy = image[..., 1:, :] - image[..., :-1, :]  # (B, 3, H-1, W)
    dx = image[..., :, 1:] - image[..., :, :-1]  # (B, 3, H, W-1)
    return dy.square().mean() + dx.square().mean()


def guided_gram_matrix(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Gram matrices of features weighted by region masks (Gatys et al. 2017, sec. 3, eq. 5).

    Args:
        features: ``(1, C, H, W)`` activations of one layer.
        masks: ``(R, 1, H, W)`` region weights in ``[0, 1]`` at the layer's resolution.

    Returns:
        ``(R, C, C)``: for each region, the Gram matrix of ``features * mask`` divided by the
        mask's total weight, so it is a mean over the region like :func:`gram_matrix`.
    """
    return guided_gram_share(features, masks, region_weights(masks))


def gram_share(features: torch.Tensor, layer_size: Size) -> torch.Tensor:
    """The ``(B, C, C)`` share of the Gram matrix (:func:`gram_matrix`) of a whole
    ``layer_size`` feature grid that ``(B, C, h, w)`` ``features`` of some of its positions
    contribute: the shares of a partition of the grid add up to its Gram matrix."""
    h, w = features.shape[-2:]
    return gram_matrix(features) * (h * w / (layer_size[0] * layer_size[1]))


def region_weights(masks: torch.Tensor) -> torch.Tensor:
    """``(R, 1, 1)``: each region's total weight in ``(R, 1, H, W)`` masks (what
    :func:`guided_gram_matrix` divides by)."""
    return masks.reshape(masks.shape[0], 1, -1).sum(-1, keepdim=True).clamp_min(1e-8)


def guided_gram_share(features: torch.Tensor, masks: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The ``(R, C, C)`` share of :func:`guided_gram_matrix` over a whole grid that the
    ``(1, C, h, w)`` ``features`` of some of its positions contribute, with ``masks``
    ``(R, 1, h, w)`` at those positions and the regions' ``weights`` over the whole grid
    (:func:`region_weights`)."""
    r, c = masks.shape[0], features.shape[1]
    guided = (features * masks).reshape(r, c, -1)  # (R, C, h*w)
    return torch.bmm(guided, guided.transpose(1, 2)) / weights


class GuidedStyleLoss(nn.Module):
    """Normalized squared error between region-guided Gram matrices (Gatys et al. 2017, sec. 3).

    Args:
        target_grams: ``(R, C, C)`` the style target of each region.
        masks: ``(R, 1, H, W)`` the output's regions at this layer's resolution.
    """

    # Buffers (declared here so that type checkers see tensors, not nn.Module's __getattr__).
    target: torch.Tensor  # (R, C, C)
    masks: torch.Tensor  # (R, 1, H, W)
    scale: torch.Tensor  # (R,) 1 / (mean squared target + eps), per region

    def __init__(self, target_grams: torch.Tensor, masks: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target_grams.detach())
        self.register_buffer("masks", masks.detach())
        # One normalization per region, averaged: every region counts the same.
        scale = 1.0 / (target_grams.detach().square().mean(dim=(1, 2)) + _EPS)  # (R,)
        self.register_buffer("scale", scale)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss for ``(1, C, H, W)`` features at the masks' resolution."""
        return self.of_statistics(guided_gram_matrix(features, self.masks))

    def of_statistics(self, gram: torch.Tensor) -> torch.Tensor:
        """The loss of a whole image whose ``(R, C, C)`` region-guided Grams are ``gram``."""
        err = (gram - self.target).square().mean(dim=(1, 2))  # (R,)
        return (err * self.scale).mean()

    def _weights(self, owned: Owned) -> tuple[torch.Tensor, torch.Tensor]:
        """The masks at ``owned`` ``(R, 1, h, w)``, and each region's weight over the whole grid ``(R, 1, 1)``."""
        return self.masks[..., owned[0], owned[1]], region_weights(self.masks)

    def partial_statistics(self, features: torch.Tensor, owned: Owned, layer_size: Size) -> torch.Tensor:
        """:func:`guided_gram_share` of the positions ``owned``."""
        return guided_gram_share(features, *self._weights(owned))

    def partial_grad(self, features: torch.Tensor, owned: Owned, layer_size: Size,
                     d_statistics: torch.Tensor) -> torch.Tensor:
        """The gradient, for ``features`` at ``owned``, of a loss whose gradient with respect
        to the whole Grams is ``d_statistics`` ``(R, C, C)``: the sum over regions of
        ``m_r^2 (D_r + D_r^T) F / W_r``."""
        masks, total = self._weights(owned)
        r, c = masks.shape[0], features.shape[1]
        h, w = features.shape[-2:]
        sym = (d_statistics + d_statistics.transpose(1, 2)) / total  # (R, C, C)
        flat = features.reshape(1, c, h * w).expand(r, c, h * w)
        per_region = torch.bmm(sym, flat).reshape(r, c, h, w) * masks.square()  # (R, C, h, w)
        return per_region.sum(0, keepdim=True)


@dataclass(frozen=True)
class LossTerms:
    """The loss of one level: each layer's term and their weights. The total minimized is
    ``content_weight * content + style_weight * style + tv_weight * tv`` (Gatys et al. 2016,
    eq. 7, alpha and beta, with the total variation term of :func:`tv_loss`), where ``content``
    is the mean of the content layers' losses and ``style`` the style layers' losses weighted by
    ``layer_weights`` (summing to 1), so that adding a layer does not change a group's weight.
    """

    content: dict[str, ContentLoss]
    """Each content layer's loss (targets at the level's size)."""
    style: dict[str, StyleTerm]
    """Each style layer's term."""
    layer_weights: dict[str, float]
    """Each style layer's weight, summing to 1."""
    weights: tuple[float, float, float]
    """``(content_weight, style_weight, tv_weight)``."""

    def content_term(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The mean of the content layers' losses of one image's ``{layer: (1, C, h, w)}`` features, 0-dim."""
        return sum(loss(features[n]) for n, loss in self.content.items()) / len(self.content)  # type: ignore[return-value]

    def style_term(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum of the style layers' losses of one image's features, 0-dim."""
        return sum(self.layer_weights[n] * loss(features[n]) for n, loss in self.style.items())  # type: ignore[return-value]

    def combine(self, content: torch.Tensor, style: torch.Tensor, tv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The total of three 0-dim terms (with whatever graph they carry), and the ``(4,)``
        detached terms in the order of :data:`nst.records.TERMS`, the total last."""
        cw, sw, tw = self.weights
        total = cw * content + sw * style + tw * tv
        return total, torch.stack([content, style, tv, total]).detach()

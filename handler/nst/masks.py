"""Spatial control (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer",
sec. 3): colour-labelled masks say which region of the output takes which style.

The content mask's distinct colours are the regions. Each style has a mask of its own; its
pixels of a region's colour are the part of that style image that paints the region (a style
mask in one flat colour gives the whole style image to that region).
"""

from __future__ import annotations

import torch

#: More regions than this is almost surely a photo or a JPEG-noisy mask, not a label map.
MAX_REGIONS = 16


class MaskError(ValueError):
    """Masks that cannot be turned into regions; the message says which mask and why."""


def region_colors(mask: torch.Tensor) -> torch.Tensor:
    """The distinct colours of a ``(1, 3, H, W)`` mask in ``[0, 1]``, as ``(R, 3)`` in 0..255.

    Raises:
        MaskError: more than :data:`MAX_REGIONS` colours.
    """
    rgb = (mask[0] * 255).round().reshape(3, -1).T  # (H*W, 3)
    colors = torch.unique(rgb, dim=0)
    if len(colors) > MAX_REGIONS:
        raise MaskError(
            f"content_mask has {len(colors)} distinct colours; a mask must label regions with at most "
            f"{MAX_REGIONS} flat colours (save it as PNG, not JPEG)"
        )
    return colors


def label_regions(mask: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    """One-hot regions of a ``(1, 3, H, W)`` mask: ``(R, 1, H, W)`` with ``R = len(colors)``;
    each pixel goes to the nearest colour (so slightly off colours still count)."""
    rgb = (mask[0] * 255).reshape(3, -1).T  # (H*W, 3)
    nearest = torch.cdist(rgb, colors.to(rgb)).argmin(dim=1)  # (H*W,)
    h, w = mask.shape[-2:]
    return torch.stack([(nearest == r).reshape(1, h, w) for r in range(len(colors))]).float()  # (R, 1, H, W)


def resize_regions(regions: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(R, 1, H, W)`` region masks to ``size`` (a layer's ``(h, w)``) by area averaging,
    so a feature position's weight is the share of its receptive area inside the region."""
    return torch.nn.functional.interpolate(regions, size=size, mode="area")

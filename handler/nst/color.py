"""Colour control of Gatys, Bethge, Hertzmann & Shechtman (2017), "Controlling Perceptual
Factors in Neural Style Transfer", CVPR 2017, sec. 4: keep the content image's colours either by
transferring style on luminance only, or by first matching the style image's colours to the
content's; and jcjohnson/neural-style's ``-original_colors 1``, which gives the stylized output
the content's chroma once the optimization is over. All images are ``(1, 3, H, W)`` RGB in ``[0, 1]``.
"""

from __future__ import annotations

import torch

# RGB -> YIQ (NTSC), the colour space the paper uses for luminance-only transfer.
_RGB_TO_YIQ = torch.tensor([
    [0.299, 0.587, 0.114],
    [0.595716, -0.274453, -0.321263],
    [0.211456, -0.522591, 0.311135],
])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


# RGB -> YUV (BT.601 analogue, as torch's image.rgb2yuv that jcjohnson/neural-style uses).
_RGB_TO_YUV = torch.tensor([
    [0.299, 0.587, 0.114],
    [-0.14713, -0.28886, 0.436],
    [0.615, -0.51499, -0.10001],
])
_YUV_TO_RGB = torch.linalg.inv(_RGB_TO_YUV)


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", matrix.to(image), image)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB -> YIQ (channel 0 is the luminance Y, in ``[0, 1]``)."""
    return _apply(_RGB_TO_YIQ, image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` YIQ -> RGB (not clamped)."""
    return _apply(_YIQ_TO_RGB, image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """The Y channel of ``image`` repeated to 3 channels: ``(B, 3, H, W)``, a grey image VGG19 can take."""
    return rgb_to_yiq(image)[:, :1].expand(-1, 3, -1, -1).contiguous()


def match_luminance(style_lum: torch.Tensor, content_lum: torch.Tensor) -> torch.Tensor:
    """Shift and scale the style's luminance to the content's mean and standard deviation
    (paper, sec. 4.1), so that luminance-only transfer keeps the content's tone."""
    s_mean, s_std = style_lum.mean(), style_lum.std()
    c_mean, c_std = content_lum.mean(), content_lum.std()
    return (style_lum - s_mean) * (c_std / (s_std + 1e-8)) + c_mean


def combine_luminance(output_lum: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """RGB image with the luminance of ``output_lum`` (grey, ``(1, 3, H, W)``) and the chroma (I, Q)
    of ``content``; the result of luminance-only transfer (paper, sec. 4.1)."""
    yiq = rgb_to_yiq(content)
    y = rgb_to_yiq(output_lum)[:, :1]
    return yiq_to_rgb(torch.cat([y, yiq[:, 1:]], dim=1)).clamp(0.0, 1.0)


def rgb_to_yuv(image: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB -> YUV (channel 0 is the luma Y in ``[0, 1]``, 1-2 the chroma U, V)."""
    return _apply(_RGB_TO_YUV, image)


def yuv_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` YUV -> RGB (not clamped)."""
    return _apply(_YUV_TO_RGB, image)


def original_colors(output: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The stylized ``output``'s luma Y with the ``content``'s chroma (U, V), as
    jcjohnson/neural-style's ``-original_colors 1`` (``neural_style.lua``, ``original_colors``):
    the style's strokes and texture in the photograph's colours. Unlike luminance-only transfer,
    the optimization ran on all three channels.

    Args:
        output: ``(1, 3, H, W)`` RGB in ``[0, 1]``.
        content: ``(1, 3, H, W)`` RGB in ``[0, 1]``, the same size.

    Returns:
        ``(1, 3, H, W)`` RGB clamped to ``[0, 1]`` (only colours outside the RGB cube change
        their Y, U, V by the clamping).
    """
    y = rgb_to_yuv(output)[:, :1]
    uv = rgb_to_yuv(content)[:, 1:]
    return yuv_to_rgb(torch.cat([y, uv], dim=1)).clamp(0.0, 1.0)


def _covariance(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``(3, 3)`` covariance of ``(3, N)`` pixels with their ``(3, 1)`` mean (unbiased, as
    ``torch.cov``, which reads a value back to the host), plus ``1e-5`` on the diagonal."""
    centred = x - mean
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    return centred @ centred.T / (x.shape[1] - 1) + 1e-5 * eye


def _sqrtm(cov: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    eigvals, eigvecs = torch.linalg.eigh(cov)
    eigvals = eigvals.clamp_min(1e-8)
    power = -0.5 if inverse else 0.5
    return eigvecs @ torch.diag(eigvals**power) @ eigvecs.T


def match_color_histogram(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Recolour ``style`` so its RGB mean and covariance equal the content's (paper, sec. 4.2,
    the linear "Image Analogies" transform with the symmetric matrix square root).

    Args:
        style: ``(1, 3, H_s, W_s)`` in ``[0, 1]``.
        content: ``(1, 3, H, W)`` in ``[0, 1]``.

    Returns:
        ``(1, 3, H_s, W_s)`` in ``[0, 1]``.
    """
    s = style.reshape(3, -1).double()  # (3, N_s)
    c = content.reshape(3, -1).double()  # (3, N_c)
    s_mean, c_mean = s.mean(1, keepdim=True), c.mean(1, keepdim=True)
    transform = _sqrtm(_covariance(c, c_mean)) @ _sqrtm(_covariance(s, s_mean), inverse=True)
    out = transform @ (s - s_mean) + c_mean
    return out.reshape(style.shape).to(style.dtype).clamp(0.0, 1.0)

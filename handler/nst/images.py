"""Image decoding, resizing and encoding between Pillow and ``(1, 3, H, W)`` tensors in ``[0, 1]``,
and the optimization's starting image."""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
import tifffile
import torch
import torch.nn.functional as F
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError
from torchvision.transforms import functional as TF

from .options import INITS

OutputFormat = Literal["png", "jpeg", "webp", "tiff16"]
#: Encodings of the output: PNG, JPEG (quality 95), WebP (lossy, quality 95) and TIFF with 16 bits
#: per channel (zlib-compressed; the optimization runs in float, so the extra bits are real).
OUTPUT_FORMATS: tuple[str, ...] = ("png", "jpeg", "webp", "tiff16")
#: The output formats that keep an alpha channel; the others are flattened on white.
ALPHA_FORMATS: tuple[str, ...] = ("png", "webp", "tiff16")
#: The sRGB ICC profile (LittleCMS's built-in) every output is tagged with.
SRGB_PROFILE: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
_SRGB = ImageCms.ImageCmsProfile(io.BytesIO(SRGB_PROFILE))


class ImageDecodeError(ValueError):
    """Bytes that are not a decodable image."""


class ImageTooLargeError(ImageDecodeError):
    """An image whose header declares more pixels than allowed."""


def decode_image(data: bytes, *, max_pixels: int, colour_managed: bool = True) -> Image.Image:
    """Decode image bytes to an RGB ``PIL.Image`` in sRGB, transparency composited on white
    (:func:`open_image` without the alpha channel).

    Raises:
        ImageTooLargeError: over ``max_pixels``.
        ImageDecodeError: empty, not an image, truncated, or an unusable embedded ICC profile.
    """
    return open_image(data, max_pixels=max_pixels, colour_managed=colour_managed)[0]


def open_image(data: bytes, *, max_pixels: int,
               colour_managed: bool = True) -> tuple[Image.Image, Image.Image | None]:
    """Decode image bytes to an RGB ``PIL.Image`` and its alpha channel.

    The header is read first and an image over ``max_pixels`` is refused before its pixels are
    decoded (so a decompression bomb costs nothing). EXIF orientation is applied, and an
    animated image gives its first frame. With ``colour_managed``, an embedded ICC profile
    converts the colours to sRGB (LittleCMS through Pillow's ImageCms, perceptual intent) before
    anything else; without it (colour-labelled masks) the values are taken as they are.

    Args:
        data: encoded image bytes (any format Pillow reads).
        max_pixels: the most pixels (width x height) accepted.
        colour_managed: convert from an embedded ICC profile to sRGB.

    Returns:
        ``(rgb, alpha)``: the colours, composited on white where the image is transparent, and
        the alpha channel (mode ``"L"``), or ``None`` for an image without one or whose alpha is
        opaque everywhere.

    Raises:
        ImageTooLargeError: over ``max_pixels``.
        ImageDecodeError: empty, not an image, truncated, or an embedded ICC profile that is
            unreadable or not for the image's colour space.
    """
    img = _open(data, max_pixels)
    icc = img.info.get("icc_profile") if colour_managed else None
    if img.mode == "I" or img.mode.startswith("I;16"):
        # 16-bit grayscale (e.g. PNG): convert("RGB") would clip every value over 255 to white.
        img = img.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    alpha = None
    if img.mode in ("LA", "La"):
        img, alpha = img.getchannel("L"), img.getchannel("A")
    elif img.mode in ("RGBA", "RGBa", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img, alpha = rgba.convert("RGB"), rgba.getchannel("A")
    elif img.mode not in ("RGB", "L", "CMYK"):
        img = img.convert("RGB")
    if icc:
        img = _to_srgb(img, icc)
    rgb = img.convert("RGB")
    if alpha is None:
        return rgb, None
    composited = Image.composite(rgb, Image.new("RGB", rgb.size, (255, 255, 255)), alpha)
    return composited, (None if alpha.getextrema() == (255, 255) else alpha)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """The first frame of ``data``, loaded and turned upright (EXIF), after the size check."""
    if not data:
        raise ImageDecodeError("image is empty (0 bytes)")
    try:
        img: Image.Image = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > max_pixels:
            raise ImageTooLargeError(f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}")
        img.seek(0)
        img.load()
        return ImageOps.exif_transpose(img)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("the bytes are not an image in any format Pillow reads") from None
    except Image.DecompressionBombError as exc:
        # Pillow refuses sizes over 2 * Image.MAX_IMAGE_PIXELS inside Image.open, before our check.
        raise ImageTooLargeError(f"image is over the limit of {max_pixels} pixels ({exc})") from None
    except Exception as exc:
        raise ImageDecodeError(f"not a decodable image: {exc}") from None


def _to_srgb(img: Image.Image, icc: bytes) -> Image.Image:
    """``img`` (mode ``RGB``, ``L`` or ``CMYK``) converted from the ICC profile ``icc`` to sRGB."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ImageCms.PyCMSError) as exc:
        raise ImageDecodeError(f"its embedded ICC colour profile is unreadable ({exc})") from None
    try:
        converted = ImageCms.profileToProfile(img, source, _SRGB, outputMode="RGB")
    except ImageCms.PyCMSError as exc:
        raise ImageDecodeError(f"its embedded ICC colour profile does not fit its {img.mode} pixels ({exc})") from None
    assert converted is not None
    return converted


def scaled_to_long_side(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """``size = (h, w)`` in pixels scaled so that its longer side is ``long_side`` pixels, aspect
    kept (each side rounded, at least 1): the one resize rule of images, levels and previews."""
    h, w = size
    scale = long_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize of ``(B, C, H, W)`` to ``size = (h, w)``, clamped to ``[0, 1]``."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0.0, 1.0)


def to_tensor(img: Image.Image, long_side: int | None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Resize ``img`` (antialiased bicubic) to ``long_side`` pixels (``None``: keep its size) and
    return ``(1, 3, H, W)`` in ``[0, 1]``."""
    h, w = scaled_to_long_side((img.height, img.width), long_side) if long_side else (img.height, img.width)
    img = img.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=None) if (w, h) != img.size else img
    return TF.to_tensor(img).unsqueeze(0).to(device)


def to_pil(image: torch.Tensor) -> Image.Image:
    """Convert ``(1, 3, H, W)`` in ``[0, 1]`` (any device) to an RGB ``PIL.Image``."""
    return TF.to_pil_image(image.detach().squeeze(0).clamp(0, 1).cpu())


def encode_image(image: torch.Tensor, fmt: OutputFormat = "png", *, alpha: torch.Tensor | None = None,
                 jpeg_quality: int = 95) -> bytes:
    """Encode ``(1, 3, H, W)`` in ``[0, 1]`` as one of :data:`OUTPUT_FORMATS`, tagged with the
    sRGB ICC profile.

    Args:
        alpha: ``(1, 1, H, W)`` in ``[0, 1]``, the output's alpha channel: kept by the formats of
            :data:`ALPHA_FORMATS`; JPEG has none, so the image is flattened on white by it.
        jpeg_quality: quality of JPEG and WebP, 1-95.

    Raises:
        ValueError: ``fmt`` is not one of :data:`OUTPUT_FORMATS`, or ``alpha`` is not the
            image's size.
    """
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {OUTPUT_FORMATS}, got {fmt!r}")
    image = image.detach().clamp(0, 1).cpu()
    if alpha is not None:
        alpha = alpha.detach().clamp(0, 1).cpu()
        if alpha.shape[-2:] != image.shape[-2:]:
            raise ValueError(f"alpha is {tuple(alpha.shape[-2:])}, the image {tuple(image.shape[-2:])}")
        if fmt not in ALPHA_FORMATS:
            image, alpha = image * alpha + (1 - alpha), None
    channels = image if alpha is None else torch.cat([image, alpha], dim=1)
    buf = io.BytesIO()
    if fmt == "tiff16":
        pixels = (channels.squeeze(0).permute(1, 2, 0) * 65535).round().to(torch.int32).numpy().astype(np.uint16)
        tifffile.imwrite(buf, pixels, photometric="rgb", compression="zlib", predictor=True,
                         extrasamples=None if alpha is None else ["unassalpha"], iccprofile=SRGB_PROFILE)
        return buf.getvalue()
    picture = TF.to_pil_image(channels.squeeze(0))
    options: dict[str, object] = {"icc_profile": SRGB_PROFILE}
    if fmt in ("jpeg", "webp"):
        options["quality"] = jpeg_quality
    picture.save(buf, format=fmt.upper(), **options)
    return buf.getvalue()


def initial_image(content: torch.Tensor, init: str, seed: int, *, style: torch.Tensor | None = None,
                  init_image: torch.Tensor | None = None) -> torch.Tensor:
    """Return the starting image, shaped like ``content`` ``(1, 3, H, W)``, on its device.

    ``"noise"`` draws uniform ``[0, 1)`` noise from a CPU generator seeded with ``seed``, so the
    same seed gives the same start on every device. ``"style"`` and ``"image"`` resize ``style``
    / ``init_image`` to the content's size (aspect ratio not kept).

    Raises:
        ValueError: ``init="image"`` without ``init_image``, or an unknown ``init``.
    """
    size = (content.shape[-2], content.shape[-1])
    if init == "content":
        return content.detach().clone()
    if init == "noise":
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(content.shape, generator=generator).to(content.device)
    if init == "style" and style is not None:
        return resize(style.detach(), size).clone()
    if init == "image":
        if init_image is None:
            raise ValueError('init="image" needs an init_image')
        return resize(init_image.detach(), size).clone()
    raise ValueError(f"init must be one of {INITS}, got {init!r}")

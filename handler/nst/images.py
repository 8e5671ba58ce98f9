"""Image decoding, resizing and encoding between Pillow and ``(1, 3, H, W)`` tensors in ``[0, 1]``,
and the optimization's starting image."""

from __future__ import annotations

import io
from typing import Literal

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import functional as TF

from .options import INITS

OutputFormat = Literal["png", "jpeg"]
OUTPUT_FORMATS: tuple[str, ...] = ("png", "jpeg")


class ImageDecodeError(ValueError):
    """Bytes that are not a decodable image."""


class ImageTooLargeError(ImageDecodeError):
    """An image whose header declares more pixels than allowed."""


def decode_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode image bytes to an RGB ``PIL.Image``.

    The header is read first and an image over ``max_pixels`` is refused before its pixels are
    decoded (so a decompression bomb costs nothing). EXIF orientation is applied, transparency
    is composited on white, and an animated image gives its first frame.

    Args:
        data: encoded image bytes (any format Pillow reads).
        max_pixels: the most pixels (width x height) accepted.

    Raises:
        ImageTooLargeError: over ``max_pixels``.
        ImageDecodeError: empty, not an image, or truncated.
    """
    if not data:
        raise ImageDecodeError("image is empty (0 bytes)")
    try:
        img: Image.Image = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > max_pixels:
            raise ImageTooLargeError(f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}")
        img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("the bytes are not an image in any format Pillow reads") from None
    except Image.DecompressionBombError as exc:
        # Pillow refuses sizes over 2 * Image.MAX_IMAGE_PIXELS inside Image.open, before our check.
        raise ImageTooLargeError(f"image is over the limit of {max_pixels} pixels ({exc})") from None
    except Exception as exc:
        raise ImageDecodeError(f"not a decodable image: {exc}") from None
    if img.mode == "I" or img.mode.startswith("I;16"):
        # 16-bit grayscale (e.g. PNG): convert("RGB") would clip every value over 255 to white.
        img = img.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def fit_long_side(width: int, height: int, long_side: int) -> tuple[int, int]:
    """Return ``(width, height)`` scaled so the longer side is ``long_side`` pixels, aspect kept."""
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize of ``(B, C, H, W)`` to ``size = (h, w)``, clamped to ``[0, 1]``."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0.0, 1.0)


def to_tensor(img: Image.Image, long_side: int | None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Resize ``img`` (antialiased bicubic) to ``long_side`` pixels (``None``: keep its size) and
    return ``(1, 3, H, W)`` in ``[0, 1]``."""
    w, h = fit_long_side(img.width, img.height, long_side) if long_side else img.size
    img = img.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=None) if (w, h) != img.size else img
    return TF.to_tensor(img).unsqueeze(0).to(device)


def to_pil(image: torch.Tensor) -> Image.Image:
    """Convert ``(1, 3, H, W)`` in ``[0, 1]`` (any device) to an RGB ``PIL.Image``."""
    return TF.to_pil_image(image.detach().squeeze(0).clamp(0, 1).cpu())


def encode_image(image: torch.Tensor, fmt: OutputFormat = "png", *, jpeg_quality: int = 95) -> bytes:
    """Encode ``(1, 3, H, W)`` in ``[0, 1]`` as PNG or JPEG bytes.

    Raises:
        ValueError: ``fmt`` is not one of :data:`OUTPUT_FORMATS`.
    """
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {OUTPUT_FORMATS}, got {fmt!r}")
    buf = io.BytesIO()
    if fmt == "png":
        to_pil(image).save(buf, format="PNG")
    else:
        to_pil(image).save(buf, format="JPEG", quality=jpeg_quality)
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

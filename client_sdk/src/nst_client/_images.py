"""The image inputs ``stylize`` accepts, and conversions between them, raw bytes, base64 and PIL images."""

from __future__ import annotations

import base64
import binascii
import io
import os
from pathlib import Path
from typing import Callable, List, Tuple, Union

from PIL import Image

__all__ = ["ImageInput", "StyleInput", "to_image_bytes", "b64encode", "b64decode", "open_image", "save_encoded",
           "FORMAT_BY_SUFFIX", "SUFFIX_BY_FORMAT"]

#: What ``stylize`` accepts for ``content`` and each style, mask or init image: a file path,
#: encoded image bytes, or a PIL image (sent as PNG).
ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Image.Image]

#: ``stylize``'s ``style``: one image (sent as a base64 string) or a list/tuple of images
#: (sent as a JSON list of base64 strings, even with a single element).
StyleInput = Union[ImageInput, List[ImageInput], Tuple[ImageInput, ...]]

#: ``params.output_format`` -> the file suffix the CLI names its outputs with.
SUFFIX_BY_FORMAT = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "tiff16": ".tiff"}
#: File suffix -> the ``params.output_format`` whose bytes a file of that name takes unchanged.
FORMAT_BY_SUFFIX = {**{suffix: fmt for fmt, suffix in SUFFIX_BY_FORMAT.items()}, ".jpeg": "jpeg", ".tif": "tiff16"}

# Modes PNG can store as-is; anything else is converted to RGB(A) first.
_PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}


def to_image_bytes(image: ImageInput, *, name: str = "image") -> bytes:
    """Turn a user-supplied image into encoded image bytes, without any network I/O.

    Args:
        image: A file path (``str`` or ``os.PathLike``; a ``str`` is always a path),
            encoded image bytes (``bytes``/``bytearray``/``memoryview``, sent unchanged),
            or a ``PIL.Image.Image`` (encoded as PNG).
        name: Argument name used in error messages (``"content"``, ``"style"``).

    Returns:
        The encoded image bytes.

    Raises:
        TypeError: ``image`` is of an unsupported type.
        FileNotFoundError: The path does not exist.
        IsADirectoryError: The path is a directory.
        ValueError: The bytes or the file are empty.
    """
    if isinstance(image, Image.Image):
        img = image
        if img.mode not in _PNG_MODES:
            img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise ValueError(f"{name}: image bytes are empty")
        return data
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise FileNotFoundError(f"{name}: no such file: {str(path)!r}")
        if path.is_dir():
            raise IsADirectoryError(f"{name}: is a directory, not an image file: {str(path)!r}")
        data = path.read_bytes()
        if not data:
            raise ValueError(f"{name}: file is empty: {str(path)!r}")
        return data
    raise TypeError(
        f"{name} must be a file path (str or os.PathLike), bytes, or PIL.Image.Image, "
        f"not {type(image).__name__}"
    )


def b64encode(data: bytes) -> str:
    """Standard base64 (with padding) as ASCII text.

    Args:
        data: Raw bytes.

    Returns:
        The base64 string.
    """
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Decode standard base64 strictly.

    Args:
        text: A base64 string.

    Returns:
        The decoded bytes.

    Raises:
        ValueError: ``text`` is not valid base64.
    """
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError(f"invalid base64: {exc}") from exc


def open_image(data: bytes) -> Image.Image:
    """Decode image bytes into a fully loaded PIL image.

    Args:
        data: Encoded image bytes (PNG, JPEG, ...).

    Returns:
        The loaded ``PIL.Image.Image``.

    Raises:
        PIL.UnidentifiedImageError: The bytes are not a recognised image.
    """
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def save_encoded(data: bytes, fmt: str, path: Union[str, os.PathLike[str]],
                 image: Callable[[], Image.Image]) -> Path:
    """Write encoded image bytes to ``path``, re-encoding only if the suffix asks for another format.

    Args:
        data: The encoded image.
        fmt: Its format, a ``params.output_format`` (``"png"``, ``"jpeg"``, ``"webp"``, ``"tiff16"``).
        path: Destination file; its parent directory must exist.
        image: Returns the decoded image (called only when re-encoding).

    Returns:
        The path written, as a ``Path``.

    Raises:
        ValueError: Pillow does not know the suffix.
        OSError: The file cannot be written.
    """
    p = Path(path)
    target = FORMAT_BY_SUFFIX.get(p.suffix.lower())
    if target == fmt:
        p.write_bytes(data)
        return p
    img = image()
    if target == "jpeg" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    img.save(p)
    return p

"""Encoded test images built in memory (shared by the engine, handler and reliability tests)."""

from __future__ import annotations

import base64
import io
import struct
import zlib

from PIL import Image


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    """``img`` encoded as ``fmt`` by Pillow (``kwargs`` go to ``Image.save``)."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def b64(data: bytes) -> str:
    """Base64 text of ``data``, as the API expects."""
    return base64.b64encode(data).decode("ascii")


def png_b64(img: Image.Image) -> str:
    """``img`` as base64 PNG."""
    return b64(encode(img))


def png_claiming_size(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR says ``width`` x ``height`` (CRC fixed): only the header is large,
    as in a decompression bomb that must be refused without decoding."""
    data = bytearray(encode(Image.new("RGB", (1, 1), (10, 20, 30))))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)

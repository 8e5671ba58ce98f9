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


def icc_description(img: Image.Image) -> str:
    """The description of the ICC profile ``img`` carries (an assertion error when it has none)."""
    from PIL import ImageCms

    icc = img.info.get("icc_profile")
    assert icc, "the image carries no ICC profile"
    return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))


def _s15f16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + _s15f16(x) + _s15f16(y) + _s15f16(z)


def adobe_rgb_profile() -> bytes:
    """An ICC v2 display profile with the Adobe RGB (1998) colorants (D50-adapted, as in Adobe's
    own ``AdobeRGB1998.icc``) and its gamma 563/256: a real non-sRGB colour space, built here
    (ICC.1:2001-04, sec. 6 and 9: header, tag table, ``desc``/``cprt``/``wtpt``, ``rXYZ``..``bXYZ``,
    ``rTRC``..``bTRC``) because no installed package ships one. LittleCMS reads it."""
    desc_text = b"Adobe RGB (1998) compatible, built by the tests\x00"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(desc_text)) + desc_text + bytes(4 + 4 + 2 + 1 + 67)
    trc = b"curv" + bytes(4) + struct.pack(">IH", 1, 563) + bytes(2)  # gamma 2.19921875 (u8Fixed8), padded
    tags = [
        (b"desc", desc),
        (b"cprt", b"text" + bytes(4) + b"No copyright, test data\x00"),
        (b"wtpt", _xyz_tag(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _xyz_tag(0.60974, 0.31111, 0.01947)),
        (b"gXYZ", _xyz_tag(0.20528, 0.62567, 0.06087)),
        (b"bXYZ", _xyz_tag(0.14919, 0.06322, 0.74457)),
        (b"rTRC", trc), (b"gTRC", trc), (b"bTRC", trc),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = bytearray(struct.pack(">I", len(tags))), bytearray()
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + bytes(4) + bytes(4) + bytes(4) + bytes(4)
              + bytes(8) + struct.pack(">I", 0) + _s15f16(0.9642) + _s15f16(1.0) + _s15f16(0.8249) + bytes(4)
              + bytes(16) + bytes(28))
    assert len(header) == 128
    return header + bytes(table) + bytes(data)

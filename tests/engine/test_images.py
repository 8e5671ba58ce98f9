"""Decoding (formats, modes, EXIF, limits, bad input), resizing and encoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from imagebytes import encode as _encode
from imagebytes import icc_description, png_claiming_size
from nst.images import (
    ImageDecodeError,
    decode_image,
    encode_image,
    open_image,
    scaled_to_long_side,
    to_pil,
    to_tensor,
)
from PIL import Image

BIG = 10**7  # a max_pixels that no test image reaches


def rgb_at(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    """The channel values (0-255) of the pixel at ``xy = (x, y)`` of a multi-band image such as RGB."""
    pixel = img.getpixel(xy)
    assert isinstance(pixel, tuple), f"expected a multi-band pixel, got {pixel!r}"
    return pixel


def test_decode_png_and_jpeg(image_bytes) -> None:
    png = decode_image(image_bytes("chelsea_128x96.png"), max_pixels=BIG)
    assert (png.mode, png.size) == ("RGB", (128, 96))
    jpeg_bytes = _encode(png, "JPEG", quality=95)
    jpeg = decode_image(jpeg_bytes, max_pixels=BIG)
    assert (jpeg.mode, jpeg.size) == ("RGB", (128, 96))
    diff = np.abs(np.asarray(jpeg, dtype=np.int16) - np.asarray(png, dtype=np.int16))
    assert diff.mean() < 8


def test_rgba_is_composited_on_white() -> None:
    img = Image.new("RGBA", (4, 2), (255, 0, 0, 255))
    img.putpixel((1, 0), (0, 0, 255, 0))  # fully transparent blue
    img.putpixel((2, 0), (0, 0, 0, 128))  # half-transparent black
    out = decode_image(_encode(img, "PNG"), max_pixels=BIG)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 0, 0)
    assert out.getpixel((1, 0)) == (255, 255, 255)
    assert all(120 <= v <= 135 for v in rgb_at(out, (2, 0)))


def test_gray_alpha_is_composited_on_white() -> None:
    img = Image.new("LA", (2, 1), (0, 255))
    img.putpixel((1, 0), (0, 0))
    out = decode_image(_encode(img, "PNG"), max_pixels=BIG)
    assert [out.getpixel((x, 0)) for x in range(2)] == [(0, 0, 0), (255, 255, 255)]


def test_palette_images() -> None:
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    for x in range(3):
        img.putpixel((x, 0), x)
    out = decode_image(_encode(img, "PNG"), max_pixels=BIG)
    assert out.mode == "RGB"
    assert [out.getpixel((x, 0)) for x in range(3)] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    # With palette entry 1 transparent, that pixel becomes white.
    transparent = decode_image(_encode(img, "PNG", transparency=1), max_pixels=BIG)
    assert [transparent.getpixel((x, 0)) for x in range(3)] == [(255, 0, 0), (255, 255, 255), (0, 0, 255)]
    gif = decode_image(_encode(img, "GIF"), max_pixels=BIG)
    assert gif.mode == "RGB" and gif.getpixel((2, 0)) == (0, 0, 255)


def test_grayscale_becomes_rgb() -> None:
    img = Image.new("L", (3, 2), 77)
    for fmt in ("PNG", "JPEG"):
        out = decode_image(_encode(img, fmt), max_pixels=BIG)
        assert out.mode == "RGB" and out.size == (3, 2)
        r, g, b = rgb_at(out, (1, 1))
        assert r == g == b and abs(r - 77) <= 2


def test_16_bit_grayscale_keeps_its_tones() -> None:
    ramp = np.linspace(0, 65535, 64 * 16).reshape(16, 64).astype(np.uint16)
    out = np.asarray(decode_image(_encode(Image.fromarray(ramp), "PNG"), max_pixels=BIG))
    assert out.shape == (16, 64, 3)
    expected = np.round(ramp / 257)
    assert np.abs(out[..., 0] - expected).max() <= 1
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255 and 120 <= out[8, 0, 0] <= 135


def test_exif_orientation_is_applied() -> None:
    # 40x20, left half red and right half blue; orientation 6 = rotate 90 degrees clockwise to view.
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(img, "JPEG", exif=exif, quality=95)
    assert Image.open(io.BytesIO(data)).size == (40, 20)  # stored unrotated
    out = decode_image(data, max_pixels=BIG)
    assert out.size == (20, 40)
    top, bottom = rgb_at(out, (10, 5)), rgb_at(out, (10, 35))
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"hello, this is not an image at all", id="text"),
        pytest.param(b"\x89PNG\r\n\x1a\n", id="png-signature-only"),
        pytest.param(None, id="truncated-png"),
        pytest.param("jpeg", id="truncated-jpeg"),
    ],
)
def test_undecodable_bytes(data, image_bytes) -> None:
    if data is None:
        full = image_bytes("tubingen_64x64.png")
        data = full[: len(full) // 2]
    elif data == "jpeg":
        full = _encode(Image.open(io.BytesIO(image_bytes("tubingen_64x64.png"))), "JPEG")
        data = full[: len(full) // 2]
    with pytest.raises(ImageDecodeError):
        decode_image(data, max_pixels=BIG)


def test_pixel_limit_boundary(image_bytes) -> None:
    data = image_bytes("tubingen_64x64.png")
    assert decode_image(data, max_pixels=64 * 64).size == (64, 64)
    with pytest.raises(ImageDecodeError, match=r"64x64 = 4096 pixels, over the limit of 4095"):
        decode_image(data, max_pixels=64 * 64 - 1)


@pytest.mark.parametrize("width, height", [(6000, 5000), (100_000, 100_000)])
def test_huge_header_is_refused_without_decoding(width: int, height: int) -> None:
    data = png_claiming_size(width, height)
    with pytest.raises(ImageDecodeError, match="over the limit of 25000000") as info:
        decode_image(data, max_pixels=25_000_000)
    # Refused on the header: decoding the 1-pixel data would have reported truncation instead.
    assert "truncated" not in str(info.value)


def test_scaled_to_long_side_keeps_the_aspect_and_never_reaches_zero() -> None:
    assert scaled_to_long_side((96, 128), 64) == (48, 64)
    assert scaled_to_long_side((128, 96), 64) == (64, 48)
    assert scaled_to_long_side((64, 64), 512) == (512, 512)
    assert scaled_to_long_side((10, 1000), 16) == (1, 16)  # never 0
    h, w = scaled_to_long_side((1080, 1920), 500)
    assert w == 500 and h == round(1080 * 500 / 1920)


def test_to_tensor(image_bytes) -> None:
    img = decode_image(image_bytes("chelsea_128x96.png"), max_pixels=BIG)
    t = to_tensor(img, 64)
    assert t.shape == (1, 3, 48, 64) and t.dtype == torch.float32
    assert 0 <= t.min() and t.max() <= 1
    same = to_tensor(img, 128)  # no resize at the native size: exact pixels
    assert torch.equal(same[0].permute(1, 2, 0), torch.from_numpy(np.array(img)).float() / 255)


def test_encode_png_round_trip(image_bytes) -> None:
    original = decode_image(image_bytes("chelsea_128x96.png"), max_pixels=BIG)
    data = encode_image(to_tensor(original, 128), "png")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    back = Image.open(io.BytesIO(data))
    assert back.format == "PNG" and back.size == (128, 96)
    assert np.array_equal(np.asarray(back.convert("RGB")), np.asarray(original))


def test_encode_jpeg(image_bytes) -> None:
    original = decode_image(image_bytes("the_scream_128x96.png"), max_pixels=BIG)
    data = encode_image(to_tensor(original, 128), "jpeg")
    assert data[:3] == b"\xff\xd8\xff"
    back = Image.open(io.BytesIO(data))
    assert back.format == "JPEG" and back.size == (128, 96)
    diff = np.abs(np.asarray(back.convert("RGB"), dtype=np.int16) - np.asarray(original, dtype=np.int16))
    assert diff.mean() < 8
    assert len(encode_image(to_tensor(original, 128), "jpeg", jpeg_quality=10)) < len(data)


def test_encode_clamps_and_refuses_bad_formats() -> None:
    image = torch.tensor([-1.0, 0.5, 2.0]).view(1, 3, 1, 1)
    r, g, b = rgb_at(to_pil(image), (0, 0))
    assert (r, b) == (0, 255) and g in (127, 128)
    for fmt in ("gif", "PNG", "jpg", ""):
        with pytest.raises(ValueError, match="output format"):
            encode_image(torch.rand(1, 3, 4, 4), fmt)  # type: ignore[arg-type]


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = _encode(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG", quality=95)  # red in CMYK
    img = decode_image(data, max_pixels=10**6)
    assert img.mode == "RGB" and img.size == (20, 10)
    r, g, b = rgb_at(img, (10, 5))
    assert r > 200 and g < 60 and b < 60


def test_animated_image_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), color) for color in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    img = decode_image(buf.getvalue(), max_pixels=10**6)
    assert img.mode == "RGB" and img.getpixel((8, 8)) == (255, 0, 0)


# --- colour profiles, transparency and the output formats (jcjohnson #200, crowsonkb's sRGB) ---


def test_an_embedded_profile_is_converted_to_srgb() -> None:
    from imagebytes import adobe_rgb_profile
    from PIL import ImageCms

    pixels = Image.new("RGB", (16, 16), (200, 100, 50))
    expected = ImageCms.profileToProfile(pixels, ImageCms.ImageCmsProfile(io.BytesIO(adobe_rgb_profile())),
                                         ImageCms.createProfile("sRGB"), outputMode="RGB")
    assert expected is not None and expected.getpixel((0, 0)) != (200, 100, 50)  # a real change of space
    tagged = decode_image(_encode(pixels, "PNG", icc_profile=adobe_rgb_profile()), max_pixels=BIG)
    assert tagged.getpixel((8, 8)) == expected.getpixel((8, 8))
    untouched = decode_image(_encode(pixels, "PNG", icc_profile=adobe_rgb_profile()), max_pixels=BIG,
                             colour_managed=False)
    assert untouched.getpixel((8, 8)) == (200, 100, 50)


def test_an_unreadable_or_mismatched_profile_is_refused_by_name() -> None:
    with pytest.raises(ImageDecodeError, match="ICC colour profile is unreadable"):
        decode_image(_encode(Image.new("RGB", (16, 16)), "PNG", icc_profile=b"not a profile" * 20), max_pixels=BIG)
    from imagebytes import adobe_rgb_profile

    gray_with_rgb_profile = _encode(Image.new("L", (16, 16), 128), "PNG", icc_profile=adobe_rgb_profile())
    with pytest.raises(ImageDecodeError, match="does not fit its L pixels"):
        decode_image(gray_with_rgb_profile, max_pixels=BIG)


def test_open_image_keeps_the_alpha_channel() -> None:
    img = Image.new("RGBA", (8, 4), (255, 0, 0, 255))
    img.putpixel((1, 0), (0, 0, 255, 0))
    rgb, alpha = open_image(_encode(img, "PNG"), max_pixels=BIG)
    assert rgb.mode == "RGB" and rgb.getpixel((1, 0)) == (255, 255, 255)  # composited for the optimization
    assert alpha is not None and alpha.mode == "L" and alpha.getpixel((1, 0)) == 0 and alpha.getpixel((0, 0)) == 255
    assert open_image(_encode(Image.new("RGBA", (8, 4), (1, 2, 3, 255)), "PNG"), max_pixels=BIG)[1] is None
    assert open_image(_encode(Image.new("RGB", (8, 4)), "PNG"), max_pixels=BIG)[1] is None


@pytest.mark.parametrize("fmt", ["png", "webp", "tiff16"])
def test_alpha_formats_keep_the_alpha_and_are_tagged_srgb(fmt: str) -> None:
    image = torch.rand(1, 3, 12, 20)
    alpha = torch.linspace(0, 1, 20).expand(1, 1, 12, 20)
    out = Image.open(io.BytesIO(encode_image(image, fmt, alpha=alpha)))  # type: ignore[arg-type]
    assert out.mode == "RGBA" and out.size == (20, 12)
    assert "sRGB" in icc_description(out)
    decoded_alpha = np.asarray(out.getchannel("A"), dtype=np.float64) / 255
    assert np.abs(decoded_alpha - alpha.squeeze().numpy()).max() <= 1 / 255 + 1e-6


def test_jpeg_flattens_the_alpha_on_white() -> None:
    image = torch.zeros(1, 3, 8, 8)  # black
    alpha = torch.ones(1, 1, 8, 8)
    alpha[..., :4] = 0  # left half transparent
    out = Image.open(io.BytesIO(encode_image(image, "jpeg", alpha=alpha)))
    assert out.mode == "RGB" and "sRGB" in icc_description(out)
    assert min(rgb_at(out, (0, 4))) > 240 and max(rgb_at(out, (7, 4))) < 15


def test_tiff16_keeps_sixteen_bits_per_channel() -> None:
    import tifffile

    image = torch.linspace(0, 1, 4096).reshape(1, 1, 64, 64).expand(1, 3, 64, 64)
    data = encode_image(image, "tiff16")
    pixels = tifffile.imread(io.BytesIO(data))
    assert pixels.dtype == np.uint16 and pixels.shape == (64, 64, 3)
    assert np.abs(pixels / 65535 - image.squeeze(0).permute(1, 2, 0).numpy()).max() <= 0.5 / 65535 + 1e-7
    assert len(np.unique(pixels[..., 0])) == 4096  # an 8-bit encoding would keep 256 levels
    assert Image.open(io.BytesIO(data)).mode == "RGB"  # Pillow (the SDK's decoder) reads it, as 8 bits

"""End to end: what users of jcjohnson/neural-style, neural-style-pt and crowsonkb's
style-transfer-pytorch reach for first, through the real TorchServe, the SDK and the CLI:
original colours after the run, transparency, colour profiles, 16-bit output and full-size
previews."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from imagebytes import adobe_rgb_profile, encode, icc_description
from nst import color
from nst.images import SRGB_PROFILE, decode_image, to_tensor
from nst_client import BadRequestError, PreviewEvent
from PIL import Image, ImageCms

DATA = Path(__file__).resolve().parents[1] / "data"
CONTENT = DATA / "chelsea_128x96.png"
STARRY = DATA / "starry_night_64x64.png"
FAST = {"image_size": 64, "iterations": 2}


def _tiff_tensor(data: bytes) -> torch.Tensor:
    """A 16-bit RGB TIFF as ``(1, 3, H, W)`` in ``[0, 1]``."""
    pixels = tifffile.imread(io.BytesIO(data))
    assert pixels.dtype == np.uint16
    return torch.from_numpy(pixels.astype(np.float64) / 65535).permute(2, 0, 1).unsqueeze(0).float()


def _with_alpha() -> tuple[bytes, np.ndarray]:
    """The content as RGBA PNG bytes: transparent on its left quarter, a ramp to opaque after."""
    alpha = np.tile(np.clip(np.linspace(-85, 255, 128), 0, 255), (96, 1)).astype(np.uint8)
    img = Image.open(CONTENT).convert("RGBA")
    img.putalpha(Image.fromarray(alpha))
    return encode(img, "PNG"), alpha


def test_original_colors_keep_the_content_chroma_in_sixteen_bits(torchserve_client):
    plain = torchserve_client.stylize(CONTENT, STARRY, output_format="tiff16", **FAST)
    kept = torchserve_client.stylize(CONTENT, STARRY, output_format="tiff16", color_control="original_colors", **FAST)
    assert (kept.format, kept.params["color_control"], kept.image.size) == ("tiff16", "original_colors", (64, 48))
    assert "sRGB" in icc_description(kept.image)
    content = to_tensor(decode_image(CONTENT.read_bytes(), max_pixels=10**6), 64)
    out, stylized = _tiff_tensor(kept.image_bytes), _tiff_tensor(plain.image_bytes)
    assert len(torch.unique(out)) > 256  # 16 bits carry more than 8-bit levels
    yuv_out, yuv_plain, yuv_content = (color.rgb_to_yuv(x) for x in (out, stylized, content))
    recombined = color.yuv_to_rgb(torch.cat([yuv_plain[:, :1], yuv_content[:, 1:]], 1))
    inside = ((recombined >= 0) & (recombined <= 1)).all(1, keepdim=True)  # not moved by clamping
    assert inside.float().mean() > 0.8
    assert (yuv_out - yuv_content)[:, 1:].abs().masked_select(inside).max() < 1e-3  # the content's chroma
    assert (yuv_out - yuv_plain)[:, :1].abs().masked_select(inside).max() < 1e-3  # the stylized luma
    assert (yuv_plain - yuv_content)[:, 1:].abs().mean() > 5e-3  # precondition: the style moved the colours


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_a_transparent_content_gives_its_alpha_to_the_output(torchserve_client, fmt):
    data, alpha = _with_alpha()
    result = torchserve_client.stylize(data, STARRY, output_format=fmt, **FAST)
    img = result.image
    assert img.mode == "RGBA" and img.size == (64, 48) and "sRGB" in icc_description(img)
    expected = np.asarray(Image.fromarray(alpha).resize((64, 48), Image.Resampling.BICUBIC), dtype=np.int16)
    assert np.abs(np.asarray(img.getchannel("A"), dtype=np.int16) - expected).max() <= 2


def test_jpeg_of_a_transparent_content_is_flattened_on_white(torchserve_client):
    data, _ = _with_alpha()
    img = torchserve_client.stylize(data, STARRY, output_format="jpeg", **FAST).image
    assert img.mode == "RGB"
    assert min(img.getpixel((3, 24))) > 235  # transparent there: white


def test_a_profiled_content_is_converted_to_srgb_first(torchserve_client):
    pixels = Image.open(CONTENT).convert("RGB")
    adobe = ImageCms.ImageCmsProfile(io.BytesIO(adobe_rgb_profile()))
    srgb = ImageCms.ImageCmsProfile(io.BytesIO(SRGB_PROFILE))  # the server's sRGB, to the last bit
    converted = ImageCms.profileToProfile(pixels, adobe, srgb, outputMode="RGB")
    assert converted is not None
    for img in (pixels, converted):
        img.info.pop("icc_profile", None)  # the file's own (sRGB) profile: Pillow would write it again
    tagged = torchserve_client.stylize(encode(pixels, "PNG", icc_profile=adobe_rgb_profile()), STARRY, **FAST)
    as_srgb = torchserve_client.stylize(encode(converted, "PNG"), STARRY, **FAST)
    untagged = torchserve_client.stylize(encode(pixels, "PNG"), STARRY, **FAST)
    same = lambda a, b: np.array_equal(np.asarray(a.image), np.asarray(b.image))  # noqa: E731
    assert same(tagged, as_srgb) and not same(tagged, untagged)
    assert "sRGB" in icc_description(tagged.image)


def test_an_unreadable_profile_is_a_400_naming_the_field(torchserve_client):
    bad = encode(Image.open(CONTENT).convert("RGB"), "PNG", icc_profile=b"garbage" * 40)
    with pytest.raises(BadRequestError) as err:
        torchserve_client.stylize(bad, STARRY, **FAST)
    assert err.value.field == "content" and "ICC" in str(err.value)


def test_preview_size_sets_the_streamed_previews_size(torchserve_client):
    events = list(torchserve_client.stylize_stream(CONTENT, STARRY, preview_every=1, preview_size=40, **FAST))
    previews = [e for e in events if isinstance(e, PreviewEvent)]
    assert len(previews) == 3 and all((p.width, p.height) == (40, 30) for p in previews)  # iterations 0, 1, 2
    assert all(p.image.size == (40, 30) for p in previews)


def test_cli_full_size_previews_sixteen_bits_and_alpha(torchserve, tmp_path):
    content = tmp_path / "cat.png"
    content.write_bytes(_with_alpha()[0])
    out, previews = tmp_path / "out.tiff", tmp_path / "previews"
    proc = subprocess.run(
        [sys.executable, "-m", "nst_client", "stylize", str(content), str(STARRY), "-o", str(out),
         "--output-format", "tiff16", "--color-control", "original_colors", "--save-previews", str(previews),
         "--preview-every", "1", "--url", torchserve.url, "--key-file", str(torchserve.key_file), "--json",
         "--image-size", "64", "--iterations", "2"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["params"]["preview_size"] >= 64 and doc["params"]["color_control"] == "original_colors"
    pixels = tifffile.imread(out)  # the bytes as the torchserve sent them: 16 bits and the alpha channel
    assert pixels.dtype == np.uint16 and pixels.shape == (48, 64, 4)
    files = sorted(previews.iterdir())
    assert len(files) == 3 and all(Image.open(f).size == (64, 48) for f in files)  # full size (-save_iter)

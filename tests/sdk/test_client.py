"""Request shape, inputs, results and lifecycle of StyleTransferClient."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from pathlib import Path

import pytest
from nst_client import APIResponseValidationError, ServerError, StyleTransferClient, StylizeResult
from PIL import Image

DATA = Path(__file__).parents[1] / "data"
CONTENT = DATA / "tubingen_64x64.png"
STYLE = DATA / "starry_night_64x64.png"
OUTPUT = DATA / "chelsea_128x96.png"


def _b64(req_json: dict, key: str) -> bytes:
    return base64.b64decode(req_json[key], validate=True)


def test_request_shape(fake_server):
    with StyleTransferClient(base_url=fake_server.url, token="tok") as client:
        client.stylize(str(CONTENT), STYLE, iterations=5, init="noise", style_weight=None)

    (req,) = fake_server.requests
    assert req.method == "POST"
    assert req.path == "/predictions/nst"
    assert req.headers["Content-Type"] == "application/json"
    assert set(req.json) == {"content", "style", "params"}
    assert _b64(req.json, "content") == CONTENT.read_bytes()
    assert _b64(req.json, "style") == STYLE.read_bytes()
    assert req.json["params"] == {"iterations": 5, "init": "noise"}  # None is omitted


def test_no_params_sends_empty_object(fake_server):
    StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE)
    assert fake_server.requests[0].json["params"] == {}


def test_all_known_params_and_unknown_ones_pass_through(fake_server):
    StyleTransferClient(base_url=fake_server.url).stylize(
        CONTENT, STYLE, image_size=256, iterations=10, content_weight=1.0, style_weight=1e6,
        tv_weight=0.0, init="content", seed=0, output_format="jpeg",
        future_knob={"a": [1, 2]}, unset_future=None,
    )
    assert fake_server.requests[0].json["params"] == {
        "image_size": 256, "iterations": 10, "content_weight": 1.0, "style_weight": 1e6,
        "tv_weight": 0.0, "init": "content", "seed": 0, "output_format": "jpeg",
        "future_knob": {"a": [1, 2]},
    }


def test_model_name_and_base_url(fake_server, monkeypatch):
    StyleTransferClient(base_url=fake_server.url + "/", model="other").stylize(CONTENT, STYLE)
    monkeypatch.setenv("NST_URL", fake_server.url)
    client = StyleTransferClient()
    assert client.base_url == fake_server.url
    client.stylize(CONTENT, STYLE)
    assert [r.path for r in fake_server.requests] == ["/predictions/other", "/predictions/nst"]


def test_default_base_url():
    assert StyleTransferClient().base_url == "http://127.0.0.1:8080"


def test_bytes_and_pil_inputs(fake_server):
    pil = Image.new("RGB", (5, 3), (10, 200, 30))
    raw = STYLE.read_bytes()
    StyleTransferClient(base_url=fake_server.url).stylize(pil, bytearray(raw))
    req = fake_server.requests[0].json
    assert _b64(req, "style") == raw
    decoded = Image.open(io.BytesIO(_b64(req, "content")))
    assert decoded.format == "PNG"
    assert decoded.size == (5, 3)
    assert decoded.convert("RGB").getpixel((4, 2)) == (10, 200, 30)


def test_cmyk_pil_is_converted_to_png_compatible_mode(fake_server):
    StyleTransferClient(base_url=fake_server.url).stylize(Image.new("CMYK", (4, 4)), STYLE)
    decoded = Image.open(io.BytesIO(_b64(fake_server.requests[0].json, "content")))
    assert decoded.format == "PNG" and decoded.mode == "RGB"


@pytest.mark.parametrize(
    "content, exc",
    [
        (123, TypeError),
        (None, TypeError),
        ("does/not/exist.png", FileNotFoundError),
        (Path("missing.jpg"), FileNotFoundError),
        (b"", ValueError),
    ],
)
def test_bad_local_input_fails_before_any_http(fake_server, content, exc):
    with pytest.raises(exc, match="content"):
        StyleTransferClient(base_url=fake_server.url).stylize(content, STYLE)
    assert fake_server.requests == []


def test_result_fields(fake_server):
    result = StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE)
    assert isinstance(result, StylizeResult)
    assert result.image_bytes == OUTPUT.read_bytes()
    assert (result.format, result.width, result.height, result.iterations) == ("png", 128, 96, 7)
    assert result.losses == {"content": 1.5, "style": 2.25, "tv": 0.125, "total": 3.875}
    assert result.timings_ms == {"total": 12.0}
    assert result.params == {"image_size": 128, "iterations": 7}
    assert (result.weights, result.device) == ("random-seed-0", "cpu")
    assert result.raw["server_version"] == "9.9"
    assert result.image.size == (128, 96)
    assert "image_bytes" not in repr(result)


def test_missing_metadata_is_filled_from_the_image(fake_server, success_body):
    body = success_body()
    for key in ("format", "width", "height", "iterations"):
        del body[key]
    fake_server.reply(200, body)
    result = StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE)
    assert (result.format, result.width, result.height, result.iterations) == ("png", 128, 96, None)


def test_save_same_format_writes_bytes_as_received(fake_server, tmp_path):
    result = StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE)
    out = result.save(tmp_path / "out.PNG")
    assert out.read_bytes() == OUTPUT.read_bytes()


def test_save_other_suffix_reencodes(fake_server, tmp_path):
    result = StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE)
    out = result.save(str(tmp_path / "out.jpg"))
    with Image.open(out) as img:
        assert img.format == "JPEG" and img.size == (128, 96)


def test_save_jpeg_response_as_jpeg(fake_server, success_body, tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), "red").save(buf, format="JPEG")
    fake_server.reply(200, success_body(image=base64.b64encode(buf.getvalue()).decode(), format="jpeg", width=8, height=6))
    result = StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE, output_format="jpeg")
    assert result.save(tmp_path / "x.jpeg").read_bytes() == buf.getvalue()


@pytest.mark.parametrize(
    "status, body",
    [(200, "not json"), (200, {"format": "png"}), (200, {"image": "!!not base64!!"}), (200, [1, 2])],
)
def test_malformed_success_response(fake_server, status, body):
    fake_server.reply(status, body)
    with pytest.raises(APIResponseValidationError):
        StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE)


def test_health(fake_server):
    fake_server.reply(200, {"status": "Healthy"})
    with StyleTransferClient(base_url=fake_server.url, token="tok") as client:
        assert client.health() == {"status": "Healthy"}
    (req,) = fake_server.requests
    assert (req.method, req.path, req.headers["Authorization"]) == ("GET", "/ping", "Bearer tok")


def test_health_unhealthy_raises(fake_server):
    fake_server.reply(500, {"status": "Unhealthy"})
    with pytest.raises(ServerError):
        StyleTransferClient(base_url=fake_server.url).health()


def test_close_is_idempotent_and_context_manager_returns_self():
    client = StyleTransferClient()
    with client as entered:
        assert entered is client
    client.close()


@pytest.mark.parametrize("kwargs", [{"timeout": 0}, {"connect_timeout": -1}, {"max_retries": -1}])
def test_invalid_constructor_values(kwargs):
    with pytest.raises(ValueError):
        StyleTransferClient(**kwargs)


def test_constructor_is_keyword_only():
    with pytest.raises(TypeError):
        StyleTransferClient("http://x")  # type: ignore[misc]


def test_sdk_never_imports_torch():
    src = Path(__import__("nst_client").__file__).parent
    for path in src.rglob("*.py"):
        text = path.read_text()
        assert "import torch" not in text and "from torch" not in text, path
    code = ("import sys, nst_client, nst_client.cli;"
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)

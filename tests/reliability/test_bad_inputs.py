"""Reliability: malformed requests get the documented 4xx JSON and the worker stays up.

Every case is sent raw over HTTP to the real TorchServe. After all of them the worker's pid is
unchanged and a good request still succeeds.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import requests
from imagebytes import b64, png_claiming_size
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "data"
PNG = (DATA / "chelsea_128x96.png").read_bytes()
STYLE = (DATA / "starry_night_64x64.png").read_bytes()


def png(width: int, height: int, color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(PNG)).convert("RGB").save(buf, format="JPEG")
    return buf.getvalue()


def noisy_mask() -> bytes:
    img = Image.effect_noise((64, 48), 64).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


GOOD = {"content": b64(PNG), "style": b64(STYLE), "params": {"image_size": 32, "iterations": 1}}


def body(**changes) -> str:
    merged = json.loads(json.dumps(GOOD))
    params = changes.pop("params", None)
    merged.update(changes)
    if params is not None:
        merged["params"] = {**merged["params"], **params}
    return json.dumps(merged)


# (id, raw request body, expected status, expected error code or TorchServe type, expected field)
CASES: list[tuple[str, str | bytes, int, str, str | None]] = [
    ("truncated json", '{"content": ', 400, "invalid_json", None),
    ("empty body", "", 400, "invalid_json", None),
    ("not utf-8", b"\xff\xfe\xfa", 400, "invalid_json", None),
    ("integer too long", '{"content": ' + "9" * 5000 + "}", 400, "invalid_json", None),
    ("deeply nested", "[" * 100000 + "]" * 100000, 400, "invalid_json", None),
    ("json array", "[]", 400, "invalid_body", None),
    ("json null", "null", 400, "invalid_body", None),
    ("json number", "42", 400, "invalid_body", None),
    ("missing content", json.dumps({"style": b64(STYLE)}), 400, "missing_field", "content"),
    ("missing style", json.dumps({"content": b64(PNG)}), 400, "missing_field", "style"),
    ("unknown field", body(colour="red"), 400, "unknown_field", "colour"),
    ("content not a string", body(content=123), 400, "invalid_type", "content"),
    ("bad base64", body(content="not base64 !!"), 400, "invalid_base64", "content"),
    ("zero-byte image", body(content=""), 400, "invalid_image", "content"),
    ("text posing as image", body(style=b64(b"hello, I am a PNG")), 400, "invalid_image", "style"),
    ("truncated png", body(content=b64(PNG[:200])), 400, "invalid_image", "content"),
    ("truncated jpeg", body(content=b64(jpeg()[:300])), 400, "invalid_image", "content"),
    ("1x1 image", body(content=b64(png(1, 1))), 400, "image_too_small", "content"),
    ("1x10000 image", body(style=b64(png(1, 10000))), 400, "image_too_small", "style"),
    ("decompression bomb header", body(content=b64(png_claiming_size(60000, 60000))), 413, "image_too_large", "content"),
    ("params not an object", json.dumps({**GOOD, "params": [1]}), 400, "invalid_type", "params"),
    ("unknown param", body(params={"colour": 1}), 400, "unknown_param", "params.colour"),
    ("iterations as string", body(params={"iterations": "3"}), 400, "invalid_type", "params.iterations"),
    ("iterations as bool", body(params={"iterations": True}), 400, "invalid_type", "params.iterations"),
    ("iterations zero", body(params={"iterations": 0}), 400, "out_of_range", "params.iterations"),
    ("iterations over the limit", body(params={"iterations": 10**6}), 400, "out_of_range", "params.iterations"),
    ("image_size over the limit", body(params={"image_size": 100000}), 400, "out_of_range", "params.image_size"),
    ("image_size fractional", body(params={"image_size": 64.5}), 400, "invalid_type", "params.image_size"),
    ("negative weight", body(params={"style_weight": -1}), 400, "out_of_range", "params.style_weight"),
    ("infinite weight", body().replace('"iterations": 1', '"iterations": 1, "tv_weight": 1e999'), 400, "out_of_range",
     "params.tv_weight"),
    ("NaN weight", body().replace('"iterations": 1', '"iterations": 1, "content_weight": NaN'), 400, "out_of_range",
     "params.content_weight"),
    ("unknown init", body(params={"init": "random"}), 400, "invalid_choice", "params.init"),
    ("unknown output format", body(params={"output_format": "gif"}), 400, "invalid_choice", "params.output_format"),
    ("empty style list", body(style=[]), 400, "invalid_type", "style"),
    ("too many styles", body(style=[b64(STYLE)] * 5), 400, "out_of_range", "style"),
    ("blend weights length", body(params={"style_blend_weights": [1, 2]}), 400, "out_of_range",
     "params.style_blend_weights"),
    ("unknown layer", body(params={"style_layers": ["relu9_9"]}), 400, "invalid_choice", "params.style_layers[0]"),
    ("scales not increasing", body(params={"scales": [32, 16]}), 400, "out_of_range", "params.scales"),
    ("init image missing", body(params={"init": "image"}), 400, "missing_field", "init_image"),
    ("mask without style masks", body(content_mask=b64(png(8, 8))), 400, "missing_field", "style_masks"),
    ("noisy mask", body(content_mask=b64(noisy_mask()), style_masks=[b64(png(8, 8))]), 400, "invalid_mask",
     "content_mask"),
    ("stream with bad progress_every", body(params={"stream": True, "progress_every": 0}), 400, "out_of_range",
     "params.progress_every"),
]


def worker_pid(server) -> int:
    key = json.loads(server.key_file.read_text())["management"]["key"]
    desc = requests.get(f"{server.management_url}/models/nst", headers={"Authorization": f"Bearer {key}"},
                        timeout=10).json()[0]
    return desc["workers"][0]["pid"]


def post(server, data: str | bytes) -> requests.Response:
    key = json.loads(server.key_file.read_text())["inference"]["key"]
    return requests.post(f"{server.url}/predictions/nst", data=data, timeout=120,
                         headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})


def test_at_least_30_distinct_cases() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 30


def test_malformed_requests_get_documented_errors_and_the_worker_survives(torchserve) -> None:
    pid = worker_pid(torchserve)
    failures = []
    for name, data, status, code, field in CASES:
        resp = post(torchserve, data)
        try:
            error = resp.json()["error"]
            ok = (resp.status_code, error["code"], error["field"]) == (status, code, field) and error["message"]
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            failures.append(f"{name}: HTTP {resp.status_code} {resp.text[:200]}")
        assert resp.headers.get("content-type", "").startswith("application/json"), name
    assert not failures, "\n".join(failures)
    assert worker_pid(torchserve) == pid  # no request killed the worker
    good = post(torchserve, body())
    assert good.status_code == 200 and good.json()["iterations"] == 1


def test_a_request_over_max_request_size_is_refused_by_torchserve(torchserve) -> None:
    resp = post(torchserve, b'{"content": "' + b"A" * (64 * 1024 * 1024 + 16) + b'"}')
    assert resp.status_code == 413


def test_no_token_or_image_bytes_in_the_logs(torchserve) -> None:
    assert post(torchserve, body()).status_code == 200  # at least one full request has been logged
    key = json.loads(torchserve.key_file.read_text())["inference"]["key"]
    image_fragment = b64(PNG)[200:260]  # any 60 characters of a sent image
    logs = "".join(p.read_text(errors="replace") for p in torchserve.logs.glob("*.log"))
    assert "NST model loaded" in logs  # the handler's own log lines are in there
    assert key not in logs
    assert image_fragment not in logs

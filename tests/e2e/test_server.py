"""End to end: the real TorchServe, over real HTTP, through the SDK and its CLI."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from nst_client import AuthenticationError, BadRequestError, StyleTransferClient
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "data"
CONTENT = DATA / "chelsea_128x96.png"
STYLE = DATA / "starry_night_64x64.png"
FAST = {"image_size": 64, "iterations": 5}


def inference_key(server) -> str:
    return json.loads(server.key_file.read_text())["inference"]["key"]


def test_stylize_through_sdk(torchserve_client, torchserve):
    result = torchserve_client.stylize(CONTENT, STYLE, **FAST)
    assert result.image.size == (64, 48)  # 128x96 content, long side 64
    assert (result.width, result.height, result.format) == (64, 48, "png")
    assert result.iterations == 5
    assert set(result.losses) == {"content", "style", "tv", "total"}
    assert result.weights == "random-seed-0"  # every response says which weights served it
    assert result.device == "cpu"
    assert result.params["iterations"] == 5 and result.params["init"] == "content"  # effective params echoed
    assert result.timings_ms["total"] > 0


def test_request_without_token_is_refused(torchserve, tmp_path, monkeypatch):
    monkeypatch.delenv("NST_TOKEN", raising=False)
    monkeypatch.delenv("NST_KEY_FILE", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./key_file.json here, so no token at all
    with StyleTransferClient(base_url=torchserve.url, max_retries=0) as anonymous:
        with pytest.raises(AuthenticationError):
            anonymous.stylize(CONTENT, STYLE, **FAST)
        with pytest.raises(AuthenticationError):
            anonymous.health()
    with StyleTransferClient(base_url=torchserve.url, token="not-the-key", max_retries=0) as wrong:
        with pytest.raises(AuthenticationError):
            wrong.health()


def test_bad_request_is_a_400_and_the_worker_stays_up(torchserve_client, torchserve):
    with pytest.raises(BadRequestError) as err:
        torchserve_client.stylize(CONTENT, STYLE, iterations=0, image_size=64)
    assert err.value.status_code == 400
    assert err.value.field == "params.iterations"
    assert err.value.code == "out_of_range"

    headers = {"Authorization": f"Bearer {inference_key(torchserve)}", "Content-Type": "application/json"}
    good_style = base64.b64encode(STYLE.read_bytes()).decode()
    for body, field in [
        ('{"content": "not base64!!", "style": "' + good_style + '"}', "content"),
        ('{"content": "' + good_style + '", "style": "' + good_style + '", "params": {"colour": 1}}', "params.colour"),
        ('{"content": "', None),  # not JSON
    ]:
        resp = requests.post(f"{torchserve.url}/predictions/nst", data=body, headers=headers, timeout=60)
        assert resp.status_code == 400, resp.text
        assert resp.headers["content-type"].startswith("application/json")
        assert resp.json()["error"]["field"] == field

    # The same worker still serves the next good request.
    assert torchserve_client.stylize(CONTENT, STYLE, **FAST).image.size == (64, 48)


def test_cli_writes_the_stylized_image(torchserve, tmp_path):
    out = tmp_path / "out.jpg"
    proc = subprocess.run(
        [sys.executable, "-m", "nst_client", "stylize", str(CONTENT), str(STYLE), "-o", str(out),
         "--url", torchserve.url, "--key-file", str(torchserve.key_file),
         "--image-size", "64", "--iterations", "3", "--output-format", "jpeg"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as img:
        assert img.format == "JPEG" and img.size == (64, 48)


def test_health_and_model_description(torchserve_client, torchserve):
    assert torchserve_client.health()["status"] == "Healthy"
    mgmt_key = json.loads(torchserve.key_file.read_text())["management"]["key"]
    desc = requests.get(
        f"{torchserve.management_url}/models/nst", headers={"Authorization": f"Bearer {mgmt_key}"}, timeout=10
    ).json()[0]
    assert desc["batchSize"] == 1
    assert [w["status"] for w in desc["workers"]] == ["READY"]

    # The model description says which weights are served, and the server's limits and defaults.
    custom = requests.get(
        f"{torchserve.management_url}/models/nst?customized=true",
        headers={"Authorization": f"Bearer {mgmt_key}"}, timeout=60,
    ).json()[0]["customizedMetadata"]
    meta = json.loads(custom) if isinstance(custom, str) else custom
    assert meta["weights"]["label"] == "random-seed-0" and meta["weights"]["source"] == "random"
    assert meta["device"] == "cpu"
    assert meta["limits"]["max_image_side"] == 4096 and meta["limits"]["memory_budget_mb"] > 0  # in force
    assert meta["defaults"]["iterations"] == 300


def test_model_metrics_reach_prometheus(torchserve_client, torchserve):
    torchserve_client.stylize(CONTENT, STYLE, **FAST)
    with pytest.raises(BadRequestError):
        torchserve_client.stylize(CONTENT, STYLE, iterations=0, image_size=64)
    text = requests.get(f"{torchserve.metrics_url}/metrics", timeout=10).text  # no token on 8082
    for name in ("NSTRequests", "NSTIterations", "NSTOutputPixels", "NSTSecondsPerIteration",
                 "NSTStyleCacheHits", "NSTStyleCacheMisses"):
        assert name in text, f"{name} missing from /metrics"
    assert 'Outcome="ok"' in text and 'Outcome="client_error"' in text


def test_sdk_follows_a_regenerated_key(torchserve):
    with StyleTransferClient(base_url=torchserve.url, key_file=torchserve.key_file, max_retries=0) as long_lived:
        assert long_lived.health()["status"] == "Healthy"
        old = inference_key(torchserve)
        api_key = json.loads(torchserve.key_file.read_text())["API"]["key"]
        # TorchServe's token API makes a new inference key (as after expiry or a restart) and
        # rewrites key_file.json; the old key is refused from now on.
        resp = requests.get(f"{torchserve.management_url}/token?type=inference",
                            headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
        assert resp.ok, resp.text
        assert inference_key(torchserve) != old
        refused = requests.get(f"{torchserve.url}/ping", headers={"Authorization": f"Bearer {old}"}, timeout=10)
        assert refused.status_code == 400 and refused.json()["type"] == "InvalidKeyException"
        assert long_lived.health()["status"] == "Healthy"  # re-read the key file, retried once

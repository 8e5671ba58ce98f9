"""End to end: params.stream answers newline-delimited JSON over chunked HTTP."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import requests
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "data"


def _body(**params) -> str:
    b64 = lambda name: base64.b64encode((DATA / name).read_bytes()).decode()  # noqa: E731
    return json.dumps({"content": b64("chelsea_128x96.png"), "style": b64("starry_night_64x64.png"),
                       "params": {"image_size": 64, "iterations": 6, **params}})


def _post(server, body: str) -> requests.Response:
    key = json.loads(server.key_file.read_text())["inference"]["key"]
    return requests.post(f"{server.url}/predictions/nst", data=body, stream=True, timeout=120,
                         headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})


def test_progress_previews_then_the_result(torchserve):
    resp = _post(torchserve, _body(stream=True, progress_every=2, preview_every=3))
    assert resp.status_code == 200
    assert resp.headers.get("transfer-encoding") == "chunked"
    events = [json.loads(line) for line in resp.iter_lines() if line]
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "result" and kinds.count("result") == 1
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["iteration"] for e in progress] == [0, 2, 4, 6]
    assert all(e["of"] == 6 and set(e["losses"]) == {"content", "style", "tv", "total"} for e in progress)
    assert progress[0]["eta_s"] is None and progress[-1]["eta_s"] == 0
    previews = [e for e in events if e["event"] == "preview"]
    assert [e["iteration"] for e in previews] == [0, 3, 6]
    preview = Image.open(io.BytesIO(base64.b64decode(previews[-1]["image"])))
    assert preview.format == "JPEG" and preview.size == (previews[-1]["width"], previews[-1]["height"])
    result = events[-1]
    assert result["iterations"] == 6 and result["params"]["stream"] is True
    assert Image.open(io.BytesIO(base64.b64decode(result["image"]))).size == (64, 48)


def test_errors_before_streaming_are_ordinary_json(torchserve):
    resp = _post(torchserve, _body(stream=True, progress_every=0))
    assert resp.status_code == 400
    assert resp.json()["error"]["field"] == "params.progress_every"


def test_sdk_stream_and_progress_bar_against_the_real_server(torchserve, capsys):
    from nst_client import ProgressEvent, ResultEvent, StyleTransferClient

    with StyleTransferClient(base_url=torchserve.url, key_file=torchserve.key_file, max_retries=0) as client:
        events = list(client.stylize_stream(DATA / "chelsea_128x96.png", DATA / "starry_night_64x64.png",
                                            image_size=64, iterations=4, progress_every=1))
        assert [e.iteration for e in events if isinstance(e, ProgressEvent)] == [0, 1, 2, 3, 4]
        assert isinstance(events[-1], ResultEvent) and events[-1].result.image.size == (64, 48)
        result = client.stylize(DATA / "chelsea_128x96.png", DATA / "starry_night_64x64.png",
                                image_size=64, iterations=3, progress=True)
        assert result.iterations == 3
        assert "3/3" in capsys.readouterr().err  # the tqdm bar

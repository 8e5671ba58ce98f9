"""Streamed progress (params.stream): typed events over chunked NDJSON, progress bar, CLI."""

from __future__ import annotations

import base64
import io
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from nst_client import (
    APIResponseValidationError,
    APITimeoutError,
    BadRequestError,
    MissingDependencyError,
    PreviewEvent,
    ProgressEvent,
    ResultEvent,
    ServerError,
    ServiceUnavailableError,
    StyleTransferClient,
    StylizeResult,
    cli,
)
from nst_client._constants import FULL_SIZE_PREVIEW
from PIL import Image

DATA = Path(__file__).parents[1] / "data"
CONTENT = DATA / "tubingen_64x64.png"
STYLE = DATA / "starry_night_64x64.png"
OUTPUT = DATA / "chelsea_128x96.png"


def _jpeg(width: int = 32, height: int = 24) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 60)).save(buf, format="JPEG")
    return buf.getvalue()


def _progress(iteration: int, of: int = 20, eta: Any = 1.5) -> dict[str, Any]:
    return {"event": "progress", "iteration": iteration, "of": of,
            "losses": {"content": 1.0 + iteration, "style": 2.0, "tv": 0.5, "total": 3.5 + iteration},
            "elapsed_s": 0.25 * iteration, "eta_s": eta}


def _preview(iteration: int) -> dict[str, Any]:
    return {"event": "preview", "iteration": iteration, "width": 32, "height": 24,
            "image": base64.b64encode(_jpeg()).decode("ascii")}


def _lines(success_body: Any) -> list[dict[str, Any]]:
    return [_progress(0, eta=None), _progress(10), _preview(10), _progress(20, eta=0.0), _preview(20),
            {"event": "result", **success_body(iterations=20)}]


def test_events_typed_in_order_and_result_equals_plain_call(fake_server, success_body):
    fake_server.stream(_lines(success_body), chunk_delay=0.01).reply(200, success_body(iterations=20))
    with StyleTransferClient(base_url=fake_server.url) as client:
        events = list(client.stylize_stream(CONTENT, STYLE, iterations=20))
        plain = client.stylize(CONTENT, STYLE, iterations=20)

    assert [type(e) for e in events] == [ProgressEvent, ProgressEvent, PreviewEvent, ProgressEvent,
                                         PreviewEvent, ResultEvent]
    first, second = events[0], events[1]
    assert first == ProgressEvent(iteration=0, of=20, losses={"content": 1.0, "style": 2.0, "tv": 0.5, "total": 3.5},
                                  elapsed_s=0.0, eta_s=None)
    assert (second.iteration, second.of, second.elapsed_s, second.eta_s) == (10, 20, 2.5, 1.5)
    assert isinstance(second.elapsed_s, float) and second.losses["total"] == 13.5
    preview = events[2]
    assert (preview.iteration, preview.width, preview.height) == (10, 32, 24)
    assert preview.image_bytes == _jpeg()
    assert preview.image.size == (32, 24) and preview.image.format == "JPEG"
    result = events[-1].result
    assert isinstance(result, StylizeResult)
    assert result == plain
    assert result.image_bytes == OUTPUT.read_bytes() and result.iterations == 20


def test_request_body_and_headers(fake_server, success_body):
    fake_server.stream(_lines(success_body))
    client = StyleTransferClient(base_url=fake_server.url, token="tok")
    list(client.stylize_stream(CONTENT, [STYLE, STYLE], iterations=20, progress_every=5, preview_every=0,
                               style_blend_weights=(0.5, 0.5), future_knob=1))
    (req,) = fake_server.requests
    assert req.path == "/predictions/nst" and req.headers["Authorization"] == "Bearer tok"
    assert "application/x-ndjson" in req.headers["Accept"]
    assert req.json["params"] == {"iterations": 20, "style_blend_weights": [0.5, 0.5], "future_knob": 1,
                                  "stream": True, "progress_every": 5, "preview_every": 0}
    assert len(req.json["style"]) == 2


def test_intervals_left_to_server_when_not_given(fake_server, success_body):
    fake_server.stream(_lines(success_body))
    list(StyleTransferClient(base_url=fake_server.url).stylize_stream(CONTENT, STYLE))
    assert fake_server.requests[0].json["params"] == {"stream": True}


def test_events_arrive_while_streaming(fake_server, success_body):
    fake_server.stream([_progress(0), _progress(10), {"event": "result", **success_body()}], chunk_delay=0.4)
    start = time.monotonic()
    seen = [(type(e), time.monotonic() - start)
            for e in StyleTransferClient(base_url=fake_server.url).stylize_stream(CONTENT, STYLE)]
    assert [t for t, _ in seen] == [ProgressEvent, ProgressEvent, ResultEvent]
    assert seen[-1][1] - seen[0][1] > 0.6  # the first event came before the stream ended


@pytest.mark.parametrize(
    "status, error, cls, field",
    [
        (500, {"code": "internal_error", "message": "CUDA error: device-side assert"}, ServerError, None),
        (400, {"code": "invalid_mask", "message": "mask has 3 regions, style_masks 2",
               "field": "content_mask"}, BadRequestError, "content_mask"),
        (503, {"code": "overloaded", "message": "busy"}, ServiceUnavailableError, None),
    ],
)
def test_in_band_error_raises_mapped_class(fake_server, sleeps, status, error, cls, field) -> None:
    fake_server.stream([_progress(0), {"event": "error", "error": error, "status": status}])
    events: list[Any] = []
    with pytest.raises(cls) as info:
        for event in StyleTransferClient(base_url=fake_server.url).stylize_stream(CONTENT, STYLE):
            events.append(event)
    err = info.value
    assert [type(e) for e in events] == [ProgressEvent]
    assert (err.status_code, err.code, err.field, err.message) == (status, error["code"], field, error["message"])
    assert f"HTTP {status} {error['code']}" in str(err)
    assert len(fake_server.requests) == 1 and sleeps == []  # never retried once streaming began


def test_stream_without_result_is_a_validation_error(fake_server):
    fake_server.stream([_progress(0), _progress(10)])
    with pytest.raises(APIResponseValidationError, match="without a result"):
        list(StyleTransferClient(base_url=fake_server.url).stylize_stream(CONTENT, STYLE))


@pytest.mark.parametrize("bad", ["not json\n", "[1, 2]\n", {"event": "progress", "iteration": "x", "of": 2,
                                                            "losses": {}, "elapsed_s": 0, "eta_s": None}])
def test_malformed_line_is_a_validation_error(fake_server, success_body, bad):
    fake_server.stream([_progress(0), bad, {"event": "result", **success_body()}])
    with pytest.raises(APIResponseValidationError):
        list(StyleTransferClient(base_url=fake_server.url).stylize_stream(CONTENT, STYLE))


def test_unknown_events_and_blank_lines_are_skipped(fake_server, success_body):
    fake_server.stream([{"event": "heartbeat"}, "\n", _progress(0), {"event": "result", **success_body()}])
    events = list(StyleTransferClient(base_url=fake_server.url).stylize_stream(CONTENT, STYLE))
    assert [type(e) for e in events] == [ProgressEvent, ResultEvent]


def test_plain_json_answer_yields_just_the_result(fake_server, success_body):
    fake_server.reply(200, success_body())
    (event,) = StyleTransferClient(base_url=fake_server.url).stylize_stream(CONTENT, STYLE)
    assert isinstance(event, ResultEvent) and event.result.iterations == 7


def test_error_before_streaming_raises_at_call(fake_server):
    fake_server.reply(400, {"error": {"code": "invalid_param", "message": "progress_every must be >= 1",
                                 "field": "params.progress_every"}})
    with pytest.raises(BadRequestError) as info:
        StyleTransferClient(base_url=fake_server.url).stylize_stream(CONTENT, STYLE, progress_every=0)
    assert info.value.field == "params.progress_every" and len(fake_server.requests) == 1


def test_retryable_status_before_streaming_is_retried(fake_server, sleeps, success_body):
    fake_server.reply(503, {"error": {"code": "busy", "message": "no worker"}}).stream(_lines(success_body))
    events = list(StyleTransferClient(base_url=fake_server.url).stylize_stream(CONTENT, STYLE))
    assert isinstance(events[-1], ResultEvent) and len(fake_server.requests) == 2 and len(sleeps) == 1


def test_stalled_stream_times_out(fake_server):
    fake_server.stream([_progress(0), _progress(10)], chunk_delay=2.0)
    stream = StyleTransferClient(base_url=fake_server.url, timeout=0.3).stylize_stream(CONTENT, STYLE)
    assert isinstance(next(stream), ProgressEvent)
    with pytest.raises(APITimeoutError):
        next(stream)


def test_preview_save(fake_server, success_body, tmp_path):
    fake_server.stream(_lines(success_body))
    previews = [e for e in StyleTransferClient(base_url=fake_server.url).stylize_stream(CONTENT, STYLE)
                if isinstance(e, PreviewEvent)]
    assert previews[0].save(tmp_path / "p.jpg").read_bytes() == _jpeg()
    with Image.open(previews[0].save(tmp_path / "p.png")) as img:
        assert img.format == "PNG" and img.size == (32, 24)


# ------------------------------------------------------------------ stylize(progress=True)

def test_stylize_progress_shows_tqdm_bar(fake_server, success_body, capsys):
    pytest.importorskip("tqdm")
    fake_server.stream(_lines(success_body), chunk_delay=0.01)
    result = StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE, iterations=20, progress=True,
                                                               progress_every=10)
    assert isinstance(result, StylizeResult) and result.iterations == 20
    assert fake_server.requests[0].json["params"] == {"iterations": 20, "stream": True, "progress_every": 10}
    err = capsys.readouterr().err
    assert "20/20" in err and "total=23.5" in err and "style=2" in err


def test_stylize_progress_without_tqdm(fake_server, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes "import tqdm" fail
    with pytest.raises(MissingDependencyError) as info:
        StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE, progress=True)
    assert isinstance(info.value, ImportError)
    assert "pip install 'nst-client[progress]'" in str(info.value)
    assert fake_server.requests == []


# ------------------------------------------------------------------ CLI

def test_cli_save_previews(fake_server, success_body, tmp_path, capsys):
    fake_server.stream(_lines(success_body))
    out, previews = tmp_path / "out.png", tmp_path / "previews"
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(out), "--url", fake_server.url,
                   "--iterations", "20", "--save-previews", str(previews)])
    assert rc == 0
    assert out.read_bytes() == OUTPUT.read_bytes()
    assert sorted(p.name for p in previews.iterdir()) == ["preview_00010.jpg", "preview_00020.jpg"]
    assert (previews / "preview_00010.jpg").read_bytes() == _jpeg()
    # Full-size previews unless --preview-size says otherwise (jcjohnson/neural-style's -save_iter).
    assert fake_server.requests[0].json["params"] == {"iterations": 20, "stream": True, "preview_every": 10,
                                                 "preview_size": FULL_SIZE_PREVIEW}
    assert "iterations=20" in capsys.readouterr().out
    fake_server.stream(_lines(success_body))
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(out), "--url", fake_server.url,
                   "--iterations", "20", "--save-previews", str(previews), "--preview-size", "300"])
    assert rc == 0 and fake_server.requests[-1].json["params"]["preview_size"] == 300


def test_cli_progress(fake_server, success_body, tmp_path, capsys):
    pytest.importorskip("tqdm")
    fake_server.stream(_lines(success_body))
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--url", fake_server.url,
                   "--progress", "--progress-every", "10", "--preview-every", "0"])
    assert rc == 0
    assert fake_server.requests[0].json["params"] == {"stream": True, "progress_every": 10, "preview_every": 0}
    captured = capsys.readouterr()
    assert "20/20" in captured.err and "wrote" in captured.out and "20/20" not in captured.out


@pytest.mark.parametrize("status, code", [(500, 5), (400, 6)])
def test_cli_in_band_error_exit_code(fake_server, tmp_path, capsys, status, code):
    fake_server.stream([_progress(0), {"event": "error", "status": status,
                                  "error": {"code": "x_error", "message": "went wrong", "field": None}}])
    out = tmp_path / "o.png"
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(out), "--url", fake_server.url, "--progress"])
    assert rc == code and not out.exists()
    assert f"HTTP {status} x_error: went wrong" in capsys.readouterr().err


def test_cli_intervals_need_streaming(tmp_path):
    with pytest.raises(SystemExit) as info:
        cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--progress-every", "5"])
    assert info.value.code == 2

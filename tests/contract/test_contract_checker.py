"""The contract checker (tests/openapi_contract.py) accepts what the spec allows and catches
what it does not, for whole bodies, NDJSON streams, and live traffic through ``requests`` and
``httpx`` (to a local HTTP server; the end-to-end tests use the same recorder on TorchServe)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from contract_server import ScriptedServer
from nst_http.params import parse_params
from openapi_contract import (
    ContractRecorder,
    check_exchange,
    check_request,
    check_response,
    check_stream_line,
)

DATA = Path(__file__).resolve().parents[1] / "data"
PNG = base64.b64encode((DATA / "tubingen_64x64.png").read_bytes()).decode("ascii")
PREDICT = "/predictions/nst"


def good_result(**params: Any) -> dict[str, Any]:
    """A 200 body as the handler builds it (effective params from nst.api itself)."""
    return {
        "image": PNG, "format": "png", "width": 64, "height": 64, "iterations": 2, "stopped": "iterations",
        "cache": "miss", "losses": {"content": 0.1, "style": 0.2, "tv": 0.01, "total": 2000.1},
        "timings_ms": {"decode": 1.0, "optimize": 20.5, "encode": 0.5, "total": 22.0},
        "params": parse_params({"image_size": 64, "iterations": 2, **params}), "weights": "random-seed-0",
        "device": "cpu", "request_id": "c0ffee00-0000-4000-8000-000000000000",
    }


def error_body(code: str, field: str | None = "params.iterations") -> dict[str, Any]:
    return {"error": {"code": code, "message": "what went wrong", "field": field, "request_id": "r-1"}}


PROGRESS = {"event": "progress", "iteration": 0, "of": 2, "losses": {"content": 0.0, "style": 1.0, "tv": 0.1,
            "total": 10000.1}, "elapsed_s": 0.01, "eta_s": None}
PREVIEW = {"event": "preview", "iteration": 0, "width": 64, "height": 64, "image": PNG}


def ndjson(*events: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def request_body(**changes: Any) -> str:
    body: dict[str, Any] = {"content": PNG, "style": PNG, "params": {"image_size": 64, "iterations": 2}}
    body.update(changes)
    return json.dumps(body)


# --- bodies ----------------------------------------------------------------------------------


def test_good_answers_pass() -> None:
    assert check_response("POST", PREDICT, 200, "application/json", json.dumps(good_result())) == []
    history = [{"iteration": 1, "content": 0.1, "style": 0.3, "tv": 0.01, "total": 3000.1},
               {"iteration": 2, "content": 0.1, "style": 0.2, "tv": 0.01, "total": 2000.1}]
    with_history = {**good_result(return_history=True), "history": history}
    assert check_response("POST", PREDICT, 200, "application/json", json.dumps(with_history)) == []
    stream = ndjson(PROGRESS, PREVIEW, {"event": "result", **good_result(stream=True)})
    assert check_response("POST", PREDICT, 200, "application/x-ndjson", stream) == []
    failed = ndjson(PROGRESS, {"event": "error", "status": 500, **error_body("internal_error", None)})
    assert check_response("POST", PREDICT, 200, "application/x-ndjson", failed) == []
    assert check_response("POST", PREDICT, 400, "application/json", json.dumps(error_body("out_of_range"))) == []
    too_large = json.dumps(error_body("image_too_large", "content"))
    assert check_response("POST", PREDICT, 413, "application/json", too_large) == []
    assert check_response("POST", PREDICT, 413, None, b"") == []  # TorchServe's own 413: no body
    torchserve = {"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed."}
    assert check_response("POST", PREDICT, 400, "application/json", json.dumps(torchserve)) == []
    died = {"code": 507, "type": "InternalServerException", "message": "Worker died."}
    assert check_response("POST", PREDICT, 507, "application/json; charset=utf-8", json.dumps(died)) == []
    assert check_response("GET", "/ping", 200, "application/json", b'{"status": "Healthy"}') == []


@pytest.mark.parametrize("reason", ["iterations", "time_budget", "cancelled", "diverged"])
def test_every_stop_reason_the_engine_reports_is_in_the_spec(reason: str) -> None:
    # nst.records.Stylized.stopped: "diverged" when a loss became NaN or infinite (the best image so far).
    body = json.dumps({**good_result(), "stopped": reason})
    assert check_response("POST", PREDICT, 200, "application/json", body) == []
    assert check_response("POST", PREDICT, 200, "application/x-ndjson", ndjson({"event": "result", **good_result(
        stream=True), "stopped": reason})) == []


@pytest.mark.parametrize("status, content_type, body, expected", [
    (200, "application/json", {**good_result(), "image": None}, "['image']"),
    (200, "application/json", {**good_result(), "surprise": 1}, "surprise"),
    (200, "application/json", {k: v for k, v in good_result().items() if k != "losses"}, "'losses' is a required"),
    (200, "application/json", {**good_result(), "params": {**good_result()["params"], "iterations": 2.0}}, "['iterations']"),
    (200, "application/json", {**good_result(), "params": {**good_result()["params"], "scales": 1}}, "['scales']"),
    (200, "application/json", {**good_result(), "stopped": "tired"}, "['stopped']"),
    (200, "application/json", {**good_result(), "device": "gpu"}, "['device']"),
    (200, "text/plain", good_result(), "Content-Type 'text/plain'"),
    (302, "application/json", good_result(), "is a required property"),  # "default": TorchServe's body
    (400, "application/json", error_body("image_too_large"), "allowed forms"),
    (400, "application/json", {"error": {"code": "out_of_range", "message": "m"}}, "allowed forms"),
    (400, None, b"", "an empty body without Content-Type"),
    (400, "application/json", b"{not json", "not JSON"),
    (200, "application/x-ndjson", ndjson({**PROGRESS, "iteration": -1}, {"event": "result", **good_result()}),
     "line 1"),
    (200, "application/x-ndjson", ndjson({"event": "hello"}, {"event": "result", **good_result()}), "line 1"),
    (200, "application/x-ndjson", ndjson(PROGRESS, PREVIEW), "without a result"),
    (200, "application/x-ndjson", ndjson({"event": "result", **good_result()}, PROGRESS), "after the final"),
    (200, "application/x-ndjson", ndjson(PROGRESS) + b"{oops\n" + ndjson({"event": "result", **good_result()}),
     "not JSON"),
])
def test_wrong_answers_are_caught(status: int, content_type: str | None, body: Any, expected: str) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    problems = check_response("POST", PREDICT, status, content_type, raw)
    assert problems and any(expected in p for p in problems), problems


def test_stream_lines_are_checked_one_by_one() -> None:
    assert check_stream_line("POST", PREDICT, 200, "application/x-ndjson", json.dumps(PROGRESS)) == []
    assert check_stream_line("POST", PREDICT, 200, "application/x-ndjson", b"  ") == []
    assert check_stream_line("POST", PREDICT, 200, "application/x-ndjson", json.dumps({**PREVIEW, "width": 5000}))


def test_requests_the_spec_accepts_and_refuses() -> None:
    assert check_request("POST", PREDICT, request_body()) == []
    assert check_request("POST", PREDICT, request_body(style=[PNG, PNG], params={"scales": [32, 64]})) == []
    assert check_request("POST", PREDICT, request_body(init_image=PNG, params={"init": "image"})) == []
    assert check_request("POST", PREDICT, request_body(content_mask=PNG, style_masks=[PNG])) == []
    assert check_request("GET", "/ping", None) == []  # no body to check
    cases = {
        "unknown field": (request_body(colour=1), "colour"),
        "unknown param": (request_body(params={"colour": 1}), "colour"),
        "integer as float": (request_body(params={"iterations": 3.0}), "['iterations']"),
        "bool for integer": (request_body(params={"iterations": True}), "['iterations']"),
        "below minimum": (request_body(params={"iterations": 0}), "['iterations']"),
        "unknown layer": (request_body(params={"style_layers": ["relu9_9"]}), "['style_layers'][0]"),
        "repeated layer": (request_body(params={"style_layers": ["relu1_1", "relu1_1"]}), "['style_layers']"),
        "five styles": (request_body(style=[PNG] * 5), "['style']"),
        "init_image without init": (request_body(init_image=PNG), "params"),
        "init image without init_image": (request_body(params={"init": "image"}), "init_image"),
        "mask alone": (request_body(content_mask=PNG), "style_masks"),
        "missing style": (json.dumps({"content": PNG}), "'style' is a required"),
    }
    for name, (body, expected) in cases.items():
        problems = check_request("POST", PREDICT, body)
        assert any(expected in p for p in problems), (name, problems)
    assert check_request("POST", PREDICT, b"[" * 100000) == ["the body is not JSON"]
    with pytest.raises(LookupError):
        check_request("POST", "/predictions/other", request_body())


def test_reconstruction_mode_needs_no_init_image() -> None:
    # The server applies mode before checking init (effective init "noise"), so it accepts this.
    assert check_request("POST", PREDICT, request_body(params={"init": "image", "mode": "reconstruct_style"})) == []


def test_exchange_verdicts() -> None:
    refused_by_spec = ["['params']['iterations']: 0 is less than the minimum of 1"]
    assert check_exchange(refused_by_spec, 200, good_result())  # the server let it through
    assert check_exchange(refused_by_spec, 400, error_body("out_of_range")) == []
    assert check_exchange([], 400, error_body("unknown_param"))  # the spec is looser than the server
    assert check_exchange([], 400, error_body("invalid_type"))
    assert check_exchange([], 400, error_body("image_too_small", "content")) == []  # needs the image: fine
    assert check_exchange([], 400, {"code": 400, "type": "InvalidKeyException", "message": "m"}) == []


# --- live traffic ------------------------------------------------------------------------------


def answer(status: int, content_type: str | None, chunks: list[bytes]) -> Any:
    """A script that always gives this answer."""
    return lambda request: (status, content_type, chunks)


GOOD_STREAM = [ndjson(PROGRESS), ndjson(PREVIEW), ndjson({"event": "result", **good_result(stream=True)})]
BAD_STREAM = [ndjson(PROGRESS), ndjson({**PREVIEW, "width": "wide"}), ndjson({"event": "result", **good_result()})]


def test_recorder_passes_good_traffic_and_leaves_the_body_to_the_caller(scripted: ScriptedServer) -> None:
    base = scripted.url
    scripted.script = answer(200, "application/x-ndjson", GOOD_STREAM)
    with ContractRecorder(base) as recorder:
        resp = requests.post(base + PREDICT, data=request_body(params={"stream": True}), stream=True, timeout=10)
        lines = [json.loads(line) for line in resp.iter_lines() if line]
        requests.get(base + "/token?type=inference", timeout=10)  # not in the spec: passed through
    assert [e["event"] for e in lines] == ["progress", "preview", "result"]  # nothing consumed by the check
    assert recorder.problems == [] and recorder.checked == 1 and recorder.skipped == 1


@pytest.mark.parametrize("stream", [False, True])
def test_recorder_catches_a_bad_stream_line_through_requests(scripted: ScriptedServer, stream: bool) -> None:
    base = scripted.url
    scripted.script = answer(200, "application/x-ndjson", BAD_STREAM)
    with ContractRecorder(base) as recorder:
        resp = requests.post(base + PREDICT, data=request_body(params={"stream": True}), stream=stream, timeout=10)
        assert len([line for line in resp.iter_lines() if line]) == 3
    assert len(recorder.problems) == 1 and "['width']" in recorder.problems[0], recorder.problems
    assert recorder.problems[0].startswith("POST /predictions/nst")


def test_recorder_catches_a_request_the_server_should_have_refused(scripted: ScriptedServer) -> None:
    base = scripted.url
    scripted.script = answer(200, "application/json", [json.dumps(good_result()).encode()])
    with ContractRecorder(base) as recorder:
        requests.post(base + PREDICT, data=request_body(params={"iterations": 0}), timeout=10)
    assert any("answered 200 to a request the spec refuses" in p for p in recorder.problems), recorder.problems


def test_recorder_is_removed_on_exit(scripted: ScriptedServer) -> None:
    base = scripted.url
    scripted.script = answer(200, "text/plain", [b"not the contract"])
    with ContractRecorder(base) as recorder:
        requests.get(base + "/ping", timeout=10)
    requests.get(base + "/ping", timeout=10)
    httpx.get(base + "/ping")
    assert len(recorder.problems) == 1  # only the request sent while it was active


def test_recorder_watches_httpx_sync_and_async(scripted: ScriptedServer) -> None:
    base = scripted.url
    scripted.script = answer(200, "application/x-ndjson", BAD_STREAM)

    async def read_async_stream() -> list[str]:
        async with httpx.AsyncClient() as client:
            async with client.stream("POST", base + PREDICT, content=request_body(params={"stream": True})) as resp:
                return [line async for line in resp.aiter_lines() if line]

    with ContractRecorder(base) as recorder:
        with httpx.Client() as client:
            assert client.post(base + PREDICT, content=request_body()).status_code == 200  # read whole
            with client.stream("POST", base + PREDICT, content=request_body()) as resp:
                assert len([line for line in resp.iter_lines() if line]) == 3
        assert len(asyncio.run(read_async_stream())) == 3
    assert len(recorder.problems) == 3 and all("['width']" in p for p in recorder.problems), recorder.problems

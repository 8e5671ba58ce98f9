"""Every request body the SDK builds follows docs/openapi.yaml.

The SDK (sync and asyncio clients, plain and streamed calls) talks to a local HTTP server that
records each body and answers like the real handler would: the parameters validated and
echoed by ``nst.api.parse_params`` itself, so the SDK gets a spec-conforming answer to parse.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from contract_server import Recorded, ScriptedServer
from nst_client import AsyncStyleTransferClient, BadRequestError, StyleTransferClient
from nst_http.errors import RequestError
from nst_http.params import parse_params
from openapi_contract import check_request, check_response
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "data"
CONTENT = DATA / "chelsea_128x96.png"
STARRY = DATA / "starry_night_64x64.png"
SCREAM_BYTES = (DATA / "the_scream_128x96.png").read_bytes()
PREDICT = "/predictions/nst"


def handler_like(request: Recorded) -> tuple[int, str, list[bytes]]:
    """Answer a stylize request as the handler does (without running the optimization)."""
    params = request.json().get("params")
    try:
        effective = parse_params(params)
    except RequestError as exc:
        error = {"error": {**exc.body()["error"], "request_id": "r-1"}}
        return exc.status, "application/json", [json.dumps(error).encode()]
    result = {
        "image": base64.b64encode(STARRY.read_bytes()).decode("ascii"), "format": "png", "width": 64,
        "height": 64, "iterations": effective["iterations"], "stopped": "iterations", "cache": "miss",
        "losses": {"content": 0.1, "style": 0.2, "tv": 0.01, "total": 2000.1},
        "timings_ms": {"decode": 1.0, "optimize": 20.5, "encode": 0.5, "total": 22.0},
        "params": effective, "weights": "random-seed-0", "device": "cpu", "request_id": "r-1",
    }
    if not effective["stream"]:
        return 200, "application/json", [json.dumps(result).encode()]
    progress = {"event": "progress", "iteration": effective["iterations"], "of": effective["iterations"],
                "losses": result["losses"], "elapsed_s": 0.02, "eta_s": 0.0}
    events = (progress, {"event": "result", **result})
    return 200, "application/x-ndjson", [json.dumps(e).encode() + b"\n" for e in events]


@pytest.fixture()
def scripted_server(scripted: ScriptedServer) -> ScriptedServer:
    """The contract tests' local HTTP server, answering every POST as the handler would (no TorchServe)."""
    scripted.script = handler_like
    return scripted


def mask(color: str, size: tuple[int, int] = (8, 8)) -> Image.Image:
    return Image.new("RGB", size, color)


#: A spread of stylize() arguments: every parameter, every image input form, sequences as tuples.
CALLS: dict[str, tuple[Any, dict[str, Any]]] = {
    "defaults only": (STARRY, {}),
    "every scalar": (STARRY, dict(
        image_size=64, iterations=3, content_weight=2, style_weight=1e3, tv_weight=0.5, init="noise", seed=7,
        output_format="jpeg", style_scale=0.5, color_control="histogram", pooling="avg", optimizer="adam",
        learning_rate=0.05, lbfgs_history=10, precision="bf16", mode="stylize", return_history=True,
        time_budget_s=30, style_loss="w2")),
    "layers and scales as tuples": (STARRY, dict(
        content_layers=("relu3_1",), style_layers=("relu1_1", "relu2_1"), style_layer_weights=(1, 3),
        scales=(32, 64), image_size=64, iterations=4)),
    "scales as a level count": (STARRY, dict(scales=2, image_size=64, iterations=2, color_control="luminance")),
    "three styles as path, bytes and PIL image": (
        [STARRY, SCREAM_BYTES, Image.open(STARRY)], dict(style_blend_weights=[1, 2, 1], image_size=64, iterations=1)),
    "one style in a list": ([STARRY], dict(iterations=1)),
    "spatial control": ([STARRY, SCREAM_BYTES], dict(
        content_mask=mask("black", (64, 48)), style_masks=[mask("black"), mask("white")], iterations=1)),
    "start image": (STARRY, dict(init="image", init_image=SCREAM_BYTES, iterations=1)),
    "reconstruction": (STARRY, dict(mode="reconstruct_content", iterations=1)),
    "float budget and weights": (STARRY, dict(time_budget_s=0.5, style_weight=0.0, content_weight=1.5, iterations=1)),
}


def assert_follows_the_spec(request: Recorded) -> dict[str, Any]:
    assert (request.method, request.path) == ("POST", PREDICT)
    assert request.headers["Content-Type"].startswith("application/json")
    assert check_request("POST", PREDICT, request.body) == []
    return request.json()


@pytest.mark.parametrize("name", CALLS)
def test_stylize_bodies_follow_the_spec(scripted_server: ScriptedServer, name: str) -> None:
    style, kwargs = CALLS[name]
    with StyleTransferClient(base_url=scripted_server.url, token="t", max_retries=0) as client:
        result = client.stylize(CONTENT, style, **kwargs)
    body = assert_follows_the_spec(scripted_server.requests[-1])
    sent = {k: v for k, v in kwargs.items() if k not in ("init_image", "content_mask", "style_masks")}
    assert body.get("params", {}) == json.loads(json.dumps(sent))  # sent as given, tuples as lists
    assert result.params == parse_params(body.get("params"))


@pytest.mark.parametrize("name", ["defaults only", "every scalar", "spatial control"])
def test_streamed_bodies_follow_the_spec(scripted_server: ScriptedServer, name: str) -> None:
    style, kwargs = CALLS[name]
    with StyleTransferClient(base_url=scripted_server.url, token="t", max_retries=0) as client:
        events = list(client.stylize_stream(CONTENT, style, progress_every=1, preview_every=2, **kwargs))
        client.stylize(CONTENT, style, progress=True, **kwargs)  # the progress bar streams too
    assert events and type(events[-1]).__name__ == "ResultEvent"
    for request in scripted_server.requests:
        params = assert_follows_the_spec(request)["params"]
        assert params["stream"] is True
    assert scripted_server.requests[0].json()["params"]["preview_every"] == 2


@pytest.mark.parametrize("name", ["every scalar", "three styles as path, bytes and PIL image", "spatial control"])
def test_async_client_bodies_follow_the_spec(scripted_server: ScriptedServer, name: str) -> None:
    style, kwargs = CALLS[name]

    async def calls() -> None:
        async with AsyncStyleTransferClient(base_url=scripted_server.url, token="t", max_retries=0) as client:
            await client.stylize(CONTENT, style, **kwargs)
            async for _ in await client.stylize_stream(CONTENT, style, progress_every=1, **kwargs):
                pass

    asyncio.run(calls())
    assert len(scripted_server.requests) == 2
    for request in scripted_server.requests:
        assert_follows_the_spec(request)


def test_the_fake_answers_follow_the_spec() -> None:
    """The stand-in answers above are themselves valid, so the SDK is fed the contract."""
    for kwargs in ({}, {"stream": True}, {"iterations": 0}):
        request = Recorded("POST", PREDICT, {}, json.dumps({"content": "x", "style": "x", "params": kwargs}).encode())
        status, content_type, chunks = handler_like(request)
        assert check_response("POST", PREDICT, status, content_type, b"".join(chunks)) == []


@pytest.mark.parametrize("kwargs, where", [
    ({"iterations": 0}, "['params']['iterations']"),
    ({"style_layers": ["relu9_9"]}, "['params']['style_layers'][0]"),
    ({"colour": 1}, "colour"),
    ({"scales": [8, 64]}, "['params']['scales']"),
    ({"style_loss": "w3"}, "['params']['style_loss']"),
])
def test_invalid_arguments_make_bodies_the_spec_refuses(scripted_server: ScriptedServer, kwargs: dict[str, Any],
                                                        where: str) -> None:
    # The SDK passes values through for the server to judge; the spec refuses the same bodies.
    with StyleTransferClient(base_url=scripted_server.url, token="t", max_retries=0) as client:
        with pytest.raises(BadRequestError):
            client.stylize(CONTENT, STARRY, **kwargs)
    problems = check_request("POST", PREDICT, scripted_server.requests[-1].body)
    assert any(where in p for p in problems), problems


def test_a_style_loss_the_server_refuses_surfaces_as_its_400(scripted_server: ScriptedServer) -> None:
    # The SDK checks no choices itself (its Literal types tell type checkers): the handler's
    # 400 naming params.style_loss is the BadRequestError, with its code and field.
    with StyleTransferClient(base_url=scripted_server.url, token="t", max_retries=0) as client:
        with pytest.raises(BadRequestError) as info:
            client.stylize(CONTENT, STARRY, style_loss="w3")  # type: ignore[arg-type]
    assert (info.value.status_code, info.value.code, info.value.field) == (400, "invalid_choice", "params.style_loss")
    assert "w3" in str(info.value)
    assert scripted_server.requests[-1].json()["params"] == {"style_loss": "w3"}  # sent once, as given
    assert len(scripted_server.requests) == 1

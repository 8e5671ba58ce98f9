"""AsyncStyleTransferClient against a real local HTTP server (tests/sdk/conftest.py's FakeServer):
it sends what the sync client sends and maps answers, retries and streams the same way."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from nst_client import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    AsyncStyleTransferClient,
    AuthenticationError,
    BadRequestError,
    KeyFileError,
    MissingDependencyError,
    ModelInfo,
    NotFoundError,
    ProgressEvent,
    ResultEvent,
    ServerError,
    ServiceUnavailableError,
    StyleTransferClient,
)

DATA = Path(__file__).parents[1] / "data"
CONTENT = DATA / "tubingen_64x64.png"
STYLE = DATA / "starry_night_64x64.png"
OUTPUT = DATA / "chelsea_128x96.png"
T = TypeVar("T")


def run(make: Callable[[AsyncStyleTransferClient], Awaitable[T]], **kwargs: Any) -> T:
    """``make(client)`` in a fresh event loop, with a client built (and closed) inside it."""
    async def main() -> T:
        async with AsyncStyleTransferClient(**kwargs) as client:
            return await make(client)

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def async_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the async client's retry delays instead of sleeping."""
    recorded: list[float] = []

    async def sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr("nst_client._async._sleep", sleep)
    for name in ("NST_MANAGEMENT_URL", "NST_MANAGEMENT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return recorded


# ------------------------------------------------------------------ same API, same requests


@pytest.mark.parametrize("method", ["__init__", "stylize", "stylize_stream"])
def test_signatures_match_the_sync_client(method):
    sync = inspect.signature(getattr(StyleTransferClient, method))
    aio = inspect.signature(getattr(AsyncStyleTransferClient, method))
    assert list(sync.parameters.values()) == list(aio.parameters.values())


def test_public_methods_match_the_sync_client():
    def public(cls: type) -> set:
        return {n for n in vars(cls) if not n.startswith("_")}

    assert public(AsyncStyleTransferClient) - {"aclose"} == public(StyleTransferClient) - {"close"}
    for name in ("stylize", "stylize_stream", "health", "info", "aclose"):
        assert inspect.iscoroutinefunction(getattr(AsyncStyleTransferClient, name)), name


def test_sends_the_same_request_as_the_sync_client(fake_server) -> None:
    kwargs: dict[str, Any] = dict(image_size=64, iterations=3, style_layers=("relu1_1",), seed=None,
                                  content_mask=CONTENT, style_masks=[CONTENT, OUTPUT], colour=1)
    StyleTransferClient(base_url=fake_server.url, token="tok").stylize(CONTENT, [STYLE, OUTPUT], **kwargs)
    result = run(lambda c: c.stylize(CONTENT, [STYLE, OUTPUT], **kwargs), base_url=fake_server.url, token="tok")
    sync, aio = fake_server.requests
    assert (aio.method, aio.path, aio.raw) == (sync.method, sync.path, sync.raw)
    for header in ("Authorization", "Content-Type", "Accept", "User-Agent"):
        assert aio.headers[header] == sync.headers[header], header
    assert aio.json["params"] == {"image_size": 64, "iterations": 3, "style_layers": ["relu1_1"], "colour": 1}
    assert result.image_bytes == OUTPUT.read_bytes() and result.width == 128


def test_concurrent_calls_on_one_client(fake_server, success_body):
    async def many(client: AsyncStyleTransferClient) -> list:
        return await asyncio.gather(*(client.stylize(CONTENT, STYLE, seed=i) for i in range(5)))

    fake_server.reply(200, success_body(), delay=0.2)
    results = run(many, base_url=fake_server.url)
    assert len(results) == 5 and all(r.width == 128 for r in results)
    assert sorted(r.json["params"]["seed"] for r in fake_server.requests) == [0, 1, 2, 3, 4]


def test_local_input_errors_fail_before_any_http(fake_server):
    with pytest.raises(FileNotFoundError):
        run(lambda c: c.stylize(DATA / "missing.png", STYLE), base_url=fake_server.url)
    with pytest.raises(ValueError, match="one mask per style"):
        run(lambda c: c.stylize_stream(CONTENT, STYLE, style_masks=[CONTENT, CONTENT]), base_url=fake_server.url)
    assert fake_server.requests == []


def test_health(fake_server):
    fake_server.reply(200, {"status": "Healthy"})
    assert run(lambda c: c.health(), base_url=fake_server.url, token="tok") == {"status": "Healthy"}
    assert (fake_server.requests[0].method, fake_server.requests[0].path) == ("GET", "/ping")


@pytest.mark.parametrize("status, body", [(200, "not json"), (200, [1, 2])])
def test_health_malformed_answer(fake_server, status, body):
    fake_server.reply(status, body)
    with pytest.raises(APIResponseValidationError):
        run(lambda c: c.health(), base_url=fake_server.url)


def test_missing_httpx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "httpx", None)  # import httpx now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'nst-client\[async\]'") as info:
        AsyncStyleTransferClient()
    assert isinstance(info.value, ImportError)


def test_importing_the_sdk_does_not_import_httpx():
    import subprocess

    code = "import sys, nst_client; assert 'httpx' not in sys.modules, 'httpx imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_repr_does_not_leak_the_token():
    assert "s3cret" not in repr(AsyncStyleTransferClient(token="s3cret"))


# ------------------------------------------------------------------ errors, retries, timeouts

ERRORS = [
    (400, {"error": {"code": "out_of_range", "message": "steps must be >= 1", "field": "params.iterations"}},
     BadRequestError),
    (400, {"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed"}, AuthenticationError),
    (404, {"code": 404, "type": "ModelNotFoundException", "message": "Model not found"}, NotFoundError),
    (503, {"code": 503, "type": "InternalServerException", "message": "Prediction failed"}, ServiceUnavailableError),
    (500, "boom", ServerError),
]


@pytest.mark.parametrize("status, body, cls", ERRORS, ids=[f"{e[0]}-{e[2].__name__}" for e in ERRORS])
def test_errors_map_exactly_as_in_the_sync_client(fake_server, async_sleeps, status, body, cls):
    fake_server.reply(status, body, headers={"X-Request-ID": "rid"})
    with pytest.raises(cls) as sync:
        StyleTransferClient(base_url=fake_server.url, max_retries=3).stylize(CONTENT, STYLE)
    with pytest.raises(cls) as aio:
        run(lambda c: c.stylize(CONTENT, STYLE), base_url=fake_server.url, max_retries=3)
    fields = ("status_code", "code", "field", "message", "request_id", "body")
    assert [getattr(aio.value, f) for f in fields] == [getattr(sync.value, f) for f in fields]
    assert str(aio.value) == str(sync.value)
    assert aio.value.response.status_code == status
    assert len(fake_server.requests) == 2 and async_sleeps == []  # none of these is retried


def test_retryable_answers_are_retried_with_backoff_and_retry_after(fake_server, async_sleeps):
    fake_server.reply(503, {"code": 503, "type": "ServiceUnavailableException", "message": "no worker"},
                 headers={"Retry-After": "2"})
    fake_server.reply(429, "busy")
    fake_server.reply(200)
    result = run(lambda c: c.stylize(CONTENT, STYLE), base_url=fake_server.url, max_retries=2)
    assert result.width == 128 and len(fake_server.requests) == 3
    assert async_sleeps[0] == 2.0 and 0.75 <= async_sleeps[1] <= 1.0
    assert fake_server.requests[0].raw == fake_server.requests[2].raw


def test_retries_are_bounded(fake_server, async_sleeps):
    fake_server.reply(502, "bad gateway")
    with pytest.raises(ServerError):
        run(lambda c: c.health(), base_url=fake_server.url, max_retries=2)
    assert len(fake_server.requests) == 3 and len(async_sleeps) == 2


def test_expired_key_rereads_the_key_file_and_retries_once(fake_server, tmp_path, write_key_file):
    key_file = write_key_file(tmp_path / "key_file.json", "old-key")

    async def main() -> dict[str, Any]:
        async with AsyncStyleTransferClient(base_url=fake_server.url, key_file=key_file, max_retries=0) as client:
            write_key_file(key_file, "new-key")
            return await client.health()

    fake_server.reply(400, {"code": 400, "type": "InvalidKeyException", "message": "expired"})
    fake_server.reply(200, {"status": "Healthy"})
    assert asyncio.run(main()) == {"status": "Healthy"}
    assert [r.headers["Authorization"] for r in fake_server.requests] == ["Bearer old-key", "Bearer new-key"]


def test_connection_refused_is_retried_then_raised(async_sleeps):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    with pytest.raises(APIConnectionError) as info:
        run(lambda c: c.health(), base_url=url, max_retries=2)
    assert not isinstance(info.value, APITimeoutError) and url in str(info.value)
    assert len(async_sleeps) == 2


def test_read_timeout_is_not_retried(fake_server, async_sleeps):
    fake_server.reply(200, delay=1.0)
    with pytest.raises(APITimeoutError, match="0.2 s"):
        run(lambda c: c.stylize(CONTENT, STYLE), base_url=fake_server.url, timeout=0.2, max_retries=2)
    assert len(fake_server.requests) == 1 and async_sleeps == []


def test_time_budget_bounds_the_read_timeout(fake_server, success_body):
    fake_server.reply(200, success_body(stopped="time_budget"), delay=0.5)
    # timeout=0.2 alone would expire; the budget cannot raise the timeout above the client's.
    with pytest.raises(APITimeoutError):
        run(lambda c: c.stylize(CONTENT, STYLE, time_budget_s=5), base_url=fake_server.url, timeout=0.2)
    assert fake_server.requests[-1].json["params"]["time_budget_s"] == 5


# ------------------------------------------------------------------------------ streaming


def _lines(success_body) -> list[dict[str, Any]]:
    progress = [{"event": "progress", "iteration": i, "of": 4, "losses": {"total": 1.0, "style": 0.5},
                 "elapsed_s": 0.1 * i, "eta_s": None if i == 0 else 0.1} for i in (0, 2, 4)]
    return [*progress, {"event": "result", **success_body(iterations=4)}]


def test_stream_events_equal_the_sync_client(fake_server, success_body):
    fake_server.stream(_lines(success_body), chunk_delay=0.01)
    sync = list(StyleTransferClient(base_url=fake_server.url).stylize_stream(CONTENT, STYLE, iterations=4, progress_every=2))

    async def collect(client: AsyncStyleTransferClient) -> list:
        return [e async for e in await client.stylize_stream(CONTENT, STYLE, iterations=4, progress_every=2)]

    aio = run(collect, base_url=fake_server.url)
    assert [type(e) for e in aio] == [ProgressEvent] * 3 + [ResultEvent]
    assert aio[:3] == sync[:3]  # frozen dataclasses: equal field by field
    assert aio[-1].result.image_bytes == sync[-1].result.image_bytes
    assert fake_server.requests[0].raw == fake_server.requests[1].raw
    assert "application/x-ndjson" in fake_server.requests[1].headers["Accept"]


def test_stream_error_event_and_early_close(fake_server, success_body):
    fake_server.stream([_lines(success_body)[0],
                   {"event": "error", "status": 507, "error": {"code": "out_of_memory", "message": "oom"}}])

    async def until_error(client: AsyncStyleTransferClient) -> list[Any]:
        seen: list[Any] = []
        with pytest.raises(ServerError) as info:
            async for event in await client.stylize_stream(CONTENT, STYLE):
                seen.append(event)
        assert (info.value.status_code, info.value.code) == (507, "out_of_memory")
        return seen

    assert [type(e) for e in run(until_error, base_url=fake_server.url)] == [ProgressEvent]

    fake_server.stream(_lines(success_body), chunk_delay=0.05)

    async def first_only(client: AsyncStyleTransferClient) -> Any:
        events = await client.stylize_stream(CONTENT, STYLE)
        first = await events.__anext__()
        await events.aclose()  # closes the connection before the result
        return first

    assert isinstance(run(first_only, base_url=fake_server.url), ProgressEvent)


def test_stalled_stream_times_out(fake_server, success_body):
    fake_server.stream(_lines(success_body), chunk_delay=1.0)

    async def collect(client: AsyncStyleTransferClient) -> list:
        return [e async for e in await client.stylize_stream(CONTENT, STYLE)]

    with pytest.raises(APITimeoutError, match="stalled"):
        run(collect, base_url=fake_server.url, timeout=0.3)


def test_error_before_streaming_raises_at_the_call(fake_server):
    fake_server.reply(400, {"error": {"code": "out_of_range", "message": "no", "field": "params.progress_every"}})
    with pytest.raises(BadRequestError) as info:
        run(lambda c: c.stylize_stream(CONTENT, STYLE, progress_every=0), base_url=fake_server.url)
    assert info.value.field == "params.progress_every"


def test_progress_bar(fake_server, success_body, capsys):
    fake_server.stream(_lines(success_body))
    result = run(lambda c: c.stylize(CONTENT, STYLE, iterations=4, progress=True), base_url=fake_server.url)
    assert result.iterations == 4
    assert fake_server.requests[0].json["params"]["stream"] is True
    assert "4/4" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- info

DESCRIPTION = [{
    "modelName": "nst", "modelVersion": "1.0",
    "workers": [{"id": "9000", "status": "READY", "pid": 42, "gpu": False}],
    "customizedMetadata": json.dumps({"weights": {"source": "random", "label": "random-seed-0"},
                                      "device": "cpu", "limits": {"max_iterations": 2000}, "defaults": {"iterations": 300}}),
}]


def test_info_asks_the_management_api_with_the_management_key(fake_server, tmp_path, write_key_file):
    key_file = write_key_file(tmp_path / "key_file.json", "k")
    fake_server.reply(200, DESCRIPTION)
    sync = StyleTransferClient(base_url="http://127.0.0.1:1", management_url=fake_server.url, key_file=key_file).info()
    aio = run(lambda c: c.info(), base_url="http://127.0.0.1:1", management_url=fake_server.url, key_file=key_file)
    for info in (sync, aio):
        assert isinstance(info, ModelInfo)
        assert (info.model, info.version, info.device, info.ready_workers) == ("nst", "1.0", "cpu", 1)
        assert info.weights["label"] == "random-seed-0" and info.defaults["iterations"] == 300
    assert sync == aio
    for req in fake_server.requests:
        assert (req.method, req.path) == ("GET", "/models/nst?customized=true")
        assert req.headers["Authorization"] == "Bearer MGMT-k"


def test_info_management_url_defaults_and_env(monkeypatch):
    assert AsyncStyleTransferClient(base_url="http://10.0.0.5:8080").management_url == "http://10.0.0.5:8081"
    assert StyleTransferClient(base_url="http://10.0.0.5:8080").management_url == "http://10.0.0.5:8081"
    monkeypatch.setenv("NST_MANAGEMENT_URL", "http://mgmt:9001/")
    assert AsyncStyleTransferClient().management_url == "http://mgmt:9001"
    assert StyleTransferClient(management_url="http://x:1").management_url == "http://x:1"


def test_info_errors(fake_server, tmp_path):
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"inference": {"key": "only-inference"}}))
    # No management key: reported by info(), not by the constructor (stylize needs none).
    with pytest.raises(KeyFileError, match="management"):
        run(lambda c: c.info(), base_url=fake_server.url, management_url=fake_server.url, key_file=key_file)
    fake_server.reply(404, {"code": 404, "type": "ModelNotFoundException", "message": "Model not found: nst"})
    fake_server.reply(200, {"not": "a list"})
    with pytest.raises(NotFoundError):
        run(lambda c: c.info(), management_url=fake_server.url, management_token="m")
    with pytest.raises(APIResponseValidationError):
        run(lambda c: c.info(), management_url=fake_server.url, management_token="m")
    assert [r.headers["Authorization"] for r in fake_server.requests] == ["Bearer m", "Bearer m"]

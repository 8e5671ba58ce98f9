"""Status-code -> exception mapping, retries, connection errors and timeouts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from nst_client import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    NSTError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    StyleTransferClient,
)

DATA = Path(__file__).parents[1] / "data"
CONTENT = DATA / "tubingen_64x64.png"
STYLE = DATA / "starry_night_64x64.png"

INVALID_KEY = {"code": 400, "type": "InvalidKeyException",
               "message": "Token Authorization failed. Token either incorrect, expired, or not provided correctly"}


def ours(code, message, field=None):
    return {"error": {"code": code, "message": message, "field": field}}


CASES = [
    # status, body, expected class, expected .code, expected .field
    (400, ours("invalid_param", "steps must be >= 1", "params.iterations"),
     BadRequestError, "invalid_param", "params.iterations"),
    (400, INVALID_KEY, AuthenticationError, "InvalidKeyException", None),
    (401, ours("unauthorized", "no token"), AuthenticationError, "unauthorized", None),
    (403, "Forbidden", AuthenticationError, None, None),
    (404, {"code": 404, "type": "ModelNotFoundException", "message": "Model not found: foo"},
     NotFoundError, "ModelNotFoundException", None),
    (413, {"code": 413, "type": "RequestEntityTooLarge", "message": "request too large"},
     PayloadTooLargeError, "RequestEntityTooLarge", None),
    (422, ours("bad_image", "content is not an image", "content"), BadRequestError, "bad_image", "content"),
    (429, ours("busy", "slow down"), RateLimitError, "busy", None),
    (500, ours("internal", "boom"), ServerError, "internal", None),
    (503, {"code": 503, "type": "ServiceUnavailableException",
           "message": 'Model "nst" has no worker to serve inference request.'},
     ServiceUnavailableError, "ServiceUnavailableException", None),
    (503, {"code": 503, "type": "InternalServerException", "message": "Prediction failed"},
     ServiceUnavailableError, "InternalServerException", None),
    (507, {"code": 507, "type": "WorkerOutOfMemoryException", "message": "out of memory"},
     ServerError, "WorkerOutOfMemoryException", None),
    (418, "I'm a teapot", APIStatusError, None, None),
]


@pytest.mark.parametrize("status, body, cls, code, field", CASES,
                         ids=[f"{c[0]}-{c[2].__name__}-{c[3]}" for c in CASES])
def test_status_maps_to_error_class(fake_server, status, body, cls, code, field):
    fake_server.reply(status, body)
    client = StyleTransferClient(base_url=fake_server.url, max_retries=0)
    with pytest.raises(cls) as info:
        client.stylize(CONTENT, STYLE)
    err = info.value
    assert type(err) is cls
    assert isinstance(err, APIStatusError) and isinstance(err, NSTError)
    assert (err.status_code, err.code, err.field) == (status, code, field)
    assert err.response is not None and err.response.status_code == status
    assert err.body == body
    assert err.message
    text = str(err)
    assert str(status) in text and err.message in text
    for part in (code, field):
        if part:
            assert part in text
    assert len(fake_server.requests) == 1


def test_invalid_key_is_not_a_bad_request(fake_server):
    fake_server.reply(400, INVALID_KEY)
    with pytest.raises(AuthenticationError) as info:
        StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE)
    assert not isinstance(info.value, BadRequestError)
    assert "Token Authorization failed" in str(info.value)


def test_request_id_from_body_or_header(fake_server):
    fake_server.reply(400, {**ours("x", "bad"), "request_id": "req-1"})
    fake_server.reply(500, ours("y", "worse"), headers={"X-Request-ID": "req-2"})
    client = StyleTransferClient(base_url=fake_server.url)
    with pytest.raises(BadRequestError) as a:
        client.stylize(CONTENT, STYLE)
    with pytest.raises(ServerError) as b:
        client.stylize(CONTENT, STYLE)
    assert (a.value.request_id, b.value.request_id) == ("req-1", "req-2")
    assert "req-1" in str(a.value)


def test_str_of_error_with_field(fake_server):
    fake_server.reply(400, ours("invalid_param", "steps must be >= 1", "params.iterations"))
    with pytest.raises(BadRequestError) as info:
        StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE, iterations=0)
    assert str(info.value) == "HTTP 400 invalid_param (field params.iterations): steps must be >= 1"


# --------------------------------------------------------------------------- retries


def test_503_then_200_succeeds_after_one_retry(fake_server, sleeps):
    fake_server.reply(503, {"code": 503, "type": "ServiceUnavailableException", "message": "no worker"})
    fake_server.reply(200)
    result = StyleTransferClient(base_url=fake_server.url, max_retries=2).stylize(CONTENT, STYLE)
    assert result.width == 128
    assert len(fake_server.requests) == 2
    assert fake_server.requests[0].json == fake_server.requests[1].json
    assert len(sleeps) == 1


def test_torchserve_prediction_failed_is_not_retried(fake_server, sleeps):
    fake_server.reply(503, {"code": 503, "type": "InternalServerException", "message": "Prediction failed"})
    fake_server.reply(200)
    with pytest.raises(APIStatusError) as info:
        StyleTransferClient(base_url=fake_server.url, max_retries=2).stylize(CONTENT, STYLE)
    assert info.value.status_code == 503
    assert len(fake_server.requests) == 1 and sleeps == []


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_statuses_exhaust_retries_with_capped_backoff(fake_server, sleeps, status):
    fake_server.reply(status, ours("busy", "try later"))
    with pytest.raises(APIStatusError) as info:
        StyleTransferClient(base_url=fake_server.url, max_retries=3).stylize(CONTENT, STYLE)
    assert info.value.status_code == status
    assert len(fake_server.requests) == 4
    # base 0.5 s doubling, jitter removes up to 25%
    for delay, nominal in zip(sleeps, [0.5, 1.0, 2.0]):
        assert 0.75 * nominal <= delay <= nominal
    assert len(sleeps) == 3


def test_backoff_is_capped(fake_server, sleeps):
    fake_server.reply(503, "busy")
    with pytest.raises(ServiceUnavailableError):
        StyleTransferClient(base_url=fake_server.url, max_retries=8).stylize(CONTENT, STYLE)
    assert len(sleeps) == 8 and max(sleeps) <= 8.0 and sleeps[-1] >= 6.0


def test_retry_after_is_honoured(fake_server, sleeps):
    fake_server.reply(503, "busy", headers={"Retry-After": "3"})
    fake_server.reply(429, "busy", headers={"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"})  # past date
    fake_server.reply(200)
    StyleTransferClient(base_url=fake_server.url, max_retries=2).stylize(CONTENT, STYLE)
    assert sleeps[0] == 3.0
    assert 0.75 <= sleeps[1] <= 1.0  # unusable Retry-After -> normal backoff


def test_huge_retry_after_falls_back_to_backoff(fake_server, sleeps):
    fake_server.reply(503, "busy", headers={"Retry-After": "3600"})
    fake_server.reply(200)
    StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE)
    assert 0.375 <= sleeps[0] <= 0.5


@pytest.mark.parametrize("status, body", [(400, ours("invalid_param", "nope")), (400, INVALID_KEY),
                                          (404, "nope"), (413, "big"), (500, "boom"), (507, "oom")])
def test_non_retryable_statuses_are_sent_once(fake_server, sleeps, status, body):
    fake_server.reply(status, body)
    with pytest.raises(APIStatusError):
        StyleTransferClient(base_url=fake_server.url, max_retries=5).stylize(CONTENT, STYLE)
    assert len(fake_server.requests) == 1
    assert sleeps == []


def test_max_retries_zero_disables_retry(fake_server, sleeps):
    fake_server.reply(503, "busy")
    with pytest.raises(ServiceUnavailableError):
        StyleTransferClient(base_url=fake_server.url, max_retries=0).stylize(CONTENT, STYLE)
    assert len(fake_server.requests) == 1 and sleeps == []


# --------------------------------------------------------------------- transport errors


@pytest.fixture
def closed_port_url():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def test_connection_refused_is_connection_error_and_retried(closed_port_url, sleeps):
    with pytest.raises(APIConnectionError) as info:
        StyleTransferClient(base_url=closed_port_url, max_retries=2).stylize(CONTENT, STYLE)
    assert not isinstance(info.value, APITimeoutError)
    assert closed_port_url in str(info.value)
    assert len(sleeps) == 2


def test_read_timeout_is_timeout_error_and_not_retried(fake_server, sleeps):
    fake_server.reply(200, delay=1.0)
    client = StyleTransferClient(base_url=fake_server.url, timeout=0.2, max_retries=2)
    with pytest.raises(APITimeoutError) as info:
        client.stylize(CONTENT, STYLE)
    assert isinstance(info.value, APIConnectionError)
    assert "0.2 s" in str(info.value)
    assert len(fake_server.requests) == 1 and sleeps == []


def test_torchserve_worker_died_is_retried(fake_server, sleeps):
    fake_server.reply(507, {"code": 507, "type": "InternalServerException", "message": "Worker died."})
    fake_server.reply(200)
    StyleTransferClient(base_url=fake_server.url, max_retries=1).stylize(CONTENT, STYLE)
    assert len(fake_server.requests) == 2


def test_our_out_of_memory_is_not_retried(fake_server, sleeps):
    fake_server.reply(507, ours("out_of_memory", "the GPU ran out of memory"))
    fake_server.reply(200)
    with pytest.raises(ServerError):
        StyleTransferClient(base_url=fake_server.url, max_retries=1).stylize(CONTENT, STYLE)
    assert len(fake_server.requests) == 1

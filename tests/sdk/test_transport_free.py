"""The transport-free rooms that both clients share: request building, error mapping, the retry
policy, stream decoding and the model description. No network here."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import pytest
from nst_client import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    KeyFileError,
    ModelInfo,
    NotFoundError,
    PreviewEvent,
    ProgressEvent,
    RateLimitError,
    ResultEvent,
    ServerError,
    ServiceUnavailableError,
    _auth,
    _base_client,
    _constants,
    _exceptions,
    _params,
    _request,
    _results,
)
from nst_client._auth import Credentials
from nst_client._exceptions import Failure
from nst_client._retry import Attempts
from nst_client._stream import EventDecoder

DATA = Path(__file__).parents[1] / "data"
CONTENT = DATA / "tubingen_64x64.png"
STYLE = DATA / "starry_night_64x64.png"
NDJSON = {"Content-Type": "application/x-ndjson"}


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


# ------------------------------------------------------------------------ request building


def test_stylize_body_drops_none_turns_tuples_into_lists_and_encodes_images():
    data, params = _request.stylize_body(
        CONTENT, (STYLE, STYLE.read_bytes()), style_masks=[CONTENT, CONTENT],
        params={"iterations": 3, "seed": None, "style_layers": ("relu1_1", "relu2_1"), "scales": range(2)})
    body = json.loads(data)
    assert params == {"iterations": 3, "style_layers": ["relu1_1", "relu2_1"], "scales": [0, 1]}
    assert body["params"] == params
    assert body["content"] == b64(CONTENT)
    assert body["style"] == [b64(STYLE), b64(STYLE)]  # a tuple is sent as a JSON list
    assert body["style_masks"] == [b64(CONTENT)] * 2
    assert "init_image" not in body and "content_mask" not in body


def test_single_style_is_a_string_and_image_fields_are_top_level():
    data, _ = _request.stylize_body(CONTENT, STYLE, init_image=STYLE, content_mask=CONTENT, params={})
    body = json.loads(data)
    assert body["style"] == b64(STYLE) and body["params"] == {}
    assert (body["init_image"], body["content_mask"]) == (b64(STYLE), b64(CONTENT))


@pytest.mark.parametrize("kwargs, exc, text", [
    ({"style": []}, ValueError, "at least one style"),
    ({"style_masks": [CONTENT]}, ValueError, "1 mask(s) but there are 2"),
    ({"style_masks": CONTENT}, TypeError, "list or tuple"),
])
def test_structural_errors_come_before_any_file_is_read(kwargs, exc, text) -> None:
    args: dict[str, Any] = {"style": [DATA / "missing.png", DATA / "missing.png"], **kwargs}
    with pytest.raises(exc, match=text.replace("(", r"\(").replace(")", r"\)")):
        _request.stylize_body(DATA / "missing.png", args.pop("style"), params={}, **args)


def test_non_json_params_are_a_value_error():
    with pytest.raises(ValueError, match="not valid JSON"):
        _request.stylize_body(CONTENT, STYLE, params={"style_scale": math.nan})


def test_stream_params_and_read_timeout():
    assert _request.stream_params({"iterations": 2}, 1, None) == {
        "iterations": 2, "stream": True, "progress_every": 1, "preview_every": None}
    assert _request.read_timeout_for({}, 900.0) == 900.0
    assert _request.read_timeout_for({"time_budget_s": 5}, 900.0) == 5 + _constants.DEADLINE_READ_MARGIN
    assert _request.read_timeout_for({"time_budget_s": 5000}, 900.0) == 900.0
    assert _request.read_timeout_for({"time_budget_s": True}, 900.0) == 900.0  # not a number of seconds


def test_pick_names_every_stylize_parameter_of_the_sync_signature():
    import inspect

    from nst_client import StyleTransferClient

    named = [p.name for p in inspect.signature(StyleTransferClient.stylize).parameters.values()
             if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "progress"]
    assert sorted(named) == sorted(_params.STYLIZE_PARAMS + _params.STYLIZE_IMAGES)


def test_request_headers():
    creds = Credentials("tok", None)
    assert _request.request_headers(creds) == {
        "User-Agent": _request.USER_AGENT, "Accept": "application/json", "Authorization": "Bearer tok"}
    streamed = _request.request_headers(Credentials(None, None), json_body=True, stream=True)
    assert "Authorization" not in streamed
    assert streamed["Content-Type"] == "application/json"
    assert streamed["Accept"] == "application/x-ndjson, application/json"


@pytest.mark.parametrize("base, management", [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8081"),
    ("https://nst.example.com:8443/prefix/", "https://nst.example.com:8081"),
    ("http://nst.example.com", "http://nst.example.com:8081"),
    ("http://[::1]:8080", "http://[::1]:8081"),
])
def test_management_url_is_the_inference_host_on_8081(base, management):
    assert _base_client.management_url_for(base) == management


# -------------------------------------------------------------------------- credentials


def test_management_credentials_from_key_file_env_and_argument(tmp_path, write_key_file, monkeypatch):
    key_file = write_key_file(tmp_path / "key_file.json", "k1")
    creds = Credentials.management(None, key_file)
    assert (creds.token, creds.key_file, creds.section) == ("MGMT-k1", key_file, "management")
    monkeypatch.setenv("NST_MANAGEMENT_TOKEN", "from-env")
    assert Credentials.management(None, key_file).token == "from-env"
    assert Credentials.management("arg", key_file).token == "arg"
    monkeypatch.setenv("NST_TOKEN", "inference-env")  # never used for the management API
    monkeypatch.delenv("NST_MANAGEMENT_TOKEN")
    assert Credentials.management(None, key_file).token == "MGMT-k1"


def test_a_missing_management_key_fails_only_when_asked_for(tmp_path):
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"inference": {"key": "inf"}}))
    assert Credentials.inference(None, key_file).token == "inf"
    management = _auth.ManagementCredentials(None, key_file)  # no error yet
    with pytest.raises(KeyFileError, match=r'\["management"\]\["key"\]'):
        management.get()
    missing = _auth.ManagementCredentials("tok", tmp_path / "nope.json")
    assert missing.get().token == "tok"  # the argument wins; the file is never read


def test_reread_picks_up_a_changed_key_only(tmp_path, write_key_file):
    key_file = write_key_file(tmp_path / "key_file.json", "old")
    creds = Credentials.inference(None, key_file)
    assert creds.reread() is False  # unchanged
    write_key_file(key_file, "new")
    assert creds.reread() is True and creds.token == "new"
    key_file.write_text("not json")
    assert creds.reread() is False and creds.token == "new"
    assert Credentials("explicit", None).reread() is False


# --------------------------------------------------------------------------- error mapping


def ours(code: str, message: str, field: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


@pytest.mark.parametrize("status, body, cls, code, field", [
    (400, ours("out_of_range", "steps must be >= 1", "params.iterations"), BadRequestError, "out_of_range", "params.iterations"),
    (400, {"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed"},
     AuthenticationError, "InvalidKeyException", None),
    (404, {"code": 404, "type": "ModelNotFoundException", "message": "Model not found"},
     NotFoundError, "ModelNotFoundException", None),
    (429, "slow down", RateLimitError, None, None),
    (503, {"code": 503, "type": "ServiceUnavailableException", "message": "no worker"},
     ServiceUnavailableError, "ServiceUnavailableException", None),
    (507, ours("out_of_memory", "oom"), ServerError, "out_of_memory", None),
    (418, "teapot", APIStatusError, None, None),
])
def test_status_error_maps_the_answer(status, body, cls, code, field):
    content = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
    err = _exceptions.status_error(status, {"X-Request-ID": "rid"}, content, "Reason", response="RESP")
    assert type(err) is cls
    assert (err.status_code, err.code, err.field, err.body, err.response) == (status, code, field, body, "RESP")
    assert err.request_id == "rid"


def test_status_error_without_body_uses_the_reason_and_cuts_long_text():
    assert _exceptions.status_error(502, {}, b"", "Bad Gateway").message == "Bad Gateway"
    err = _exceptions.status_error(500, {}, b"x" * 5000, "Internal Server Error")
    assert err.body == "x" * _constants.MAX_ERROR_TEXT


@pytest.mark.parametrize("event, cls, status", [
    ({"event": "error", "error": {"code": "internal", "message": "boom"}}, ServerError, 500),
    ({"event": "error", "status": 400, "error": {"code": "bad", "message": "no", "field": "params.x"}},
     BadRequestError, 400),
    ({"event": "error", "status": 200, "error": {"message": "odd"}}, ServerError, 500),
])
def test_stream_error_event_maps_like_a_status(event, cls, status):
    err = _exceptions.stream_error(event)
    assert type(err) is cls and err.status_code == status


@pytest.mark.parametrize("kind, cls, text", [
    (Failure.CONNECT_TIMEOUT, APITimeoutError, "timed out after 3 s"),
    (Failure.READ_TIMEOUT, APITimeoutError, "within 0.5 s"),
    (Failure.CONNECT, APIConnectionError, "Could not connect to http://h/p: refused"),
    (Failure.OTHER, APIConnectionError, "Request to http://h/p failed: refused"),
])
def test_transport_errors(kind, cls, text):
    err = _exceptions.transport_error(kind, "http://h/p", "refused", connect_timeout=3, read_timeout=0.5)
    assert type(err) is cls and text in str(err) and err.url == "http://h/p"


# ---------------------------------------------------------------------------- retry policy


class _Resp:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


def _status(status: int, body: Any = "busy", headers: dict[str, str] | None = None) -> APIStatusError:
    content = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
    return _exceptions.status_error(status, headers or {}, content, None, response=_Resp(headers or {}))


def test_attempts_back_off_exponentially_then_raise():
    attempts = Attempts(3, Credentials(None, None))
    delays = [attempts.after_status(_status(503)) for _ in range(3)]
    for delay, nominal in zip(delays, [0.5, 1.0, 2.0]):
        assert (1 - _constants.RETRY_JITTER) * nominal <= delay <= nominal
    with pytest.raises(ServiceUnavailableError):
        attempts.after_status(_status(503))


def test_attempts_honour_retry_after_within_bounds():
    attempts = Attempts(5, Credentials(None, None))
    assert attempts.after_status(_status(429, headers={"Retry-After": "3"})) == 3.0
    assert attempts.after_status(_status(429, headers={"Retry-After": "3600"})) <= 1.0  # too long: backoff
    assert attempts.after_status(_status(429, headers={"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"})) <= 2.0


@pytest.mark.parametrize("error", [
    _status(400, ours("bad", "no")), _status(500, "boom"), _status(404, "nope"),
    _status(503, {"code": 503, "type": "InternalServerException", "message": "Prediction failed"}),
])
def test_attempts_raise_non_retryable_answers_at_once(error):
    with pytest.raises(type(error)):
        Attempts(5, Credentials(None, None)).after_status(error)


def test_worker_died_is_retried():
    died = _status(507, {"code": 507, "type": "InternalServerException", "message": "Worker died."})
    assert Attempts(1, Credentials(None, None)).after_status(died) > 0


def test_auth_error_rereads_the_key_file_once_without_counting_a_retry(tmp_path, write_key_file):
    key_file = write_key_file(tmp_path / "key_file.json", "old")
    creds = Credentials.inference(None, key_file)
    attempts = Attempts(0, creds)
    invalid = _status(400, {"code": 400, "type": "InvalidKeyException", "message": "expired"})
    write_key_file(key_file, "new")
    assert attempts.after_status(invalid) == 0.0 and creds.token == "new" and attempts.retries == 0
    write_key_file(key_file, "newer")
    with pytest.raises(AuthenticationError):  # only once per call
        attempts.after_status(invalid)


def test_transport_failures_connect_retried_read_timeout_never():
    attempts = Attempts(1, Credentials(None, None))
    cause = OSError("refused")
    refused = _exceptions.transport_error(Failure.CONNECT, "http://h", cause)
    assert attempts.after_failure(Failure.CONNECT, refused, cause) > 0
    with pytest.raises(APIConnectionError) as info:
        attempts.after_failure(Failure.CONNECT, refused, cause)  # retries used up
    assert info.value.__cause__ is cause
    timeout = _exceptions.transport_error(Failure.READ_TIMEOUT, "http://h", read_timeout=1)
    with pytest.raises(APITimeoutError):
        Attempts(5, Credentials(None, None)).after_failure(Failure.READ_TIMEOUT, timeout, cause)


# ------------------------------------------------------------------------ stream decoding


def _event_lines(success_body) -> list[dict[str, Any]]:
    progress = {"event": "progress", "iteration": 0, "of": 2, "losses": {"total": 1.0},
                "elapsed_s": 0.0, "eta_s": None}
    jpeg = base64.b64encode((DATA / "tubingen_64x64.png").read_bytes()).decode()
    preview = {"event": "preview", "iteration": 1, "width": 64, "height": 64, "image": jpeg}
    return [progress, {"event": "from-the-future"}, preview, {"event": "result", **success_body(iterations=2)}]


def _decode(decoder: EventDecoder, chunks: list[bytes]) -> list[Any]:
    events = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


@pytest.mark.parametrize("chunking", ["whole", "bytewise", "crlf"])
def test_decoder_gives_the_same_events_for_any_chunking(success_body, chunking):
    lines = _event_lines(success_body)
    sep = "\r\n" if chunking == "crlf" else "\n"
    data = ("\n" + sep.join(json.dumps(obj) for obj in lines) + sep + "\n").encode()
    chunks = [data[i:i + 1] for i in range(len(data))] if chunking == "bytewise" else [data]
    events = _decode(EventDecoder(NDJSON), chunks)
    assert [type(e) for e in events] == [ProgressEvent, PreviewEvent, ResultEvent]  # unknown event skipped
    assert events[0].eta_s is None and events[1].image_bytes == (DATA / "tubingen_64x64.png").read_bytes()
    assert events[2].result.iterations == 2


def test_decoder_stops_at_the_result_and_reads_a_last_line_without_newline(success_body):
    result = json.dumps({"event": "result", **success_body()}).encode()
    decoder = EventDecoder(NDJSON)
    assert decoder.feed(result) == []  # the line is not complete yet
    assert [type(e) for e in decoder.close()] == [ResultEvent]
    done = EventDecoder(NDJSON)
    assert len(done.feed(result + b"\n")) == 1 and done.done
    assert done.feed(b"garbage that is never parsed\n") == [] and done.close() == []


def test_plain_json_answer_is_one_result(success_body):
    data = json.dumps(success_body()).encode()
    decoder = EventDecoder({"Content-Type": "application/json; charset=utf-8"})
    events = _decode(decoder, [data[:10], data[10:]])
    assert [type(e) for e in events] == [ResultEvent] and events[0].result.width == 128


@pytest.mark.parametrize("data, text", [
    (b'{"event": "progress", "iteration": 1}\n', "Malformed 'progress' event"),
    (b"not json\n", "not JSON"),
    (b"[1, 2]\n", "not a JSON object"),
    (b'{"event": "progress", "iteration": 0, "of": 1, "losses": {}, "elapsed_s": 0}\n', "without a result"),
])
def test_decoder_rejects_malformed_streams(data, text):
    with pytest.raises(APIResponseValidationError, match=text):
        _decode(EventDecoder(NDJSON), [data])


def test_decoder_raises_the_error_event():
    line = json.dumps({"event": "error", "status": 507, "error": {"code": "out_of_memory", "message": "oom"}})
    with pytest.raises(ServerError) as info:
        EventDecoder(NDJSON, response="RESP").feed(line.encode() + b"\n")
    assert (info.value.status_code, info.value.code, info.value.response) == (507, "out_of_memory", "RESP")


# ----------------------------------------------------------------------- model description

META = {"weights": {"source": "random", "label": "random-seed-0", "sha256": "ab", "network": "vgg19"},
        "layers": ["conv1_1", "relu1_1"], "device": "cpu", "limits": {"max_image_side": 1024}, "defaults": {"iterations": 300}}


def _description(meta: Any) -> bytes:
    return json.dumps([{
        "modelName": "nst", "modelVersion": "1.0", "batchSize": 1,
        "workers": [{"id": "9000", "status": "READY", "pid": 1}, {"id": "9001", "status": "UNLOADING"}],
        "customizedMetadata": meta,
    }]).encode()


@pytest.mark.parametrize("meta", [json.dumps(META), META], ids=["json-string", "object"])
def test_model_info_parses_the_customized_description(meta):
    info = _results.model_info(_description(meta), {})
    assert isinstance(info, ModelInfo)
    assert (info.model, info.version, info.device) == ("nst", "1.0", "cpu")
    assert info.weights["label"] == "random-seed-0" and info.limits == {"max_image_side": 1024}
    assert info.defaults == {"iterations": 300} and info.metadata == META
    assert info.ready_workers == 1 and len(info.workers) == 2
    assert info.raw["batchSize"] == 1
    assert info.layers == ["conv1_1", "relu1_1"]
    assert json.loads(json.dumps(info.to_dict()))["weights"]["source"] == "random"


def test_model_info_without_customized_metadata_is_empty():
    info = _results.model_info(_description(None), {})
    assert (info.weights, info.device, info.limits, info.defaults, info.metadata) == ({}, None, {}, {}, {})
    assert info.layers == []


@pytest.mark.parametrize("content", [
    b"not json", b"[]", b"{}", _description("{not json"), _description([1, 2]),
    json.dumps([{"modelName": "nst", "workers": "many"}]).encode(),
])
def test_malformed_model_description(content):
    with pytest.raises(APIResponseValidationError):
        _results.model_info(content, {"Content-Type": "application/json"})

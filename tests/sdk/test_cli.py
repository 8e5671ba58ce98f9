"""The nst-client command line, in-process and as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nst_client import cli
from PIL import Image

DATA = Path(__file__).parents[1] / "data"
CONTENT = DATA / "tubingen_64x64.png"
STYLE = DATA / "starry_night_64x64.png"
OUTPUT = DATA / "chelsea_128x96.png"


def test_stylize_writes_output_and_sends_every_flag(fake_server, tmp_path, capsys):
    out = tmp_path / "out.png"
    rc = cli.main([
        "stylize", str(CONTENT), str(STYLE), "-o", str(out), "--url", fake_server.url, "--token", "tok",
        "--image-size", "32", "--iterations", "3", "--content-weight", "1", "--style-weight", "1e6",
        "--tv-weight", "0", "--init", "noise", "--seed", "7", "--output-format", "png",
        "--param", "future_knob=[1, 2]", "--param", "label=hello",
    ])
    assert rc == 0
    assert out.read_bytes() == OUTPUT.read_bytes()
    req = fake_server.requests[0]
    assert req.path == "/predictions/nst"
    assert req.headers["Authorization"] == "Bearer tok"
    assert req.json["params"] == {
        "image_size": 32, "iterations": 3, "content_weight": 1.0, "style_weight": 1e6, "tv_weight": 0.0,
        "init": "noise", "seed": 7, "output_format": "png", "future_knob": [1, 2], "label": "hello",
    }
    summary = capsys.readouterr().out
    for part in ("128x96", "iterations=7", "total=3.875", "weights=random-seed-0", "device=cpu"):
        assert part in summary


@pytest.mark.parametrize("stopped, note", [
    ("iterations", None), (None, None), ("time_budget", " (time budget spent)"),
    ("cancelled", " (cancelled: the image so far)"), ("diverged", " (the loss diverged; the best image so far)"),
    ("tired", " (stopped: tired)"),  # a reason this client does not know yet
])
@pytest.mark.parametrize("command", ["stylize", "wait"])
def test_the_summary_says_why_a_run_ended_early(fake_server, tmp_path, capsys, success_body, job, command, stopped,
                                                note):
    if command == "wait":
        fake_server.reply(200, job("succeeded", iteration=7, of=7))
    fake_server.reply(200, success_body(stopped=stopped))
    args = ["stylize", str(CONTENT), str(STYLE)] if command == "stylize" else ["wait", "j-1"]
    assert cli.main([*args, "-o", str(tmp_path / "o.png"), "--url", fake_server.url]) == 0
    assert "iterations=7" + (note or " losses[") in capsys.readouterr().out


def test_stylize_without_flags_sends_no_params(fake_server, tmp_path):
    assert cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--url", fake_server.url]) == 0
    assert fake_server.requests[0].json["params"] == {}
    assert "Authorization" not in fake_server.requests[0].headers


@pytest.mark.parametrize(
    "status, body, code",
    [
        (400, {"error": {"code": "invalid_param", "message": "steps must be >= 1", "field": "params.iterations"}},
         cli.EXIT_REJECTED),
        (400, {"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed."}, cli.EXIT_AUTH),
        (404, {"code": 404, "type": "ModelNotFoundException", "message": "Model not found: nst"},
         cli.EXIT_NOT_FOUND),
        (413, {"code": 413, "type": "RequestTooLarge", "message": "body too large"}, cli.EXIT_REJECTED),
        (429, {"code": 429, "type": "TooManyRequests", "message": "slow down"}, cli.EXIT_RATE_LIMITED),
        (503, {"code": 503, "type": "InternalServerException", "message": "Prediction failed"}, cli.EXIT_SERVER),
        (507, {"error": {"code": "out_of_memory", "message": "out of memory", "field": None}}, cli.EXIT_SERVER),
    ],
)
def test_stylize_error_exit_codes(fake_server, tmp_path, capsys, status, body, code):
    fake_server.reply(status, body)
    out = tmp_path / "o.png"
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(out), "--url", fake_server.url, "--max-retries", "0"])
    assert rc == code
    assert not out.exists()
    err = capsys.readouterr().err
    assert f"HTTP {status}" in err and (body.get("error") or body)["message"] in err


def test_connection_error_exit_code(tmp_path, capsys):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    rc = cli.main(["health", "--url", f"http://127.0.0.1:{port}", "--max-retries", "0"])
    assert rc == cli.EXIT_CONNECTION == 4
    assert "nst-client: error:" in capsys.readouterr().err


def test_missing_input_file_exit_code(fake_server, tmp_path, capsys):
    rc = cli.main(["stylize", "nope.png", str(STYLE), "-o", str(tmp_path / "o.png"), "--url", fake_server.url])
    assert rc == 2 and fake_server.requests == []
    assert "nope.png" in capsys.readouterr().err


def test_usage_error_exits_2():
    with pytest.raises(SystemExit) as info:
        cli.main(["stylize", str(CONTENT)])
    assert info.value.code == 2


def test_health_prints_json(fake_server, capsys, monkeypatch):
    fake_server.reply(200, {"status": "Healthy"})
    monkeypatch.setenv("NST_URL", fake_server.url)
    assert cli.main(["health"]) == 0
    assert json.loads(capsys.readouterr().out) == {"status": "Healthy"}


def test_python_m_nst_client_subprocess(fake_server, tmp_path, write_key_file):
    out = tmp_path / "out.jpg"
    env = {**os.environ, "NST_URL": fake_server.url, "NST_KEY_FILE": str(write_key_file(tmp_path / "k.json", "sub-key"))}
    env.pop("NST_TOKEN", None)
    proc = subprocess.run(
        [sys.executable, "-m", "nst_client", "stylize", str(CONTENT), str(STYLE), "-o", str(out), "--iterations", "2"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "iterations=7" in proc.stdout
    with Image.open(out) as img:  # png response re-encoded to the .jpg suffix
        assert img.format == "JPEG" and img.size == (128, 96)
    assert fake_server.requests[0].headers["Authorization"] == "Bearer sub-key"
    assert fake_server.requests[0].json["params"] == {"iterations": 2}


def test_read_timeout_exit_code(fake_server, tmp_path, capsys):
    fake_server.reply(200, None, delay=1.0)
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--url", fake_server.url,
                   "--timeout", "0.2"])
    assert rc == cli.EXIT_TIMEOUT
    assert "within 0.2 s" in capsys.readouterr().err


def test_contract_breaking_answer_exit_code(fake_server, tmp_path, capsys):
    fake_server.reply(200, {"format": "png"})  # 200 without an image
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--url", fake_server.url])
    assert rc == cli.EXIT_BAD_RESPONSE
    assert "image" in capsys.readouterr().err


def test_history_asked_for_but_missing_keeps_the_image(fake_server, tmp_path, capsys):
    out = tmp_path / "o.png"
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(out), "--url", fake_server.url,
                   "--history-out", str(tmp_path / "h.json")])
    assert rc == cli.EXIT_BAD_RESPONSE
    assert fake_server.requests[0].json["params"] == {"return_history": True}
    assert out.read_bytes() == OUTPUT.read_bytes() and not (tmp_path / "h.json").exists()
    assert "no history" in capsys.readouterr().err


def test_missing_output_directory_fails_before_sending(fake_server, tmp_path, capsys):
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "nope" / "o.png"), "--url", fake_server.url])
    assert rc == cli.EXIT_USAGE and fake_server.requests == []
    assert "does not exist" in capsys.readouterr().err


def test_json_success_document(fake_server, tmp_path, capsys):
    out = tmp_path / "o.png"
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(out), "--url", fake_server.url, "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)  # exactly one JSON document, nothing else
    assert doc["ok"] is True and doc["command"] == "stylize"
    assert doc["files"] == {"output": str(out)}
    assert (doc["width"], doc["height"], doc["iterations"], doc["weights"], doc["device"]) == \
        (128, 96, 7, "random-seed-0", "cpu")
    assert doc["losses"] == {"content": 1.5, "style": 2.25, "tv": 0.125, "total": 3.875}
    assert doc["params"] == {"image_size": 128, "iterations": 7} and doc["elapsed_s"] >= 0


def test_json_error_document(fake_server, tmp_path, capsys):
    fake_server.reply(400, {"error": {"code": "out_of_range", "message": "steps must be >= 1", "field": "params.iterations"}})
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--url", fake_server.url,
                   "--json", "--iterations", "0"])
    captured = capsys.readouterr()
    assert rc == cli.EXIT_REJECTED and captured.err == ""
    doc = json.loads(captured.out)
    assert doc == {"ok": False, "command": "stylize", "exit_code": cli.EXIT_REJECTED, "error": {
        "kind": "rejected", "type": "BadRequestError", "status_code": 400, "code": "out_of_range",
        "field": "params.iterations", "message": "steps must be >= 1"}}


def test_json_usage_error_is_a_document_too(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["stylize", str(CONTENT), "--json", "-o", "x.png"])
    assert info.value.code == cli.EXIT_USAGE
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["exit_code"] == 2 and doc["command"] == "stylize"
    assert doc["error"]["kind"] == "usage" and "style" in doc["error"]["message"]


def test_health_json_document(fake_server, capsys):
    fake_server.reply(200, {"status": "Healthy"})
    assert cli.main(["health", "--json", "--url", fake_server.url]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "ok": True, "command": "health", "url": fake_server.url, "response": {"status": "Healthy"}}


def test_info_reads_the_management_api(fake_server, capsys):
    description = {
        "modelName": "nst", "modelVersion": "1.0",
        "workers": [{"id": "9000", "status": "READY"}],
        "customizedMetadata": json.dumps({
            "weights": {"source": "random", "label": "random-seed-0"}, "device": "cpu",
            "limits": {"max_image_side": 1024}, "defaults": {"iterations": 300}}),
    }
    fake_server.reply(200, [description])
    argv = ["info", "--url", "http://127.0.0.1:1", "--management-url", fake_server.url, "--management-token", "mk"]
    assert cli.main([*argv, "--json"]) == 0
    req = fake_server.requests[0]
    assert (req.method, req.path) == ("GET", "/models/nst?customized=true")
    assert req.headers["Authorization"] == "Bearer mk"
    doc = json.loads(capsys.readouterr().out)
    assert doc["management_url"] == fake_server.url and doc["weights"]["label"] == "random-seed-0"
    assert (doc["device"], doc["limits"], doc["defaults"], doc["ready_workers"]) == \
        ("cpu", {"max_image_side": 1024}, {"iterations": 300}, 1)
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "label=random-seed-0" in text and "max_image_side=1024" in text and "1 ready" in text

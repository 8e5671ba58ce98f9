"""The nst-client command line, in-process and as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from nst_client import cli

DATA = Path(__file__).parents[1] / "data"
CONTENT = DATA / "tubingen_64x64.png"
STYLE = DATA / "starry_night_64x64.png"
OUTPUT = DATA / "chelsea_128x96.png"


def test_stylize_writes_output_and_sends_every_flag(server, tmp_path, capsys):
    out = tmp_path / "out.png"
    rc = cli.main([
        "stylize", str(CONTENT), str(STYLE), "-o", str(out), "--url", server.url, "--token", "tok",
        "--image-size", "32", "--steps", "3", "--content-weight", "1", "--style-weight", "1e6",
        "--tv-weight", "0", "--init", "noise", "--seed", "7", "--output-format", "png",
        "--param", "future_knob=[1, 2]", "--param", "label=hello",
    ])
    assert rc == 0
    assert out.read_bytes() == OUTPUT.read_bytes()
    req = server.requests[0]
    assert req.path == "/predictions/nst"
    assert req.headers["Authorization"] == "Bearer tok"
    assert req.json["params"] == {
        "image_size": 32, "steps": 3, "content_weight": 1.0, "style_weight": 1e6, "tv_weight": 0.0,
        "init": "noise", "seed": 7, "output_format": "png", "future_knob": [1, 2], "label": "hello",
    }
    summary = capsys.readouterr().out
    for part in ("128x96", "iterations=7", "total=3.875", "weights=random-seed-0", "device=cpu"):
        assert part in summary


def test_stylize_without_flags_sends_no_params(server, tmp_path):
    assert cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--url", server.url]) == 0
    assert server.requests[0].json["params"] == {}
    assert "Authorization" not in server.requests[0].headers


@pytest.mark.parametrize(
    "status, body, code",
    [
        (400, {"error": {"code": "invalid_param", "message": "steps must be >= 1", "field": "params.steps"}}, 2),
        (400, {"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed."}, 3),
        (404, {"code": 404, "type": "ModelNotFoundException", "message": "Model not found: nst"}, 2),
        (503, {"code": 503, "type": "InternalServerException", "message": "Prediction failed"}, 5),
    ],
)
def test_stylize_error_exit_codes(server, tmp_path, capsys, status, body, code):
    server.reply(status, body)
    out = tmp_path / "o.png"
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(out), "--url", server.url, "--max-retries", "0"])
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
    assert rc == 4
    assert "nst-client: error:" in capsys.readouterr().err


def test_missing_input_file_exit_code(server, tmp_path, capsys):
    rc = cli.main(["stylize", "nope.png", str(STYLE), "-o", str(tmp_path / "o.png"), "--url", server.url])
    assert rc == 2 and server.requests == []
    assert "nope.png" in capsys.readouterr().err


def test_usage_error_exits_2():
    with pytest.raises(SystemExit) as info:
        cli.main(["stylize", str(CONTENT)])
    assert info.value.code == 2


def test_health_prints_json(server, capsys, monkeypatch):
    server.reply(200, {"status": "Healthy"})
    monkeypatch.setenv("NST_URL", server.url)
    assert cli.main(["health"]) == 0
    assert json.loads(capsys.readouterr().out) == {"status": "Healthy"}


def test_python_m_nst_client_subprocess(server, tmp_path, write_key_file):
    out = tmp_path / "out.jpg"
    env = {**os.environ, "NST_URL": server.url, "NST_KEY_FILE": str(write_key_file(tmp_path / "k.json", "sub-key"))}
    env.pop("NST_TOKEN", None)
    proc = subprocess.run(
        [sys.executable, "-m", "nst_client", "stylize", str(CONTENT), str(STYLE), "-o", str(out), "--steps", "2"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "iterations=7" in proc.stdout
    with Image.open(out) as img:  # png response re-encoded to the .jpg suffix
        assert img.format == "JPEG" and img.size == (128, 96)
    assert server.requests[0].headers["Authorization"] == "Bearer sub-key"
    assert server.requests[0].json["params"] == {"steps": 2}

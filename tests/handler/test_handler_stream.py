"""Streaming through the handler with a real Context: chunks go to the worker's socket."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import nst_service.run
import pytest
from test_nst_handler import config, handler, make_context, model_dir  # noqa: F401 - fixtures


@pytest.fixture
def streamed(model_dir: Path, config: dict):
    """A context whose intermediate responses land on a real socket we can read."""
    ctx = make_context(model_dir, config, 1)
    ours, worker_side = socket.socketpair()
    ctx.cl_socket = worker_side
    yield ctx, ours
    ours.close()
    worker_side.close()


def received(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    data = b""
    try:
        while chunk := sock.recv(1 << 16):
            data += chunk
    except BlockingIOError:
        pass
    return data


def body(image_b64, **params) -> dict:
    return {"content": image_b64("chelsea_128x96.png"), "style": image_b64("starry_night_64x64.png"),
            "params": {"image_size": 64, "iterations": 4, "stream": True, "progress_every": 2, **params}}


def test_progress_goes_out_as_chunks_and_the_result_ends_the_stream(handler, streamed, image_b64) -> None:
    ctx, sock = streamed
    (last,) = handler.handle([{"body": body(image_b64)}], ctx)
    assert ctx.get_response_content_type(0) == "application/x-ndjson"
    wire = received(sock)
    assert wire.count(b'"event": "progress"') == 3  # iterations 0, 2, 4
    assert last.endswith("\n") and json.loads(last)["event"] == "result"
    assert json.loads(last)["iterations"] == 4


def test_an_error_after_the_first_chunk_arrives_in_band(handler, streamed, image_b64, monkeypatch) -> None:
    ctx, sock = streamed
    real = nst_service.run.stylize

    def failing(*args, callback=None, **kwargs):
        def boom(it):
            callback(it)
            if it.iteration >= 2:
                raise RuntimeError("simulated failure mid-run")
        return real(*args, callback=boom, **kwargs)

    monkeypatch.setattr(nst_service.run, "stylize", failing)
    (last,) = handler.handle([{"body": body(image_b64)}], ctx)
    assert b'"event": "progress"' in received(sock)
    event = json.loads(last)
    assert event["event"] == "error" and event["status"] == 500
    assert event["error"]["code"] == "internal_error" and event["error"]["request_id"] == "r0"
    assert ctx.get_response_status(0)[0] == 200  # the status line went out with the first chunk

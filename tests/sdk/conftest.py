"""Shared fixtures: a real local HTTP server that records requests and plays back
programmed responses, plus environment isolation."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parents[1] / "data"
OUTPUT_PNG = DATA / "chelsea_128x96.png"  # stands in for the server's output image


def _success_body(**overrides: Any) -> dict[str, Any]:
    """A 200 body following the contract, whose image is chelsea_128x96.png."""
    body: dict[str, Any] = {
        "image": base64.b64encode(OUTPUT_PNG.read_bytes()).decode("ascii"),
        "format": "png",
        "width": 128,
        "height": 96,
        "iterations": 7,
        "losses": {"content": 1.5, "style": 2.25, "tv": 0.125, "total": 3.875},
        "timings_ms": {"total": 12.0},
        "params": {"image_size": 128, "iterations": 7},
        "weights": "random-seed-0",
        "device": "cpu",
        "server_version": "9.9",  # an extra key the SDK does not know
    }
    body.update(overrides)
    return body


def _job_body(state: str = "queued", job_id: str = "j-1", **fields: Any) -> dict[str, Any]:
    """A ``{"job": JobStatus}`` answer (submit, status, cancel) following the contract."""
    status: dict[str, Any] = {
        "id": job_id, "state": state, "position": 0 if state == "queued" else None, "iteration": None,
        "of": None, "losses": None, "eta_s": None, "preview": None, "cancel_requested": False,
        "lease_s": 60.0, "created_s": 1700000000.0, "started_s": None, "finished_s": None, "error": None,
    }
    status.update(fields)
    return {"job": status}


def _plan_body(**overrides: Any) -> dict[str, Any]:
    """A 200 dry-run answer (``PlanResponse``) following the contract: two levels, the first
    whole and measured, the second tiled and not yet measured (its and the total's ``seconds``
    null)."""
    body: dict[str, Any] = {
        "plan": {
            "width": 4096, "height": 3072,
            "levels": [
                {"side": 1024, "width": 1024, "height": 768, "iterations": 100, "tile": None, "tiles": 1, "kept_tails": 0,
                 "lbfgs_history": 100, "peak_memory_bytes": 4_000_000_000, "seconds": 60.5},
                {"side": 4096, "width": 4096, "height": 3072, "iterations": 100, "tile": 1024, "tiles": 16, "kept_tails": 3,
                 "lbfgs_history": 8, "peak_memory_bytes": 7_900_000_000, "seconds": None},
            ],
            "peak_memory_bytes": 7_900_000_000, "memory_budget_bytes": 8_589_934_592, "seconds": None,
        },
        "params": {"image_size": 4096, "iterations": 200, "scales": [1024, 4096], "dry_run": True, "tile_size": None},
        "weights": "hed-bsds500-vgg16",
        "device": "cpu",
        "request_id": "abc",
    }
    body.update(overrides)
    return body


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    json: Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON; str/bytes -> sent as-is
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to sleep before answering
    # When set: sent with Transfer-Encoding: chunked as application/x-ndjson, one chunk per
    # item (dict -> JSON line + "\n"; str/bytes as-is), sleeping chunk_delay s between chunks.
    chunks: list[Any] | None = None
    chunk_delay: float = 0.0


class FakeServer:
    """Records every request; answers with queued replies (the last one repeats).

    Job calls follow the contract (docs/api.md, "Jobs") where a test scripts a plain answer: a
    submit whose queued reply is a 200 JSON object other than ``{"job": ...}`` (a stylize
    answer, maybe a broken one) answers 202 with a job that ends ``succeeded`` after the
    reply's ``delay``, and whose result is that object; its status, result and cancel calls
    answer from it without taking a reply. A submit answered with an error or with a scripted
    ``{"job": ...}`` body, and calls about jobs it did not make, take the queued replies.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.jobs: dict[str, tuple[dict[str, Any], float]] = {}  # jobs it ran: result, monotonic end
        self._replies: list[Reply] = []
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def reply(self, status: int = 200, body: Any = None, headers: dict[str, str] | None = None,
              delay: float = 0.0) -> FakeServer:
        """Queue a reply. ``body=None`` means the standard success body."""
        self._replies.append(Reply(status, _success_body() if body is None else body, headers or {}, delay))
        return self

    def stream(self, lines: list[Any], *, status: int = 200, headers: dict[str, str] | None = None,
               chunk_delay: float = 0.0) -> FakeServer:
        """Queue a chunked NDJSON reply: each item of ``lines`` is one chunk."""
        self._replies.append(Reply(status, None, headers or {}, 0.0, list(lines), chunk_delay))
        return self

    def _next_reply(self) -> Reply:
        with self._lock:
            if not self._replies:
                return Reply(200, _success_body())
            return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]

    def _job_reply(self, body: Any) -> Reply | None:
        """The answer to a job call this server handles itself (see the class), or ``None``."""
        call = body.get("job") if isinstance(body, dict) else None
        if not isinstance(call, dict):
            return None
        with self._lock:
            if call.get("action") == "submit":
                nxt = self._replies[0] if self._replies else Reply(200, _success_body())
                if not (nxt.status == 200 and isinstance(nxt.body, dict) and "job" not in nxt.body):
                    return None
                if len(self._replies) > 1:
                    self._replies.pop(0)
                job_id = f"fake-{len(self.jobs) + 1}"
                self.jobs[job_id] = (nxt.body, time.monotonic() + nxt.delay)
                return Reply(202, _job_body("queued", job_id, position=0, lease_s=10.0))
            if call.get("id") not in self.jobs:
                return None
            result, done_at = self.jobs[call["id"]]
            if time.monotonic() < done_at:
                if call.get("action") == "result":
                    return Reply(409, {"error": {"code": "job_not_finished", "message": "the job is running",
                                                 "field": "job.id"}})
                return Reply(200, _job_body("running", call["id"], lease_s=10.0, started_s=1700000000.5,
                                            cancel_requested=call.get("action") == "cancel"))
            if call.get("action") == "result":
                return Reply(200, result)
            steps = result.get("iterations")
            return Reply(200, _job_body("succeeded", call["id"], iteration=steps, of=steps,
                                        losses=result.get("losses"), lease_s=10.0, started_s=1700000000.5,
                                        finished_s=1700000001.0))

    def _handler_class(self) -> type:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    parsed = json.loads(raw) if raw else None
                except ValueError:
                    parsed = None
                with server._lock:
                    server.requests.append(Recorded(self.command, self.path, dict(self.headers), raw, parsed))
                reply = server._job_reply(parsed) or server._next_reply()
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.chunks is not None:
                    self._send_chunked(reply)
                    return
                if isinstance(reply.body, (dict, list)):
                    payload = json.dumps(reply.body).encode()
                    ctype = "application/json"
                else:
                    payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
                    ctype = "text/plain"
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # client gave up (timeout tests)

            def _send_chunked(self, reply: Reply) -> None:
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/x-ndjson")
                    self.send_header("Transfer-Encoding", "chunked")
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    for i, item in enumerate(reply.chunks or []):
                        if i and reply.chunk_delay:
                            time.sleep(reply.chunk_delay)
                        if isinstance(item, (dict, list)):
                            data = (json.dumps(item) + "\n").encode()
                        else:
                            data = item.encode() if isinstance(item, str) else item
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # client closed the stream early

            do_GET = do_POST = _handle

        return Handler

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """A :class:`FakeServer` (in-process HTTP, no TorchServe) started for the test, stopped after it."""
    srv = FakeServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No NST_* variables and a clean cwd, so no real ./key_file.json leaks in."""
    for name in ("NST_URL", "NST_TOKEN", "NST_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record retry delays instead of sleeping."""
    recorded: list[float] = []
    monkeypatch.setattr("nst_client._client._sleep", recorded.append)
    return recorded


def _write_key_file(path: Path, key: str) -> Path:
    path.write_text(json.dumps({
        "management": {"key": "MGMT-" + key, "expiration time": "2026-11-22T17:56:59.828670364Z"},
        "inference": {"key": key, "expiration time": "2026-11-22T17:56:59.828657301Z"},
        "API": {"key": "API-" + key},
    }))
    return path


@pytest.fixture
def success_body() -> Callable[..., dict[str, Any]]:
    """``success_body(**overrides)`` builds a contract-conformant 200 body."""
    return _success_body


@pytest.fixture
def plan_body() -> Callable[..., dict[str, Any]]:
    """``plan_body(**overrides)`` builds a contract-conformant 200 dry-run answer."""
    return _plan_body


@pytest.fixture
def job() -> Callable[..., dict[str, Any]]:
    """``job(state, job_id, **fields)`` builds a ``{"job": JobStatus}`` answer."""
    return _job_body


@pytest.fixture
def write_key_file() -> Callable[[Path, str], Path]:
    """``write_key_file(path, key)`` writes a TorchServe key file with that inference key."""
    return _write_key_file


@dataclass
class InFlight:
    """The CLI's ``client.stylize`` calls in flight at once: ``peak``, the most seen."""

    peak: int = 0
    now: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def pairs_in_flight(monkeypatch: pytest.MonkeyPatch) -> InFlight:
    """Wraps the CLI's client's ``stylize`` (the real call still reaches the server) so that
    calls start two at a time: each waits, up to 30 s, until a second one is in flight with it.
    A CLI that sent them one after another fails that wait; with the counting, a test asserts
    concurrency by counts, never by how long the run took."""
    from nst_client import cli

    seen, together = InFlight(), threading.Barrier(2, timeout=30)
    real = cli.StyleTransferClient.stylize

    def paired(self: Any, *args: Any, **kwargs: Any) -> Any:
        with seen.lock:
            seen.now += 1
            seen.peak = max(seen.peak, seen.now)
        try:
            together.wait()
            return real(self, *args, **kwargs)
        finally:
            with seen.lock:
                seen.now -= 1

    monkeypatch.setattr(cli.StyleTransferClient, "stylize", paired)
    return seen

"""A local HTTP server for the contract tests: records every request and answers as told
(the ``scripted`` fixture of tests/contract/conftest.py)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: An answer: (HTTP status, Content-Type or None, body chunks sent with chunked encoding).
Answer = tuple[int, "str | None", list[bytes]]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ScriptedServer:
    """A real HTTP/1.1 server on a free loopback port.

    ``script(recorded_request) -> Answer`` decides each answer (set it per test); every
    request is kept in ``requests``.
    """

    url: str = ""
    script: Callable[[Recorded], Answer] = lambda request: (404, None, [])
    requests: list[Recorded] = field(default_factory=list)


def _handler(state: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            request = Recorded(self.command, self.path, dict(self.headers), body)
            state.requests.append(request)
            status, content_type, chunks = state.script(request)
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def running() -> Iterator[ScriptedServer]:
    """A :class:`ScriptedServer` serving until the block ends."""
    state = ScriptedServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()

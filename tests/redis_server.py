"""A real redis-server (Debian's ``redis-server`` package) on a private loopback port, for the job
store's Redis backend (``tests/conftest.py`` makes the fixture visible to every test).

The server keeps nothing on disk (no RDB snapshot, no AOF) and stops with the session. Where
``redis-server`` is not installed the tests that need it are skipped with how to install it,
except under ``CI=true``, where ``.ci/run`` installs it and its absence fails them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest
import redis
from polling import poll

INSTALL = "apt-get install redis-server (Debian/Ubuntu; .ci/run does it)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://127.0.0.1:<port>/0`` of a redis-server started for this session."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = f"redis-server is not installed: {INSTALL}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    workdir = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir), "--logfile", str(workdir / "redis.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    def state() -> str:
        """"up" once it answers PING, "exited" if the process ended, else "starting"."""
        try:
            return "up" if client.ping() else "starting"
        except redis.ConnectionError:
            return "starting" if proc.poll() is None else "exited"

    try:
        try:
            up = poll(state, lambda s: s != "starting", what=f"redis-server on port {port}", timeout=60,
                      interval=0.05) == "up"
        except AssertionError:
            up = False
        if not up:
            log = (workdir / "redis.log").read_text() if (workdir / "redis.log").exists() else ""
            pytest.fail(f"redis-server did not start on port {port}:\n{log[-2000:]}")
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=20)

"""Probe TorchServe's asynchronous worker mode (``asyncCommunication: true``) with a toy model.

What ``docs/serving.md`` ("TorchServe's asynchronous worker mode") reports as measured comes
from this script: it builds a one-class async handler that can sleep (in an executor thread) or
fail, serves it from one worker on private loopback ports with a private ``TMPDIR``, and checks

1. concurrency: a short request is answered while a long one runs on the same worker;
2. a per-request status (202) set by the handler reaches the client;
3. one failing request: what the long request running beside it gets;
4. the worker process killed mid-request: what its client gets, and the model's state after.

Usage: ``python scripts/probe_async_mode.py`` (about a minute; needs Java and the venv's
TorchServe). Prints one line per check.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

HANDLER = '''
import asyncio, json, time

class AsyncHandler:
    def initialize(self, ctx):
        self.initialized = True

    async def handle(self, data, ctx):
        body = data[0].get("body", data[0].get("data"))
        body = json.loads(body) if isinstance(body, (bytes, bytearray)) else body
        if body.get("raise"):
            raise RuntimeError("boom")
        if body.get("sleep"):
            await asyncio.get_running_loop().run_in_executor(None, time.sleep, body["sleep"])
        if body.get("status"):
            ctx.set_response_status(body["status"], "Accepted", 0)
        return [json.dumps({"ok": True, "pid": __import__("os").getpid()})]
'''
CONFIG = "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\nmaxBatchDelay: 0\nresponseTimeout: 30\nasyncCommunication: true\n"
BIN = Path(sys.executable).parent


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def post(url: str, body: dict, timeout: float) -> tuple[int | str, float]:
    """(status or the exception's name, seconds)."""
    start = time.monotonic()
    try:
        return requests.post(url, json=body, timeout=timeout).status_code, time.monotonic() - start
    except requests.RequestException as exc:
        return type(exc).__name__, time.monotonic() - start


def beside(url: str, long_body: dict, short_body: dict, timeout: float) -> tuple[tuple, tuple]:
    """Send ``long_body``, then after 1 s ``short_body``; both answers."""
    out: dict[str, tuple] = {}
    thread = threading.Thread(target=lambda: out.setdefault("long", post(url, long_body, timeout)))
    thread.start()
    time.sleep(1.0)
    short = post(url, short_body, timeout)
    thread.join()
    return out["long"], short


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "handler.py").write_text(HANDLER)
        (work / "model-config.yaml").write_text(CONFIG)
        (work / "store").mkdir()
        (work / "tmp").mkdir()
        subprocess.run([BIN / "torch-model-archiver", "--model-name", "probe", "--version", "1.0", "--handler",
                        work / "handler.py", "--config-file", work / "model-config.yaml", "--export-path",
                        work / "store"], check=True)
        inference, management, metrics = free_ports(3)
        (work / "config.properties").write_text(
            f"inference_address=http://127.0.0.1:{inference}\nmanagement_address=http://127.0.0.1:{management}\n"
            f"metrics_address=http://127.0.0.1:{metrics}\ndisable_token_authorization=true\nload_models=all\n")
        env = {**os.environ, "TMPDIR": str(work / "tmp")}
        subprocess.run([BIN / "torchserve", "--start", "--ts-config", work / "config.properties", "--model-store",
                        work / "store", "--ncs", "--disable-token-auth"], cwd=work, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        url, describe = f"http://127.0.0.1:{inference}/predictions/probe", f"http://127.0.0.1:{management}/models/probe"
        try:
            for _ in range(90):
                time.sleep(1)
                try:
                    if '"READY"' in requests.get(describe, timeout=2).text:
                        break
                except requests.RequestException:
                    pass
            long, short = beside(url, {"sleep": 5}, {}, 20)
            print(f"1. concurrency: short request {short[0]} after {short[1]:.2f} s while a 5 s one ran "
                  f"({long[0]} after {long[1]:.1f} s)")
            print(f"2. per-request status: {post(url, {'status': 202}, 10)[0]}")
            long, failing = beside(url, {"sleep": 5}, {"raise": True}, 20)
            print(f"3. a failing request ({failing[0]}) beside a 5 s one: the 5 s one got {long[0]} after {long[1]:.1f} s")
            pid = requests.post(url, json={}, timeout=10).json()["pid"]
            out: dict[str, tuple] = {}
            thread = threading.Thread(target=lambda: out.setdefault("r", post(url, {"sleep": 60}, 20)))
            thread.start()
            time.sleep(2)
            os.kill(pid, signal.SIGKILL)
            thread.join()
            time.sleep(10)
            status = json.loads(requests.get(describe, timeout=5).text)[0]["workers"][0]["status"]
            print(f"4. worker killed mid-request: its client got {out['r'][0]} after {out['r'][1]:.0f} s (its own "
                  f"timeout 20 s); the restarted worker's status: {status}; a new request: {post(url, {}, 10)[0]}")
        finally:
            subprocess.run([BIN / "torchserve", "--stop"], env=env, stdout=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reliability under load and faults, against the real TorchServe."""

from __future__ import annotations

import json
import operator
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import requests
from nst_client import ServerError, StyleTransferClient, StylizeResult
from polling import poll

DATA = Path(__file__).resolve().parents[1] / "data"
CONTENT = DATA / "chelsea_128x96.png"
STYLE = DATA / "starry_night_64x64.png"
CLIENTS, PER_CLIENT = 8, 3


def management(server, path: str) -> requests.Response:
    key = json.loads(server.key_file.read_text())["management"]["key"]
    return requests.get(f"{server.management_url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=10)


def ready_worker_pid(server) -> int:
    ready = poll(lambda: [w for w in management(server, "/models/nst").json()[0]["workers"] if w["status"] == "READY"],
                 bool, what="a READY worker", interval=0.5)
    return ready[0]["pid"]


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far (Linux: /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15


def test_concurrent_clients_lose_and_mix_up_nothing(torchserve):
    """8 clients x 3 requests at once; each answer equals the same request sent alone."""
    def request(client_id: int, n: int) -> tuple[int, int, bytes]:
        with StyleTransferClient(base_url=torchserve.url, key_file=torchserve.key_file, max_retries=3) as client:
            seed = client_id * PER_CLIENT + n
            result = client.stylize(CONTENT, STYLE, image_size=32, iterations=2, init="noise", seed=seed)
            assert result.params["seed"] == seed
            return client_id, n, result.image_bytes

    def client_run(client_id: int) -> list[tuple[int, int, bytes]]:
        return [request(client_id, n) for n in range(PER_CLIENT)]

    with ThreadPoolExecutor(CLIENTS) as pool:
        together = [r for rs in pool.map(client_run, range(CLIENTS)) for r in rs]
    assert len(together) == CLIENTS * PER_CLIENT  # every request answered
    alone = {(c, n): request(c, n)[2] for c in range(CLIENTS) for n in range(PER_CLIENT)}
    assert all(image == alone[(c, n)] for c, n, image in together)  # none lost or mixed up
    assert len({image for _, _, image in together}) == CLIENTS * PER_CLIENT  # the seeds really differ


def test_killed_worker_is_a_5xx_then_the_retry_succeeds(torchserve) -> None:
    """SIGKILL the worker mid-request. TorchServe answers 507 (or 500) "Worker died." and restarts the
    worker; a client without retries sees that 5xx, and the SDK's retry of the same (idempotent)
    request succeeds once the new worker is READY."""
    outcomes: dict[str, StylizeResult | ServerError] = {}

    def call(name: str, retries: int) -> None:
        with StyleTransferClient(base_url=torchserve.url, key_file=torchserve.key_file, max_retries=retries) as client:
            try:
                outcomes[name] = client.stylize(CONTENT, STYLE, image_size=64, iterations=300)
            except ServerError as exc:
                outcomes[name] = exc

    for name, retries in (("no retries", 0), ("with retries", 8)):
        pid = ready_worker_pid(torchserve)
        idle = cpu_seconds(pid)
        thread = threading.Thread(target=call, args=(name, retries))
        thread.start()
        # Mid-request, as a state: the idle worker has started computing (300 iterations take
        # seconds of CPU; idle, it uses a few milliseconds a second).
        poll(partial(cpu_seconds, pid), partial(operator.le, idle + 0.5), what="the worker computing", interval=0.05)
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=300)
    error = outcomes["no retries"]
    # 507 when TorchServe has already reaped the killed process (exit code 137), else 500: its
    # WorkerThread reads the exit value as the connection drops (WorkerThread.java, finally block).
    assert isinstance(error, ServerError) and error.status_code in (500, 507) and "Worker died" in error.message
    retried = outcomes["with retries"]
    assert not isinstance(retried, Exception) and retried.iterations == 300, retried
    with StyleTransferClient(base_url=torchserve.url, key_file=torchserve.key_file) as client:
        assert client.health()["status"] == "Healthy"
    assert ready_worker_pid(torchserve) != pid


def test_time_budget_ends_the_run_before_its_steps(torchserve):
    """docs/serving.md: the run stops at its deadline and answers with the image so far: 2000
    iterations at 64 px take minutes, so a run stopped by a 2 s budget ran far fewer (counted,
    not timed: how long the answer took depends on the machine's load)."""
    with StyleTransferClient(base_url=torchserve.url, key_file=torchserve.key_file, max_retries=0) as client:
        result = client.stylize(CONTENT, STYLE, image_size=64, iterations=2000, time_budget_s=2.0)
    assert result.stopped == "time_budget" and 1 <= result.iterations < 2000

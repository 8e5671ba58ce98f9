"""Replicas on KServe: several TorchServe instances, each started from the layout deploy/kserve
ships (v1 envelope, no token), sharing their jobs through one real redis-server, as
``NST_JOBS_REDIS_URL`` in deploy/kserve/inferenceservice.yaml makes them.

A client's calls land on any replica: a job submitted to one is watched, cancelled and fetched
through another, and a replica that goes away for good (scaled down) has its jobs reported
failed by the others once its heartbeat is overdue.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests
from polling import poll
from torchserve_server import ROOT, Server, running_server

DATA = ROOT / "tests" / "data"
SLOW = {"image_size": 128, "steps": 2000}  # minutes on a CPU: it only ends early
HEARTBEAT_TIMEOUT_S = 4


def call(replica: Server, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One request in the v1 envelope, without a token (as KServe's model server sends it)."""
    resp = requests.post(f"{replica.url}/v1/models/nst:predict", json={"instances": [body]}, timeout=300)
    (answer,) = resp.json()["predictions"]
    return resp.status_code, answer


def stylize_body(**params: Any) -> dict[str, Any]:
    return {"content": base64.b64encode((DATA / "chelsea_128x96.png").read_bytes()).decode("ascii"),
            "style": base64.b64encode((DATA / "starry_night_64x64.png").read_bytes()).decode("ascii"),
            "params": params}


def status(replica: Server, job_id: str) -> dict[str, Any]:
    code, answer = call(replica, {"job": {"action": "status", "id": job_id}})
    assert code == 200, answer
    return answer["job"]


def wait_until(replica: Server, job_id: str, predicate) -> dict[str, Any]:
    return poll(lambda: status(replica, job_id), predicate, what=f"job {job_id}")


@pytest.fixture(scope="module")
def replica_env(redis_url: str) -> dict[str, str]:
    return {"NST_JOBS_REDIS_URL": redis_url, "NST_JOBS_REDIS_PREFIX": "replicas:",
            "NST_JOBS_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S)}


@pytest.fixture(scope="module")
def replicas(kserve_layout: Path, replica_env: dict[str, str],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """Two replicas sharing one Redis store."""
    with ExitStack() as stack:
        yield tuple(stack.enter_context(start_replica(kserve_layout, replica_env, tmp_path_factory, name))
                    for name in ("a", "b"))  # type: ignore[misc]


def start_replica(layout: Path, env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, name: str):
    return running_server(layout / "model-store", tmp_path_factory.mktemp(f"replica_{name}"),
                          base_config=layout / "config" / "config.properties",
                          extra={"metrics_config": str(layout / "config" / "metrics.yaml")}, env=env)


def test_a_job_submitted_to_one_replica_is_watched_cancelled_and_fetched_through_another(replicas) -> None:
    a, b = replicas
    code, accepted = call(a, stylize_body(**SLOW) | {"job": {"action": "submit"}})
    assert code == 200 and accepted["job"]["state"] in ("queued", "running"), accepted
    job_id = accepted["job"]["id"]
    running = wait_until(b, job_id, lambda j: (j["iteration"] or 0) >= 2)  # A's progress, read on B
    assert running["state"] == "running"
    code, flagged = call(b, {"job": {"action": "cancel", "id": job_id}})
    assert code == 200 and flagged["job"]["cancel_requested"] is True
    wait_until(b, job_id, lambda j: j["state"] == "cancelled")  # A stopped its run
    code, result = call(b, {"job": {"action": "result", "id": job_id}})
    assert code == 200 and result["stopped"] == "cancelled" and 2 <= result["iterations"] < SLOW["steps"]
    code, quick = call(b, stylize_body(image_size=32, steps=3) | {"job": {"action": "submit"}})
    wait_until(a, quick["job"]["id"], lambda j: j["state"] == "succeeded")
    code, result = call(a, {"job": {"action": "result", "id": quick["job"]["id"]}})
    assert code == 200 and result["iterations"] == 3


def test_the_jobs_of_a_replica_that_went_away_are_reported_failed(replicas, kserve_layout: Path,
                                                                  replica_env: dict[str, str],
                                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    """A replica scaled down never comes back under its name: the others fail its jobs once its
    heartbeat is ``heartbeat_timeout_s`` overdue."""
    a, _ = replicas
    with start_replica(kserve_layout, replica_env, tmp_path_factory, "c") as c:
        code, accepted = call(c, stylize_body(**SLOW) | {"job": {"action": "submit"}})
        job_id = accepted["job"]["id"]
        wait_until(a, job_id, lambda j: j["state"] == "running")
    stopped = time.monotonic()
    failed = wait_until(a, job_id, lambda j: j["state"] != "running")
    assert failed["state"] == "failed" and failed["error"]["code"] == "worker_died", failed
    assert "no heartbeat" in failed["error"]["message"]
    print(f"a replica's job reported failed {time.monotonic() - stopped:.1f} s after the replica stopped "
          f"(heartbeat timeout {HEARTBEAT_TIMEOUT_S} s)")

"""Replicas on KServe: several TorchServe instances, each started from the layout deploy/kserve
ships (no token), sharing their jobs through one real redis-server, as ``NST_JOBS_REDIS_URL`` in
deploy/kserve/inferenceservice.yaml makes them.

The two replicas are the session's KServe servers (tests/torchserve_server.py ``kserve_v1`` and
``kserve_v2``, which test_kserve_envelopes.py also uses): each is spoken to in its own envelope, so
a job crosses protocols as well as processes. A client's calls land on any replica: a job
submitted to one is watched, cancelled and fetched through another, and a replica that goes away
for good (scaled down) has its jobs reported failed by the others once its heartbeat is overdue.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from polling import poll
from torchserve_server import KSERVE_HEARTBEAT_TIMEOUT_S, ROOT, KServeEndpoint, running_kserve, torchserve_fixture

pytestmark = pytest.mark.e2e  # starts a third replica of its own (running_kserve)

DATA = ROOT / "tests" / "data"
SLOW = {"image_size": 128, "iterations": 2000}  # minutes on a CPU: it only ends early


def stylize_body(**params: Any) -> dict[str, Any]:
    return {"content": base64.b64encode((DATA / "chelsea_128x96.png").read_bytes()).decode("ascii"),
            "style": base64.b64encode((DATA / "starry_night_64x64.png").read_bytes()).decode("ascii"),
            "params": params}


def status(replica: KServeEndpoint, job_id: str) -> dict[str, Any]:
    code, answer = replica.call({"job": {"action": "status", "id": job_id}})
    assert code == 200, answer
    return answer["job"]


def wait_until(replica: KServeEndpoint, job_id: str, predicate) -> dict[str, Any]:
    return poll(lambda: status(replica, job_id), predicate, what=f"job {job_id}")


@torchserve_fixture(scope="module")
def replicas(kserve_v1: KServeEndpoint, kserve_v2: KServeEndpoint) -> tuple[KServeEndpoint, KServeEndpoint]:
    """Two replicas sharing one Redis store: the session's v1 and v2 KServe servers."""
    return kserve_v1, kserve_v2


def test_a_job_submitted_to_one_replica_is_watched_cancelled_and_fetched_through_another(replicas) -> None:
    a, b = replicas
    code, accepted = a.call(stylize_body(**SLOW) | {"job": {"action": "submit"}})
    assert code == 200 and accepted["job"]["state"] in ("queued", "running"), accepted
    job_id = accepted["job"]["id"]
    running = wait_until(b, job_id, lambda j: (j["iteration"] or 0) >= 2)  # A's progress, read on B
    assert running["state"] == "running"
    code, flagged = b.call({"job": {"action": "cancel", "id": job_id}})
    assert code == 200 and flagged["job"]["cancel_requested"] is True
    wait_until(b, job_id, lambda j: j["state"] == "cancelled")  # A stopped its run
    code, result = b.call({"job": {"action": "result", "id": job_id}})
    assert code == 200 and result["stopped"] == "cancelled" and 2 <= result["iterations"] < SLOW["iterations"]
    code, quick = b.call(stylize_body(image_size=32, iterations=3) | {"job": {"action": "submit"}})
    wait_until(a, quick["job"]["id"], lambda j: j["state"] == "succeeded")
    code, result = a.call({"job": {"action": "result", "id": quick["job"]["id"]}})
    assert code == 200 and result["iterations"] == 3


def test_the_jobs_of_a_replica_that_went_away_are_reported_failed(
        replicas, kserve_layout: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A replica scaled down never comes back under its name: the others fail its jobs once its
    heartbeat is ``heartbeat_timeout_s`` overdue."""
    a, _ = replicas
    with running_kserve(kserve_layout, tmp_path_factory.mktemp("replica_c"), "kserve", redis_url) as c:
        code, accepted = c.call(stylize_body(**SLOW) | {"job": {"action": "submit"}})
        job_id = accepted["job"]["id"]
        wait_until(a, job_id, lambda j: j["state"] == "running")
    stopped = time.monotonic()
    failed = wait_until(a, job_id, lambda j: j["state"] != "running")
    assert failed["state"] == "failed" and failed["error"]["code"] == "worker_died", failed
    assert "no heartbeat" in failed["error"]["message"]
    print(f"a replica's job reported failed {time.monotonic() - stopped:.1f} s after the replica stopped "
          f"(heartbeat timeout {KSERVE_HEARTBEAT_TIMEOUT_S} s)")

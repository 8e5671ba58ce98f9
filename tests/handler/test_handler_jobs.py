"""Jobs through the handler (a real ts Context, a real SQLite store, the real runner thread):
submit, status, result, cancel, the queue bound, leases, a restarted worker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nst_service.run
import pytest
from nst_handler import NSTHandler
from polling import poll
from test_nst_handler import assert_error, make_context, model_dir, model_yaml_config, run  # noqa: F401 - model_dir: a fixture


def call(handler: NSTHandler, model_dir: Path, config: dict, body: dict) -> tuple[dict, Any]:
    (out,), ctx = run(handler, model_dir, config, [{"body": body}])
    return out, ctx


def status(handler, model_dir, config, job_id: str, action: str = "status") -> tuple[dict, Any]:
    return call(handler, model_dir, config, {"job": {"action": action, "id": job_id}})


def wait_for(handler, model_dir, config, job_id: str, done: Callable[[dict], bool]) -> dict:
    return poll(lambda: status(handler, model_dir, config, job_id)[0]["job"], done, what=f"job {job_id}", interval=0.05)


@pytest.fixture
def jobs_config(root_dir: Path, tmp_path: Path) -> dict:
    return model_yaml_config(root_dir, jobs={"dir": str(tmp_path / "jobs"), "lease_s": 60, "max_queued_jobs": 2,
                                             "retry_after_s": 7})


@pytest.fixture
def jobs_handler(model_dir: Path, jobs_config: dict) -> Iterator[NSTHandler]:
    h = NSTHandler()
    h.initialize(make_context(model_dir, jobs_config))
    yield h
    h.service.worker.desk.close()


@pytest.fixture
def body(image_b64) -> dict:
    return {"content": image_b64("chelsea_128x96.png"), "style": image_b64("starry_night_64x64.png"),
            "params": {"iterations": 3, "image_size": 32, "return_history": True}}


def slow_stylize(monkeypatch, seconds: float) -> None:
    """Make every evaluation take at least ``seconds`` (to catch a job while it runs)."""
    real = nst_service.run.stylize

    def slow(*args, callback=None, **kwargs):
        def wrapped(it):
            time.sleep(seconds)
            if callback is not None:  # the worker's start-up run has none
                callback(it)
        return real(*args, callback=wrapped, **kwargs)

    monkeypatch.setattr(nst_service.run, "stylize", slow)


def test_a_submitted_job_answers_at_once_and_its_result_is_the_synchronous_answer(
        jobs_handler, model_dir, jobs_config, body) -> None:
    sync, _ = call(jobs_handler, model_dir, jobs_config, body)
    accepted, ctx = call(jobs_handler, model_dir, jobs_config, body | {"job": {"action": "submit"}})
    assert ctx.get_response_status(0) == (202, "Accepted")
    job = accepted["job"]
    assert job["state"] in ("queued", "running") and job["lease_s"] == 60 and job["cancel_requested"] is False
    done = wait_for(jobs_handler, model_dir, jobs_config, job["id"], lambda j: j["state"] == "succeeded")
    assert (done["iteration"], done["of"], done["error"], done["position"]) == (3, 3, None, None)
    assert done["preview"] is not None and done["finished_s"] >= done["started_s"] >= done["created_s"]
    result, ctx = status(jobs_handler, model_dir, jobs_config, job["id"], "result")
    assert ctx.get_response_status(0) == (200, None)
    same = ("image", "format", "width", "height", "iterations", "stopped", "losses", "params", "weights", "history")
    assert {k: result[k] for k in same} == {k: sync[k] for k in same}


def test_cancel_stops_a_running_job_within_an_iteration(jobs_handler, model_dir, jobs_config, body,
                                                        monkeypatch) -> None:
    slow_stylize(monkeypatch, 0.2)
    body["params"]["iterations"] = 500
    job = call(jobs_handler, model_dir, jobs_config, body | {"job": {"action": "submit"}})[0]["job"]
    running = wait_for(jobs_handler, model_dir, jobs_config, job["id"], lambda j: (j["iteration"] or 0) >= 2)
    assert running["state"] == "running"
    early, ctx = status(jobs_handler, model_dir, jobs_config, job["id"], "result")
    assert_error(early, ctx, 0, 409, "job_not_finished", "job.id")
    cancelled, _ = status(jobs_handler, model_dir, jobs_config, job["id"], "cancel")
    assert cancelled["job"]["cancel_requested"] is True
    done = wait_for(jobs_handler, model_dir, jobs_config, job["id"], lambda j: j["state"] == "cancelled")
    # Within an iteration: the run learns of the cancel at its next progress report and stops
    # before the iteration after it (counted, not timed: a loaded machine stretches the time).
    assert done["iteration"] <= cancelled["job"]["iteration"] + 2, (cancelled["job"], done)
    result, _ = status(jobs_handler, model_dir, jobs_config, job["id"], "result")
    assert result["stopped"] == "cancelled" and result["iterations"] == done["iteration"] < 500
    assert (result["width"], result["height"]) == (32, 24)


def test_the_queue_is_bounded_and_a_queued_job_cancels_at_once(jobs_handler, model_dir, jobs_config, body,
                                                              monkeypatch) -> None:
    slow_stylize(monkeypatch, 0.2)
    body["params"]["iterations"] = 500
    first = call(jobs_handler, model_dir, jobs_config, body | {"job": {"action": "submit"}})[0]["job"]
    second = call(jobs_handler, model_dir, jobs_config, body | {"job": {"action": "submit"}})[0]["job"]
    assert second["state"] == "queued" and second["position"] == 1
    full, ctx = call(jobs_handler, model_dir, jobs_config, body | {"job": {"action": "submit"}})
    assert_error(full, ctx, 0, 503, "queue_full", None)
    assert ctx.get_response_headers(0)["Retry-After"] == "7"
    gone, _ = status(jobs_handler, model_dir, jobs_config, second["id"], "cancel")
    assert gone["job"]["state"] == "cancelled"
    no_image, ctx = status(jobs_handler, model_dir, jobs_config, second["id"], "result")
    assert_error(no_image, ctx, 0, 409, "job_cancelled", "job.id")
    status(jobs_handler, model_dir, jobs_config, first["id"], "cancel")
    wait_for(jobs_handler, model_dir, jobs_config, first["id"], lambda j: j["state"] == "cancelled")


def test_a_queued_job_has_an_estimate_from_the_worker_s_measured_speed(jobs_handler, model_dir, jobs_config,
                                                                      body, monkeypatch) -> None:
    """The worker measures its speed at start-up and after every run; a queued job's eta_s is
    what the running job has left plus its own run at that speed."""
    at_start = jobs_handler.service.worker.desk.seconds_per_work
    assert at_start is not None and at_start > 0  # the start-up run
    slow_stylize(monkeypatch, 0.05)
    first = call(jobs_handler, model_dir, jobs_config, body | {"job": {"action": "submit"}})[0]["job"]
    assert first["eta_s"] is not None
    done = wait_for(jobs_handler, model_dir, jobs_config, first["id"], lambda j: j["state"] == "succeeded")
    speed = jobs_handler.service.worker.desk.seconds_per_work
    assert speed is not None and speed > 0
    ran_s = done["finished_s"] - done["started_s"]
    # The slowed run (50 ms an evaluation) weighs half in the running mean with the faster
    # start-up run: the speed drops, to between the two.
    assert speed > at_start and 3 * 32 * 24 * speed <= ran_s
    body["params"]["iterations"] = 60
    running = call(jobs_handler, model_dir, jobs_config, body | {"job": {"action": "submit"}})[0]["job"]
    wait_for(jobs_handler, model_dir, jobs_config, running["id"], lambda j: (j["iteration"] or 0) >= 2)
    queued = call(jobs_handler, model_dir, jobs_config, body | {"job": {"action": "submit"}})[0]["job"]
    assert queued["state"] == "queued" and queued["position"] == 1
    # Its own run at the measured speed, plus what the running job has left: that part comes
    # from the running job's elapsed time, so only its sign is a state to assert (the sum's
    # arithmetic is tests/http/test_job_estimates.py's).
    own = 60 * 32 * 24 * jobs_handler.service.worker.desk.seconds_per_work
    assert queued["eta_s"] is not None and queued["eta_s"] > own
    for job_id in (queued["id"], running["id"]):
        status(jobs_handler, model_dir, jobs_config, job_id, "cancel")
    wait_for(jobs_handler, model_dir, jobs_config, running["id"], lambda j: j["state"] == "cancelled")


def test_a_job_nobody_polls_is_cancelled_when_its_lease_runs_out(model_dir, root_dir, tmp_path, body,
                                                               monkeypatch) -> None:
    slow_stylize(monkeypatch, 0.2)
    config = model_yaml_config(root_dir, jobs={"dir": str(tmp_path / "jobs"), "lease_s": 1.0})
    h = NSTHandler()
    h.initialize(make_context(model_dir, config))
    body["params"]["iterations"] = 500
    job = call(h, model_dir, config, body | {"job": {"action": "submit"}})[0]["job"]
    # Nobody polls (a status call would renew the lease): the store is read directly.
    stored = poll(lambda: h.service.worker.desk.store.get(job["id"]), lambda j: j is None or j.done,
                  what="the unpolled job ending", interval=0.1)
    assert stored is not None and (stored.state, stored.cancel) == ("cancelled", "lease_expired")
    # Stopped by the lease, not by its end: far from its 500 iterations (about 10 ran, at 0.2 s each).
    assert stored.progress is not None and stored.progress["iteration"] < 250, stored.progress
    # The device is free again: the next request starts and ends promptly.
    body["params"]["iterations"] = 2
    out, ctx = call(h, model_dir, config, body)
    assert ctx.get_response_status(0) == (200, None) and out["iterations"] == 2
    h.service.worker.desk.close()


def test_a_restarted_worker_reports_its_predecessors_jobs_failed(jobs_handler, model_dir, jobs_config, body) -> None:
    desk = jobs_handler.service.worker.desk
    queued = desk.store.create(desk.worker, lease_s=60)  # accepted, never run: the process died
    running = desk.store.create(desk.worker, lease_s=60)
    desk.store.start(running.id)
    restarted = NSTHandler()
    restarted.initialize(make_context(model_dir, jobs_config))
    for job_id in (queued.id, running.id):
        out, ctx = status(restarted, model_dir, jobs_config, job_id)
        assert out["job"]["state"] == "failed" and out["job"]["error"]["code"] == "worker_died"
        result, ctx = status(restarted, model_dir, jobs_config, job_id, "result")
        assert_error(result, ctx, 0, 500, "worker_died", None)
    restarted.service.worker.desk.close()


@pytest.mark.parametrize("job, field, code", [
    ("submit", "job", "invalid_type"),
    ({"action": "pause", "id": "x"}, "job.action", "invalid_choice"),
    ({"action": "status"}, "job.id", "missing_field"),
    ({"action": "submit", "id": "x"}, "job.id", "invalid_choice"),
    ({"action": "status", "id": "x", "when": 1}, "job.when", "unknown_field"),
])
def test_bad_job_fields_are_400s_naming_the_field(jobs_handler, model_dir, jobs_config, job, field, code) -> None:
    out, ctx = call(jobs_handler, model_dir, jobs_config, {"job": job})
    assert_error(out, ctx, 0, 400, code, field)


def test_unknown_jobs_and_job_calls_with_images(jobs_handler, model_dir, jobs_config, body) -> None:
    out, ctx = status(jobs_handler, model_dir, jobs_config, "nope")
    assert_error(out, ctx, 0, 404, "unknown_job", "job.id")
    out, ctx = call(jobs_handler, model_dir, jobs_config, body | {"job": {"action": "status", "id": "x"}})
    assert_error(out, ctx, 0, 400, "unknown_field", "content")
    body["params"]["stream"] = True
    out, ctx = call(jobs_handler, model_dir, jobs_config, body | {"job": {"action": "submit"}})
    assert_error(out, ctx, 0, 400, "invalid_choice", "params.stream")

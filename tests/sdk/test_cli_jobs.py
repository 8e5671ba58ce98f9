"""``nst-client submit | status | wait | cancel``, and ``stylize`` run as a job: Ctrl-C cancels it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nst_client import _jobs, cli

DATA = Path(__file__).parents[1] / "data"
CONTENT = DATA / "tubingen_64x64.png"
STYLE = DATA / "starry_night_64x64.png"
OUTPUT = DATA / "chelsea_128x96.png"
UNKNOWN = {"error": {"code": "unknown_job", "message": "no job 'nope'", "field": "job.id"}}


@pytest.fixture(autouse=True)
def polls(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Job polling sleeps recorded instead of waited; the clock moves with them."""
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(_jobs, "_sleep", sleep)
    monkeypatch.setattr(_jobs, "_monotonic", lambda: now[0])
    return slept


def actions(fake_server: Any) -> list[str]:
    return [r.json["job"]["action"] if "job" in (r.json or {}) else "stylize" for r in fake_server.requests]


def test_submit_json_prints_the_job(fake_server, capsys, job):
    fake_server.reply(202, job("queued", position=3, eta_s=40))
    rc = cli.main(["submit", str(CONTENT), str(STYLE), "--iterations", "5", "--param", "knob=1", "--url", fake_server.url,
                   "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["command"] == "submit" and doc["id"] == "j-1"
    assert doc["job"]["state"] == "queued" and doc["job"]["position"] == 3
    sent = fake_server.requests[0].json
    assert sent["job"] == {"action": "submit"} and sent["params"] == {"iterations": 5, "knob": 1}


def test_submit_text_prints_the_id_first(fake_server, capsys, job):
    fake_server.reply(202, job("queued", position=0))
    assert cli.main(["submit", str(CONTENT), "--style", str(STYLE), "--url", fake_server.url]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first == "j-1" and second.startswith("job j-1: queued, position 0")


def test_submit_needs_a_style(fake_server):
    with pytest.raises(SystemExit) as info:
        cli.main(["submit", str(CONTENT), "--url", fake_server.url])
    assert info.value.code == cli.EXIT_USAGE and fake_server.requests == []


def test_status_json_and_text(fake_server, capsys, job):
    fake_server.reply(200, job("running", iteration=10, of=50, eta_s=8, losses={"total": 2.5}))
    assert cli.main(["status", "j-1", "--url", fake_server.url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["command"], doc["id"], doc["job"]["iteration"]) == ("status", "j-1", 10)
    assert fake_server.requests[0].json == {"job": {"action": "status", "id": "j-1"}}
    assert cli.main(["status", "j-1", "--url", fake_server.url]) == 0
    assert capsys.readouterr().out.strip() == "job j-1: running, iteration 10/50, eta 8 s, losses[total=2.5], lease 60 s"


def test_status_of_an_unknown_job_exits_not_found(fake_server, capsys):
    fake_server.reply(404, UNKNOWN)
    assert cli.main(["status", "nope", "--url", fake_server.url, "--json"]) == cli.EXIT_NOT_FOUND
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"]["code"] == "unknown_job" and doc["error"]["field"] == "job.id"


def test_cancel_json(fake_server, capsys, job):
    fake_server.reply(200, job("cancelled", cancel_requested=True))
    assert cli.main(["cancel", "j-1", "--url", fake_server.url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["command"] == "cancel" and doc["job"]["state"] == "cancelled"
    assert fake_server.requests[0].json == {"job": {"action": "cancel", "id": "j-1"}}


def test_wait_writes_the_image(fake_server, tmp_path, capsys, polls, job):
    fake_server.reply(200, job("running", iteration=1, of=7)).reply(200, job("succeeded", iteration=7, of=7)).reply(200)
    out = tmp_path / "o.png"
    rc = cli.main(["wait", "j-1", "-o", str(out), "--poll", "0.5", "--url", fake_server.url, "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["command"] == "wait" and doc["files"] == {"output": str(out)} and doc["iterations"] == 7
    assert doc["job"]["state"] == "succeeded"
    assert out.read_bytes() == OUTPUT.read_bytes()
    assert actions(fake_server) == ["status", "status", "result"] and polls == [0.5]


def test_wait_timeout_exits_8_and_leaves_the_job(fake_server, tmp_path, capsys, polls, job):
    fake_server.reply(200, job("running", iteration=1, of=700))
    rc = cli.main(["wait", "j-1", "-o", str(tmp_path / "o.png"), "--timeout", "3", "--url", fake_server.url])
    assert rc == cli.EXIT_TIMEOUT and not (tmp_path / "o.png").exists()
    assert "did not finish within 3 s" in capsys.readouterr().err
    assert set(actions(fake_server)) == {"status"} and sum(polls) == 3


def test_wait_on_a_job_cancelled_in_the_queue(fake_server, capsys, job):
    fake_server.reply(200, job("cancelled")).reply(409, {"error": {"code": "job_cancelled", "message": "no image",
                                                              "field": "job.id"}})
    assert cli.main(["wait", "j-1", "--url", fake_server.url, "--json"]) == cli.EXIT_NOT_FINISHED
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"]["kind"] == "not-finished" and doc["error"]["type"] == "JobNotFinishedError"


def test_wait_missing_output_directory_sends_nothing(fake_server, tmp_path):
    rc = cli.main(["wait", "j-1", "-o", str(tmp_path / "nope" / "o.png"), "--url", fake_server.url])
    assert rc == cli.EXIT_USAGE and fake_server.requests == []


# ------------------------------------------------------------------ stylize as a job


def test_stylize_runs_as_a_job(fake_server, tmp_path, capsys, polls, job):
    fake_server.reply(202, job("queued")).reply(200, job("running", iteration=3, of=7))
    fake_server.reply(200, job("succeeded", iteration=7, of=7)).reply(200)
    out = tmp_path / "o.png"
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(out), "--iterations", "7", "--url", fake_server.url])
    assert rc == 0 and out.read_bytes() == OUTPUT.read_bytes()
    assert actions(fake_server) == ["submit", "status", "status", "result"]
    assert fake_server.requests[0].json["params"] == {"iterations": 7} and "iterations=7" in capsys.readouterr().out


def test_ctrl_c_during_stylize_cancels_the_job(fake_server, tmp_path, capsys, monkeypatch, job):
    fake_server.reply(202, job("queued")).reply(200, job("running", iteration=1, of=300))
    fake_server.reply(200, job("running", iteration=1, of=300, cancel_requested=True))

    def interrupt(seconds: float) -> None:  # Ctrl-C while waiting between two polls
        raise KeyboardInterrupt

    monkeypatch.setattr(_jobs, "_sleep", interrupt)
    out = tmp_path / "o.png"
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(out), "--url", fake_server.url, "--json"])
    assert rc == cli.EXIT_INTERRUPTED == 130 and not out.exists()
    assert actions(fake_server) == ["submit", "status", "cancel"]
    assert fake_server.requests[-1].json == {"job": {"action": "cancel", "id": "j-1"}}
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"]["kind"] == "interrupted"
    assert "cancelling job j-1" in captured.err


def test_ctrl_c_still_exits_130_when_the_cancel_fails(fake_server, tmp_path, capsys, monkeypatch, job):
    fake_server.reply(202, job("queued")).reply(200, job("queued")).reply(404, UNKNOWN)
    monkeypatch.setattr(_jobs, "_sleep", lambda s: (_ for _ in ()).throw(KeyboardInterrupt()))
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--url", fake_server.url])
    assert rc == 130 and actions(fake_server) == ["submit", "status", "cancel"]
    assert "could not cancel job j-1" in capsys.readouterr().err


def test_stylize_that_times_out_cancels_its_job(fake_server, tmp_path, capsys, polls, job):
    fake_server.reply(202, job("queued")).reply(200, job("running", iteration=1, of=300))  # the cancel's answer too
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--url", fake_server.url,
                   "--timeout", "2"])
    assert rc == cli.EXIT_TIMEOUT and actions(fake_server)[-1] == "cancel"
    assert sum(polls) == 2


def test_stylize_against_a_server_without_jobs_sends_the_plain_request(fake_server, tmp_path):
    fake_server.reply(400, {"error": {"code": "unknown_field", "message": "unknown field 'job'", "field": "job"}})
    fake_server.reply(200)
    out = tmp_path / "o.png"
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(out), "--url", fake_server.url, "--seed", "3"])
    assert rc == 0 and out.read_bytes() == OUTPUT.read_bytes()
    assert actions(fake_server) == ["submit", "stylize"]
    first, second = (r.json for r in fake_server.requests)
    first.pop("job")
    assert first == second

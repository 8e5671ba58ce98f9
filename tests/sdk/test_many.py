"""``stylize_many``: many stylize calls N at a time over one sync client (against the fake
server), what a failure that stops the run and an early end (Ctrl-C) start and keep, and
one client serving several threads."""

from __future__ import annotations

import base64
import json
from contextlib import closing
from pathlib import Path

import pytest
from nst_client import (
    BadRequestError,
    StyleTransferClient,
    StylizeCall,
    StylizeOutcome,
    cli,
    stylize_many,
)

DATA = Path(__file__).parents[1] / "data"
CONTENT = DATA / "tubingen_64x64.png"
STYLES = [DATA / "starry_night_64x64.png", DATA / "the_scream_128x96.png"]
OUTPUT = DATA / "chelsea_128x96.png"  # the fake server's result image
REJECTED = {"error": {"code": "out_of_range", "message": "too big", "field": "params.image_size"}}


def _calls(n: int, out: Path | None = None) -> list[StylizeCall[int]]:
    return [StylizeCall(CONTENT, STYLES[i % 2], {"iterations": i + 1},
                        save_to=None if out is None else out / f"{i}.png", tag=i) for i in range(n)]


def _steps_sent(fake_server) -> list[int]:
    return [r.json["params"]["iterations"] for r in fake_server.requests]


def test_every_call_is_sent_and_saved_and_comes_back_with_its_tag(fake_server, tmp_path):
    with StyleTransferClient(base_url=fake_server.url) as client:
        outcomes = list(stylize_many(client, _calls(3, tmp_path), concurrency=1))
    assert [o.call.tag for o in outcomes] == [0, 1, 2]  # one at a time: in the order given
    assert _steps_sent(fake_server) == [1, 2, 3]
    assert all(o.error is None and o.result is not None and o.result.iterations == 7 for o in outcomes)
    sent_styles = [base64.b64decode(r.json["style"]) for r in fake_server.requests]
    assert sent_styles == [STYLES[0].read_bytes(), STYLES[1].read_bytes(), STYLES[0].read_bytes()]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.png", "1.png", "2.png"]  # no .part file left
    assert all((tmp_path / f"{i}.png").read_bytes() == OUTPUT.read_bytes() for i in range(3))


def test_concurrency_keeps_n_calls_in_flight_over_one_client(fake_server, pairs_in_flight):
    with StyleTransferClient(base_url=fake_server.url) as client:
        outcomes = list(stylize_many(client, _calls(4), concurrency=2))
        sessions = len(client._sessions._all)
    assert sorted(o.call.tag for o in outcomes) == [0, 1, 2, 3]
    assert pairs_in_flight.peak == 2 and len(fake_server.requests) == 4
    assert sessions == 2  # a requests session per call in flight, none shared between threads


def test_a_client_used_one_call_at_a_time_keeps_one_session(fake_server):
    with StyleTransferClient(base_url=fake_server.url) as client:
        list(stylize_many(client, _calls(3), concurrency=1))
        client.health()
        assert len(client._sessions._all) == 1


def test_failures_are_outcomes_and_the_run_goes_on_by_default(fake_server):
    fake_server.reply(200).reply(400, REJECTED).reply(200)
    with StyleTransferClient(base_url=fake_server.url) as client:
        outcomes = list(stylize_many(client, _calls(4), concurrency=1))
    assert len(fake_server.requests) == 4
    (failed,) = [o for o in outcomes if o.error is not None]
    assert failed.call.tag == 1 and failed.result is None and isinstance(failed.error, BadRequestError)


def test_a_failure_that_stops_starts_no_further_call(fake_server):
    fake_server.reply(200).reply(400, REJECTED).reply(200)
    with StyleTransferClient(base_url=fake_server.url) as client:
        outcomes = list(stylize_many(client, _calls(5), concurrency=1, stop_on=lambda exc: True))
    assert _steps_sent(fake_server) == [1, 2]
    assert [(o.call.tag, o.error is None) for o in outcomes] == [(0, True), (1, False)]


def test_the_calls_in_flight_when_a_run_stops_finish_and_are_yielded(fake_server, pairs_in_flight):
    fake_server.reply(400, REJECTED)  # every call is refused; the first two are in flight together
    with StyleTransferClient(base_url=fake_server.url) as client:
        outcomes = list(stylize_many(client, _calls(6), concurrency=2, stop_on=lambda exc: True))
    assert len(fake_server.requests) == 2  # the two paired calls, nothing after the first failure
    assert sorted(o.call.tag for o in outcomes) == [0, 1]  # the second failure, in flight, still comes back
    assert all(isinstance(o.error, BadRequestError) for o in outcomes)


def test_ctrl_c_in_the_caller_starts_no_further_call(fake_server):
    with StyleTransferClient(base_url=fake_server.url) as client, pytest.raises(KeyboardInterrupt):
        with closing(stylize_many(client, _calls(5), concurrency=1)) as done:
            for _ in done:
                raise KeyboardInterrupt
    assert _steps_sent(fake_server) == [1]


def test_a_result_that_cannot_be_saved_is_the_calls_failure(fake_server, tmp_path):
    with StyleTransferClient(base_url=fake_server.url) as client:
        (outcome,) = stylize_many(client, _calls(1, tmp_path / "missing"), concurrency=1)
    assert isinstance(outcome, StylizeOutcome) and outcome.result is None
    assert isinstance(outcome.error, FileNotFoundError)


def test_concurrency_below_one_is_refused_before_anything_is_sent(fake_server):
    with StyleTransferClient(base_url=fake_server.url) as client, pytest.raises(ValueError, match="concurrency"):
        stylize_many(client, _calls(2), concurrency=0)
    assert fake_server.requests == []


def test_ctrl_c_during_a_batch_keeps_the_pairs_done_and_a_rerun_resumes(fake_server, tmp_path, monkeypatch,
                                                                        capsys):
    from nst_client.cli import _manifest

    out, real_record = tmp_path / "out", _manifest.Manifest.record

    def record_then_ctrl_c(self, cell, fields):  # Ctrl-C right after the first pair is recorded
        real_record(self, cell, fields)
        raise KeyboardInterrupt

    monkeypatch.setattr(_manifest.Manifest, "record", record_then_ctrl_c)
    argv = ["batch", str(CONTENT), *map(str, STYLES), "-o", str(out), "--url", fake_server.url, "--json"]
    assert cli.main(argv) == cli.EXIT_INTERRUPTED
    assert json.loads(capsys.readouterr().out)["error"]["kind"] == "interrupted"
    assert len(fake_server.requests) == 1  # no second pair was started
    assert list(json.loads((out / "batch.json").read_text())["pairs"]) == ["tubingen_64x64__starry_night_64x64.png"]
    assert not (out / "sheet.png").exists()  # nothing more is written after Ctrl-C

    monkeypatch.setattr(_manifest.Manifest, "record", real_record)
    fake_server.requests.clear()
    assert cli.main(argv) == cli.EXIT_OK
    assert [base64.b64decode(r.json["style"]) for r in fake_server.requests] == [STYLES[1].read_bytes()]

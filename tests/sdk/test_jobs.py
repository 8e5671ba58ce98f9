"""Jobs (``submit``, ``Job``/``AsyncJob``) against a real local HTTP server (conftest's FakeServer):
each test runs with the sync and with the async client, which must send and do the same."""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nst_client import (
    APIResponseValidationError,
    APITimeoutError,
    AsyncJob,
    AsyncStyleTransferClient,
    Job,
    JobNotFinishedError,
    JobStatus,
    NotFoundError,
    ServerError,
    ServiceUnavailableError,
    StyleTransferClient,
    _jobs,
)
from PIL import Image

DATA = Path(__file__).parents[1] / "data"
CONTENT = DATA / "tubingen_64x64.png"
STYLE = DATA / "starry_night_64x64.png"
OUTPUT = DATA / "chelsea_128x96.png"


def jpeg_b64(size: tuple[int, int] = (16, 12)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 10)).save(buf, "JPEG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


NOT_FINISHED = {"error": {"code": "job_not_finished", "message": "job j-1 is running", "field": "job.id"}}
UNKNOWN = {"error": {"code": "unknown_job", "message": "no job 'nope'", "field": "job.id"}}


async def wait_for(value: Any) -> Any:
    """The value of a sync call, or of an async one awaited."""
    return await value if inspect.isawaitable(value) else value


async def collect(events: Any) -> list[Any]:
    if hasattr(events, "__aiter__"):
        return [e async for e in events]
    return list(events)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Job polling sleeps (both kinds) recorded, moving a fake monotonic clock instead of waiting."""
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async def asleep(seconds: float) -> None:
        sleep(seconds)

    async def retry_sleep(seconds: float) -> None:
        pass

    monkeypatch.setattr(_jobs, "_sleep", sleep)
    monkeypatch.setattr(_jobs, "_asleep", asleep)
    monkeypatch.setattr(_jobs, "_monotonic", lambda: now[0])
    monkeypatch.setattr("nst_client._async._sleep", retry_sleep)
    return slept


@pytest.fixture(params=["sync", "async"])
def use(request: pytest.FixtureRequest, fake_server: Any) -> Callable[..., Any]:
    """``use(fn, **client_kwargs)``: ``await fn(client)`` with a sync or an async client on the server."""
    def run(fn: Callable[[Any], Any], **kwargs: Any) -> Any:
        async def main() -> Any:
            if request.param == "sync":
                with StyleTransferClient(base_url=fake_server.url, **kwargs) as client:
                    return await fn(client)
            async with AsyncStyleTransferClient(base_url=fake_server.url, **kwargs) as client:
                return await fn(client)

        return asyncio.run(main())

    run.kind = request.param  # type: ignore[attr-defined]
    return run


def actions(fake_server: Any) -> list[Any]:
    return [r.json.get("job") if isinstance(r.json, dict) else None for r in fake_server.requests]


# ------------------------------------------------------------------ submit


def test_submit_sends_the_stylize_body_plus_the_job_field(use, fake_server, job):
    fake_server.reply(200).reply(202, job("queued", position=2, eta_s=30))  # a stylize, then the submit

    async def go(client: Any) -> Any:
        await wait_for(client.stylize(CONTENT, [STYLE, OUTPUT], iterations=3, style_masks=[CONTENT, OUTPUT]))
        return await wait_for(client.submit(CONTENT, [STYLE, OUTPUT], iterations=3, style_masks=[CONTENT, OUTPUT]))

    submitted = use(go, token="tok")
    stylize, submit = fake_server.requests
    assert submit.json.pop("job") == {"action": "submit"}
    assert submit.json == stylize.json and submit.path == "/predictions/nst"
    assert submit.headers["Authorization"] == "Bearer tok"
    assert isinstance(submitted, AsyncJob if use.kind == "async" else Job)
    assert submitted.id == "j-1" and submitted.last_status.position == 2 and submitted.last_status.eta_s == 30
    assert "j-1" in repr(submitted) and "queued" in repr(submitted)


def test_submit_retries_a_full_queue_after_retry_after(use, fake_server, sleeps, clock, monkeypatch, job):
    async_delays = []

    async def record(seconds: float) -> None:
        async_delays.append(seconds)

    monkeypatch.setattr("nst_client._async._sleep", record)
    full = {"error": {"code": "queue_full", "message": "8 jobs queued", "field": None}}
    fake_server.reply(503, full, headers={"Retry-After": "3"}).reply(202, job())
    submitted = use(lambda c: wait_for(c.submit(CONTENT, STYLE)))
    assert submitted.id == "j-1" and len(fake_server.requests) == 2
    assert (sleeps if use.kind == "sync" else async_delays) == [3.0]


def test_a_queue_that_stays_full_raises(use, fake_server, clock):
    fake_server.reply(503, {"error": {"code": "queue_full", "message": "full", "field": None}}, headers={"Retry-After": "1"})
    with pytest.raises(ServiceUnavailableError) as info:
        use(lambda c: wait_for(c.submit(CONTENT, STYLE)), max_retries=1)
    assert info.value.code == "queue_full" and len(fake_server.requests) == 2


def test_submit_rejects_stream_before_sending(use, fake_server):
    with pytest.raises(ValueError, match="stream"):
        use(lambda c: wait_for(c.submit(CONTENT, STYLE, stream=True)))
    assert fake_server.requests == []


def test_a_submit_answer_without_a_job_is_a_validation_error(use, fake_server):
    fake_server.reply(202, {"id": "j-1"})
    with pytest.raises(APIResponseValidationError, match="job"):
        use(lambda c: wait_for(c.submit(CONTENT, STYLE)))


# ------------------------------------------------------------------ status, result, cancel


def test_status_sends_exactly_the_job_call_and_parses_every_field(use, fake_server, job):
    preview = {"width": 16, "height": 12, "image": jpeg_b64()}
    fake_server.reply(200, job("running", iteration=40, of=300, eta_s=12.5, preview=preview, started_s=1700000001,
                          losses={"content": 1.0, "style": 2.0, "tv": 0.5, "total": 3.5}, shiny_new_key=1))
    status = use(lambda c: wait_for(c.job("j-1").status()))
    assert fake_server.requests[0].json == {"job": {"action": "status", "id": "j-1"}}
    assert isinstance(status, JobStatus) and not status.done
    assert (status.state, status.iteration, status.of, status.eta_s, status.lease_s, status.started_s) == \
        ("running", 40, 300, 12.5, 60.0, 1700000001)
    assert status.losses == {"content": 1.0, "style": 2.0, "tv": 0.5, "total": 3.5}
    assert status.preview is not None and status.preview.image.size == (16, 12) and status.preview.iteration == 40
    assert status.raw["shiny_new_key"] == 1 and status.to_dict()["preview"] == {"width": 16, "height": 12}


def test_result_is_the_synchronous_answer(use, fake_server, success_body):
    fake_server.reply(200, success_body(stopped="cancelled"))
    result = use(lambda c: wait_for(c.job("j-1").result()))
    assert fake_server.requests[0].json == {"job": {"action": "result", "id": "j-1"}}
    assert result.image_bytes == OUTPUT.read_bytes() and result.stopped == "cancelled"


@pytest.mark.parametrize("status, body, error, code", [
    (409, NOT_FINISHED, JobNotFinishedError, "job_not_finished"),
    (409, {"error": {"code": "job_cancelled", "message": "cancelled before it started", "field": "job.id"}},
     JobNotFinishedError, "job_cancelled"),
    (404, UNKNOWN, NotFoundError, "unknown_job"),
    (500, {"error": {"code": "worker_died", "message": "the worker died", "field": None}}, ServerError, "worker_died"),
])
def test_result_errors(use, fake_server, status, body, error, code):
    fake_server.reply(status, body)
    with pytest.raises(error) as info:
        use(lambda c: wait_for(c.job("j-1").result()), max_retries=0)
    assert info.value.code == code and info.value.status_code == status


def test_unknown_job_status_is_not_found(use, fake_server):
    fake_server.reply(404, UNKNOWN)
    with pytest.raises(NotFoundError) as info:
        use(lambda c: wait_for(c.job("nope").status()))
    assert info.value.field == "job.id" and len(fake_server.requests) == 1  # a 404 is not retried


def test_cancel(use, fake_server, job):
    fake_server.reply(200, job("running", cancel_requested=True, iteration=3, of=10))
    handle = []

    async def go(client: Any) -> Any:
        handle.append(client.job("j-1"))
        return await wait_for(handle[0].cancel())

    status = use(go)
    assert fake_server.requests[0].json == {"job": {"action": "cancel", "id": "j-1"}}
    assert status.cancel_requested and status.state == "running" and handle[0].last_status is status


@pytest.mark.parametrize("bad", ["", None, 7])
def test_job_needs_an_id_and_sends_nothing(use, fake_server, bad):
    with pytest.raises(ValueError, match="job id"):
        use(lambda c: wait_for(c.job(bad)))
    assert fake_server.requests == []


# ------------------------------------------------------------------ wait and events


def test_wait_polls_until_done_then_fetches_the_result(use, fake_server, clock, job):
    fake_server.reply(202, job("queued", position=1)).reply(200, job("queued", position=0))
    fake_server.reply(200, job("running", iteration=2, of=7)).reply(200, job("succeeded", iteration=7, of=7))
    fake_server.reply(200)  # the result

    async def go(client: Any) -> Any:
        submitted = await wait_for(client.submit(CONTENT, STYLE, iterations=7))
        return await wait_for(submitted.wait(poll_s=0.5))

    result = use(go)
    assert result.image_bytes == OUTPUT.read_bytes()
    assert [a["action"] for a in actions(fake_server)] == ["submit", "status", "status", "status", "result"]
    assert clock == [0.5, 0.5]


def test_wait_gives_up_after_timeout_without_cancelling(use, fake_server, clock, job):
    fake_server.reply(200, job("running", iteration=1, of=100))
    with pytest.raises(APITimeoutError, match="within 2 s"):
        use(lambda c: wait_for(c.job("j-1").wait(2, poll_s=0.75)))
    assert clock == [0.75, 0.75, 0.5]  # the last sleep stops at the deadline
    assert {a["action"] for a in actions(fake_server)} == {"status"}  # no cancel, no result


def test_wait_on_a_job_cancelled_in_the_queue_raises_not_finished(use, fake_server, clock, job):
    fake_server.reply(200, job("cancelled", cancel_requested=True)).reply(
        409, {"error": {"code": "job_cancelled", "message": "no image", "field": "job.id"}})
    with pytest.raises(JobNotFinishedError):
        use(lambda c: wait_for(c.job("j-1").wait()))
    assert clock == []


def test_wait_on_a_failed_job_raises_its_error(use, fake_server, clock, job):
    error = {"code": "worker_died", "message": "the worker died", "field": None}
    fake_server.reply(200, job("failed", error=error)).reply(500, {"error": error})
    with pytest.raises(ServerError, match="worker died"):
        use(lambda c: wait_for(c.job("j-1").wait()), max_retries=0)


def test_events_yield_each_change_until_done(use, fake_server, clock, job):
    for status in (job("queued", position=1), job("queued", position=1, eta_s=9), job("queued", position=0),
                   job("running", iteration=1, of=3), job("running", iteration=1, of=3, eta_s=2),
                   job("running", iteration=3, of=3), job("succeeded", iteration=3, of=3)):
        fake_server.reply(200, status)
    seen = use(lambda c: collect(c.job("j-1").events(poll_s=0.25)))
    assert [(s.state, s.position, s.iteration) for s in seen] == [
        ("queued", 1, None), ("queued", 0, None), ("running", None, 1), ("running", None, 3),
        ("succeeded", None, 3)]
    assert seen[-1].done and len(fake_server.requests) == 7 and clock == [0.25] * 6


@pytest.mark.parametrize("poll_s, timeout", [(0, None), (-1, None), (1, -1)])
def test_wait_checks_its_arguments_before_sending(use, fake_server, poll_s, timeout):
    with pytest.raises(ValueError):
        use(lambda c: wait_for(c.job("j-1").wait(timeout, poll_s=poll_s)))
    assert fake_server.requests == []


def test_a_malformed_status_is_a_validation_error(use, fake_server):
    fake_server.reply(200, {"job": {"id": "j-1", "state": "running", "iteration": "three"}})
    with pytest.raises(APIResponseValidationError, match="iteration"):
        use(lambda c: wait_for(c.job("j-1").status()))


def test_sync_and_async_job_share_their_api():
    def public(cls: type) -> dict[str, list[inspect.Parameter]]:
        return {n: list(inspect.signature(f).parameters.values())
                for n, f in vars(cls).items() if not n.startswith("_") and callable(f)}

    assert public(Job) == public(AsyncJob)
    assert all(inspect.iscoroutinefunction(getattr(AsyncJob, n)) for n in ("status", "result", "cancel", "wait"))
    assert inspect.isasyncgenfunction(AsyncJob.events)
    sync = inspect.signature(StyleTransferClient.submit)
    assert list(sync.parameters.values()) == list(inspect.signature(AsyncStyleTransferClient.submit).parameters.values())
    # every keyword of stylize but progress, derived from the same declaration
    assert list(sync.parameters)[3:] == [p for p in inspect.signature(StyleTransferClient.stylize).parameters
                                         if p != "progress"][3:]

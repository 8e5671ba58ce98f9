"""Dry runs: ``plan()`` on both clients, the ``tile_size`` and ``dry_run`` parameters, and
``nst-client plan`` (and ``stylize``/``submit --dry-run``), against the FakeServer."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from nst_client import (
    APIResponseValidationError,
    AsyncStyleTransferClient,
    BadRequestError,
    Plan,
    PlanLevel,
    StyleTransferClient,
    cli,
)
from nst_client._params import PARAMS, STYLIZE_PARAMS

DATA = Path(__file__).parents[1] / "data"
CONTENT = DATA / "tubingen_64x64.png"
STYLE = DATA / "starry_night_64x64.png"
OUTPUT = DATA / "chelsea_128x96.png"
OVER_BUDGET = {"error": {"code": "over_memory_budget", "field": "params.tile_size",
                         "message": "level 4096 px needs 9.1 GiB in 2048 px tiles; the budget is 8 GiB"},
               "request_id": "r-9"}


def arun(coro_of_client: Any, **kwargs: Any) -> Any:
    async def main() -> Any:
        async with AsyncStyleTransferClient(**kwargs) as client:
            return await coro_of_client(client)

    return asyncio.run(main())


# ------------------------------------------------------------------------ the request


def test_plan_sends_the_stylize_body_with_dry_run(fake_server, plan_body):
    fake_server.reply(200, plan_body())
    client = StyleTransferClient(base_url=fake_server.url, token="tok")
    client.plan(CONTENT, [STYLE, OUTPUT], image_size=4096, scales=(1024, 4096), tile_size=1024, seed=None,
                content_mask=CONTENT, future_knob=1)
    (req,) = fake_server.requests
    assert (req.method, req.path, req.headers["Authorization"]) == ("POST", "/predictions/nst", "Bearer tok")
    assert req.json["params"] == {"image_size": 4096, "scales": [1024, 4096], "tile_size": 1024,
                                  "future_knob": 1, "dry_run": True}
    assert isinstance(req.json["style"], list) and len(req.json["style"]) == 2
    assert "content_mask" in req.json and "job" not in req.json


def test_plan_without_params_sends_only_dry_run(fake_server, plan_body):
    fake_server.reply(200, plan_body())
    StyleTransferClient(base_url=fake_server.url).plan(CONTENT, STYLE)
    assert fake_server.requests[0].json["params"] == {"dry_run": True}
    assert isinstance(fake_server.requests[0].json["style"], str)


def test_stylize_sends_tile_size(fake_server):
    StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE, tile_size=512)
    assert fake_server.requests[0].json["params"] == {"tile_size": 512}


def test_plan_takes_stylize_keywords_but_not_progress():
    for client in (StyleTransferClient, AsyncStyleTransferClient):
        stylize = inspect.signature(client.stylize).parameters
        plan = inspect.signature(client.plan).parameters
        assert list(plan) == [name for name in stylize if name != "progress"]
        assert "tile_size" in plan and "dry_run" not in plan
    assert inspect.iscoroutinefunction(AsyncStyleTransferClient.plan)


def test_dry_run_is_a_declared_parameter_but_no_stylize_keyword():
    assert "dry_run" in {p.name for p in PARAMS} and "dry_run" not in STYLIZE_PARAMS
    assert "tile_size" in STYLIZE_PARAMS


@pytest.mark.parametrize("call", [
    lambda c: c.stylize(CONTENT, STYLE, dry_run=True),
    lambda c: c.stylize_stream(CONTENT, STYLE, dry_run=True),
    lambda c: c.submit(CONTENT, STYLE, dry_run=True),
])
def test_calls_that_expect_an_image_or_a_job_refuse_dry_run(fake_server, call):
    with pytest.raises(ValueError, match=r"dry_run: .*plan\("):
        call(StyleTransferClient(base_url=fake_server.url))
    assert fake_server.requests == []


def test_plan_refuses_stream_and_a_false_dry_run(fake_server):
    client = StyleTransferClient(base_url=fake_server.url)
    with pytest.raises(ValueError, match="not streamed"):
        client.plan(CONTENT, STYLE, stream=True)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="always sends dry_run"):
        client.plan(CONTENT, STYLE, dry_run=False)  # type: ignore[call-arg]
    assert fake_server.requests == []


# ------------------------------------------------------------------------ the answer


def test_every_field_is_parsed_nulls_included(fake_server, plan_body):
    body = plan_body(extra_key="kept in raw")
    fake_server.reply(200, body)
    plan = StyleTransferClient(base_url=fake_server.url).plan(CONTENT, STYLE, image_size=4096)
    assert isinstance(plan, Plan)
    assert (plan.width, plan.height) == (4096, 3072)
    assert plan.levels == (
        PlanLevel(side=1024, width=1024, height=768, iterations=100, tile=None, tiles=1, kept_tails=0, lbfgs_history=100,
                  peak_memory_bytes=4_000_000_000, seconds=60.5),
        PlanLevel(side=4096, width=4096, height=3072, iterations=100, tile=1024, tiles=16, kept_tails=3, lbfgs_history=8,
                  peak_memory_bytes=7_900_000_000, seconds=None),
    )
    assert (plan.peak_memory_bytes, plan.memory_budget_bytes, plan.seconds) == (7_900_000_000, 8_589_934_592, None)
    assert plan.params == body["params"]
    assert (plan.weights, plan.device, plan.request_id) == ("hed-bsds500-vgg16", "cpu", "abc")
    assert plan.raw == body and plan.raw["extra_key"] == "kept in raw"
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.seconds = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.levels[0].tiles = 2  # type: ignore[misc]
    assert plan.to_dict() == {k: v for k, v in body.items() if k != "extra_key"}
    older = {k: v for k, v in body["plan"]["levels"][1].items() if k != "kept_tails"}  # as an older server sends it
    assert PlanLevel.from_dict(older).kept_tails == 0


def test_measured_seconds_an_unknown_budget_and_no_request_id(fake_server, plan_body):
    body = plan_body(request_id=None)
    body["plan"].update(seconds=61, memory_budget_bytes=None)
    body["plan"]["levels"][1]["seconds"] = 0
    fake_server.reply(200, body)
    plan = StyleTransferClient(base_url=fake_server.url).plan(CONTENT, STYLE)
    assert plan.seconds == 61.0 and isinstance(plan.seconds, float)
    assert plan.levels[1].seconds == 0.0 and plan.memory_budget_bytes is None and plan.request_id is None


def _broken(plan_body: Any, path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """``plan_body()`` with the item at ``path`` set to ``value`` (``...``: deleted)."""
    body = copy.deepcopy(plan_body())
    target = body
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


@pytest.mark.parametrize("path, value", [
    (("plan",), ...),
    (("plan",), [1, 2]),
    (("plan", "levels"), []),
    (("plan", "levels"), [1]),
    (("plan", "width"), "4096"),
    (("plan", "height"), ...),
    (("plan", "peak_memory_bytes"), None),
    (("plan", "memory_budget_bytes"), 8.5),
    (("plan", "seconds"), "soon"),
    (("plan", "levels", 0, "tiles"), True),  # a bool is no count
    (("plan", "levels", 0, "tile"), "1024"),
    (("plan", "levels", 1, "kept_tails"), "3"),
    (("plan", "levels", 1, "side"), ...),
    (("plan", "levels", 1, "seconds"), [1]),
    (("params",), ...),
    (("weights",), 3),
    (("device",), None),
])
def test_a_malformed_plan_is_a_validation_error(fake_server, plan_body, path, value):
    fake_server.reply(200, _broken(plan_body, path, value))
    with pytest.raises(APIResponseValidationError, match="Malformed plan response") as info:
        StyleTransferClient(base_url=fake_server.url).plan(CONTENT, STYLE)
    assert isinstance(info.value.body, dict)


def test_an_image_answer_to_a_dry_run_is_a_validation_error(fake_server, success_body):
    fake_server.reply(200, success_body())  # a server that ignored dry_run
    with pytest.raises(APIResponseValidationError, match="'plan' is missing"):
        StyleTransferClient(base_url=fake_server.url).plan(CONTENT, STYLE)


def test_over_memory_budget_is_a_bad_request_with_its_field(fake_server):
    fake_server.reply(400, OVER_BUDGET)
    with pytest.raises(BadRequestError) as info:
        StyleTransferClient(base_url=fake_server.url).plan(CONTENT, STYLE, image_size=4096, tile_size=2048)
    err = info.value
    assert (err.status_code, err.code, err.field) == (400, "over_memory_budget", "params.tile_size")
    assert len(fake_server.requests) == 1  # a 400 is not retried


# ------------------------------------------------------------------------ async twin


def test_async_plan_sends_the_same_request_and_parses_the_same_plan(fake_server, plan_body):
    fake_server.reply(200, plan_body())
    kwargs: dict[str, Any] = dict(image_size=4096, tile_size=1024, style_masks=[CONTENT])
    sync = StyleTransferClient(base_url=fake_server.url, token="t").plan(CONTENT, STYLE, **kwargs)
    aio = arun(lambda c: c.plan(CONTENT, STYLE, **kwargs), base_url=fake_server.url, token="t")
    first, second = fake_server.requests
    assert (second.method, second.path, second.raw) == (first.method, first.path, first.raw)
    assert second.json["params"] == {"image_size": 4096, "tile_size": 1024, "dry_run": True}
    assert aio == sync


def test_async_errors_map_as_in_the_sync_client(fake_server, plan_body):
    fake_server.reply(400, OVER_BUDGET).reply(200, _broken(plan_body, ("plan", "levels"), []))
    with pytest.raises(BadRequestError) as info:
        arun(lambda c: c.plan(CONTENT, STYLE), base_url=fake_server.url)
    assert info.value.field == "params.tile_size"
    with pytest.raises(APIResponseValidationError):
        arun(lambda c: c.plan(CONTENT, STYLE), base_url=fake_server.url)
    with pytest.raises(ValueError, match=r"plan\("):
        arun(lambda c: c.stylize(CONTENT, STYLE, dry_run=True), base_url=fake_server.url)


# ------------------------------------------------------------------------ CLI


def test_cli_plan_prints_a_table_of_the_levels(fake_server, plan_body, capsys):
    fake_server.reply(200, plan_body())
    rc = cli.main(["plan", str(CONTENT), str(STYLE), "--url", fake_server.url, "--image-size", "4096",
                   "--scales", "1024,4096", "--tile-size", "1024"])
    assert rc == 0
    assert fake_server.requests[0].json["params"] == {"image_size": 4096, "scales": [1024, 4096], "tile_size": 1024,
                                                 "dry_run": True}
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "plan: 4096x3072 px in 2 levels, weights hed-bsds500-vgg16 on cpu"
    assert lines[1].split() == ["level", "side", "size", "iterations", "tiles", "L-BFGS", "history", "peak", "memory",
                                "seconds"]
    assert lines[2].split() == ["1", "1024", "1024x768", "100", "1", "(whole)", "100", "3.73", "GiB", "60.5"]
    assert lines[3].split() == ["2", "4096", "4096x3072", "100", "16", "(1024", "px),", "3", "kept", "8", "7.36",
                                "GiB", "unknown"]
    assert lines[4].split() == ["total", "200", "7.36", "GiB", "unknown"]
    assert lines[5] == "memory budget: 8.00 GiB (the peak is 92% of it)"
    assert len({len(line) for line in lines[1:4]}) == 1  # aligned columns


def test_cli_plan_without_a_budget(fake_server, plan_body, capsys):
    body = plan_body()
    body["plan"]["memory_budget_bytes"] = None
    fake_server.reply(200, body)
    assert cli.main(["plan", str(CONTENT), "--style", str(STYLE), "--url", fake_server.url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "memory budget: none reported"


def test_cli_plan_json_prints_the_plan_document(fake_server, plan_body, capsys):
    body = plan_body()
    fake_server.reply(200, body)
    assert cli.main(["plan", str(CONTENT), str(STYLE), "--url", fake_server.url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"ok": True, "command": "plan", **body}


def test_cli_plan_over_budget_exits_rejected(fake_server, capsys):
    fake_server.reply(400, OVER_BUDGET)
    rc = cli.main(["plan", str(CONTENT), str(STYLE), "--url", fake_server.url, "--tile-size", "2048", "--json"])
    assert rc == cli.EXIT_REJECTED
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["command"] == "plan"
    assert doc["error"]["code"] == "over_memory_budget" and doc["error"]["field"] == "params.tile_size"


def test_cli_plan_malformed_answer_exits_bad_response(fake_server, plan_body, capsys):
    fake_server.reply(200, _broken(plan_body, ("plan", "levels"), []))
    assert cli.main(["plan", str(CONTENT), str(STYLE), "--url", fake_server.url]) == cli.EXIT_BAD_RESPONSE
    assert "Malformed plan response" in capsys.readouterr().err


def test_cli_plan_needs_a_style_and_has_no_dry_run_flag(fake_server, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["plan", str(CONTENT), "--url", fake_server.url])
    assert info.value.code == cli.EXIT_USAGE
    with pytest.raises(SystemExit) as info:
        cli.main(["plan", str(CONTENT), str(STYLE), "--dry-run", "--url", fake_server.url])
    assert info.value.code == cli.EXIT_USAGE and fake_server.requests == []


@pytest.mark.parametrize("command", [["stylize", "-o", "out.png"], ["submit"]])
def test_stylize_and_submit_dry_run_print_the_plan(fake_server, plan_body, capsys, tmp_path, command):
    fake_server.reply(200, plan_body())
    rc = cli.main([command[0], str(CONTENT), str(STYLE), *command[1:], "--url", fake_server.url, "--iterations", "200",
                   "--dry-run", "--json"])
    assert rc == 0
    (req,) = fake_server.requests
    assert req.json["params"] == {"iterations": 200, "dry_run": True} and "job" not in req.json
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["command"] == command[0] and doc["plan"]["width"] == 4096
    assert not (tmp_path / "out.png").exists()


def test_sweep_refuses_dry_run(fake_server, tmp_path):
    rc = cli.main(["sweep", str(CONTENT), str(STYLE), "-o", str(tmp_path / "sw"), "--url", fake_server.url,
                   "--param", "iterations=1,2", "--dry-run"])
    assert rc == cli.EXIT_USAGE and fake_server.requests == [] and not (tmp_path / "sw").exists()


def test_cli_stylize_sends_tile_size(fake_server, tmp_path):
    assert cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--url", fake_server.url,
                     "--tile-size", "256"]) == 0
    assert fake_server.requests[0].json["params"] == {"tile_size": 256}  # the submit of its job

"""Run-time estimates: a plan's pixel-iterations, the progress event's ETA, a queued job's ETA."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from imagebytes import png_b64
from nst.options import StylizeOptions
from nst.plan import make_plan
from nst.records import Iterate
from nst_http.budget import FLAT, SpeedCurve
from nst_http.jobs import job_body
from nst_http.request import parse_request
from nst_http.response import plan_body, progress_event
from nst_jobs.store import QUEUED, RUNNING, SUCCEEDED, Job
from PIL import Image


def plan(iterations: int = 30, scales: tuple[int, ...] = (200, 400)):
    return make_plan((200, 400), [(64, 64)], StylizeOptions(iterations=iterations, scales=scales), long_side=400)


def test_work_counts_each_level_s_pixels_times_its_iterations() -> None:
    p = plan()
    sizes_steps = [(level.size[0] * level.size[1], level.iterations) for level in p.levels]
    assert len(sizes_steps) == 2 and sizes_steps[0][0] < sizes_steps[1][0]
    assert p.work == sum(px * steps for px, steps in sizes_steps)
    first = p.levels[0].iterations
    assert p.work_done(0) == 0 and p.work_done(first) == sizes_steps[0][0] * first
    assert p.work_done(first + 1) == sizes_steps[0][0] * first + sizes_steps[1][0]
    assert p.work_done(10**6) == p.work


def test_the_speed_curve_scales_each_level_by_the_pixels_one_pass_runs_on() -> None:
    p = plan()  # levels of 100x200 and 200x400 px
    coarse, fine = p.levels
    curve = SpeedCurve(reference=coarse.size[0] * coarse.size[1], exponent=0.5, hold=10**9)
    assert curve.weight(coarse) == 1.0 and curve.weight(fine) == pytest.approx(2.0)  # 4x the pixels
    assert curve.work(p) == pytest.approx(coarse.work + 2 * fine.work)
    assert curve.work(p, coarse.iterations + 1) == pytest.approx(coarse.work + 2 * fine.work / fine.iterations)
    held = replace(curve, hold=curve.reference * 2)  # held beyond 2x the reference
    assert held.weight(fine) == pytest.approx(2**0.5)
    assert replace(curve, reference=10**6).weight(coarse) == 1.0  # held below the reference
    assert FLAT.work(p) == p.work
    # A tiled level runs at the speed of its crops' size, not the image's.
    tiled = make_plan((1024, 1024), [(64, 64)], StylizeOptions(iterations=2, tile_size=256), long_side=1024).levels[0]
    assert tiled.tiles == 16 and 256**2 < tiled.pass_pixels < (256 + 2 * 80) ** 2


def test_a_dry_run_prices_each_level_with_the_curve() -> None:
    request = parse_request({"content": png_b64(Image.new("RGB", (400, 200))),
                             "style": png_b64(Image.new("RGB", (64, 64))),
                             "params": {"dry_run": True, "image_size": 400, "iterations": 30, "scales": [200, 400]}})
    coarse, fine = request.plan.levels
    curve = SpeedCurve(reference=coarse.size[0] * coarse.size[1], exponent=1.0, hold=10**9)
    body = plan_body(request, seconds_per_work=1e-3, curve=curve, budget=None, weights="w", device="cpu",
                     request_id=None)["plan"]
    assert [level["seconds"] for level in body["levels"]] == [round(coarse.work * 1e-3, 1),
                                                              round(4 * fine.work * 1e-3, 1)]
    assert body["seconds"] == round((coarse.work + 4 * fine.work) * 1e-3, 1)


def test_the_progress_eta_weighs_the_fine_level_by_its_pixels() -> None:
    """Half the iterations done at the coarse level is far less than half the run."""
    p = plan()
    first = p.levels[0].iterations
    event = progress_event(Iterate(first, 30, {"total": 1.0}, 0, 2), 10.0, p)
    per_iteration = 10.0 / first
    assert event["eta_s"] > per_iteration * (30 - first) * 2  # the fine level is 4x the pixels
    assert event["eta_s"] == pytest.approx(10.0 * (p.work - p.work_done(first)) / p.work_done(first), abs=1e-3)
    assert progress_event(Iterate(0, 30, {"total": 1.0}), 0.5, p)["eta_s"] is None


def job(state: str, estimate_s: float | None, **fields: Any) -> Job:
    accepted = Job(id="j", state=state, worker="m:w", created_s=100.0, started_s=None, finished_s=None, lease_s=10.0,
                   lease_until_s=None, cancel=None, progress=None, preview=None, result=None, error=None,
                   estimate_s=estimate_s)
    return replace(accepted, **fields)


def test_a_queued_job_s_eta_adds_what_the_jobs_ahead_have_left() -> None:
    running_with_progress = job(RUNNING, 50.0, started_s=100.0, progress={"eta_s": 7.5, "iteration": 3})
    running_without = job(RUNNING, 50.0, started_s=100.0)
    queued = job(QUEUED, 20.0)
    me = job(QUEUED, 4.0)
    body = job_body(me, [running_with_progress, queued], now=110.0)["job"]
    assert (body["position"], body["eta_s"]) == (2, 7.5 + 20.0 + 4.0)
    # Without progress yet: its estimate less the time it has run.
    assert job_body(me, [running_without], now=130.0)["job"]["eta_s"] == 50.0 - 30.0 + 4.0
    assert job_body(me, [job(QUEUED, None)], now=110.0)["job"]["eta_s"] is None  # one unknown: unknown
    assert job_body(running_without, [], now=130.0)["job"]["eta_s"] == 20.0  # running, no progress yet
    assert job_body(running_with_progress, [], now=130.0)["job"]["eta_s"] == 7.5
    assert job_body(job(QUEUED, None), [], now=110.0)["job"]["eta_s"] is None
    done = job_body(job(SUCCEEDED, 4.0, progress={"eta_s": 0.0}), [], now=110.0)["job"]
    assert (done["position"], done["eta_s"]) == (None, 0.0)

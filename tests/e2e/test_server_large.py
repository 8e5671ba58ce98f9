"""End to end: large-image planning against the real TorchServe, through the SDK and the CLI
(issue 13). Sizes stay small here; benchmarks/large_request.py sends the 4096 px request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nst_client import BadRequestError, cli
from PIL import ImageChops
from polling import poll

DATA = Path(__file__).resolve().parents[1] / "data"
CONTENT = DATA / "chelsea_128x96.png"
STYLE = DATA / "starry_night_64x64.png"
SHALLOW = {"content_layers": ["relu2_2"], "style_layers": ["relu1_1", "relu2_1"]}


def test_a_plan_through_the_sdk_shows_tiles_memory_and_seconds(torchserve_client) -> None:
    plan = torchserve_client.plan(CONTENT, STYLE, image_size=128, iterations=6, scales=2, tile_size=48)
    assert (plan.width, plan.height) == (128, 96) and plan.params["dry_run"] is True
    coarse, fine = plan.levels
    assert (coarse.side, coarse.tile, coarse.tiles) == (64, 48, 2)
    # Two bands: a 48 px tile's crop (48 + 2 x 80 halo) would hold the whole 128x96 level.
    assert (fine.side, fine.tile, fine.tiles) == (128, 48, 2)
    assert plan.memory_budget_bytes is not None and plan.peak_memory_bytes <= plan.memory_budget_bytes
    assert plan.peak_memory_bytes == max(level.peak_memory_bytes for level in plan.levels)
    assert plan.seconds is not None and fine.seconds is not None and coarse.seconds is not None
    assert plan.seconds == pytest.approx(fine.seconds + coarse.seconds, abs=0.15) and fine.seconds > coarse.seconds
    with pytest.raises(BadRequestError) as err:
        torchserve_client.plan(CONTENT, STYLE, image_size=8192)
    assert err.value.field == "params.image_size"


def test_a_plan_is_answered_while_a_job_runs(torchserve_client) -> None:
    job = torchserve_client.submit(CONTENT, STYLE, image_size=128, iterations=2000)
    try:
        poll(lambda: job.status().state, lambda state: state == "running", what="the job running")
        plan = torchserve_client.plan(CONTENT, STYLE, image_size=128, iterations=10)
        assert plan.levels[0].tiles == 1
        assert job.status().state == "running"  # answered beside the job, not after it
    finally:
        job.cancel()


def test_a_tiled_request_gives_the_whole_image_s_result(torchserve_client) -> None:
    # Two L-BFGS iterations: without a line search each one magnifies the runs' rounding
    # differences about a hundredfold (tests/engine/test_tiled.py), and a near-zero term's
    # relative difference with them, hence the absolute tolerance besides the relative one.
    whole = torchserve_client.stylize(CONTENT, STYLE, image_size=96, iterations=2, **SHALLOW)
    tiled = torchserve_client.stylize(CONTENT, STYLE, image_size=96, iterations=2, tile_size=32, **SHALLOW)
    assert tiled.params["tile_size"] == 32 and whole.params["tile_size"] is None
    assert tiled.image.size == whole.image.size == (96, 72)
    assert tiled.losses == pytest.approx(whole.losses, rel=1e-3, abs=1e-6)
    difference = ImageChops.difference(tiled.image.convert("RGB"), whole.image.convert("RGB"))
    assert max(difference.tobytes()) <= 1  # 8-bit levels


def test_nst_client_plan_prints_the_levels(torchserve, capsys) -> None:
    conn = ["--url", torchserve.url, "--key-file", str(torchserve.key_file), "--max-retries", "0"]
    argv = ["plan", str(CONTENT), str(STYLE), "--image-size", "128", "--iterations", "4", "--tile-size", "64", *conn]
    assert cli.main([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["command"] == "plan"
    assert [(lv["side"], lv["tiles"]) for lv in doc["plan"]["levels"]] == [(128, 2)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "GiB" in text and "128" in text

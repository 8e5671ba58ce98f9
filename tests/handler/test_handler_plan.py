"""Large images through the handler (issue 13): the memory budget, the dry-run plan, tiled runs
and the 400 for a level no tile fits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nst_service.run
import pytest
from nst_handler import NSTHandler
from nst_http.budget import peak_rss
from test_nst_handler import assert_error, make_context, model_dir, model_yaml_config, run  # noqa: F401 - model_dir: a fixture

MIB = 2**20


def handler_with(model_dir: Path, root_dir: Path, tmp_path: Path, **limits) -> tuple[NSTHandler, dict]:
    config = model_yaml_config(root_dir, jobs={"dir": str(tmp_path / "jobs")})
    config["handler"]["limits"] |= limits
    handler = NSTHandler()
    handler.initialize(make_context(model_dir, config))
    return handler, config


@pytest.fixture
def plain(model_dir, root_dir, tmp_path) -> Iterator[tuple[NSTHandler, dict]]:
    handler, config = handler_with(model_dir, root_dir, tmp_path)
    yield handler, config
    handler.service.worker.desk.close()


@pytest.fixture
def body(image_b64) -> dict:
    return {"content": image_b64("chelsea_128x96.png"), "style": image_b64("starry_night_64x64.png"),
            "params": {"iterations": 4, "image_size": 128, "scales": 2}}


def test_a_dry_run_answers_the_plan_without_optimizing(plain, model_dir, body, monkeypatch) -> None:
    handler, config = plain
    monkeypatch.setattr(nst_service.run, "stylize", lambda *a, **k: pytest.fail("a dry run must not optimize"))
    body["params"] |= {"dry_run": True, "tile_size": 64}
    (answer,), ctx = run(handler, model_dir, config, [{"body": body}])
    assert ctx.get_response_status(0) == (200, None) and set(answer) == {"plan", "params", "weights", "device",
                                                                          "request_id"}
    plan = answer["plan"]
    assert (plan["width"], plan["height"]) == (128, 96) and answer["params"]["dry_run"] is True
    coarse, fine = plan["levels"]
    assert (coarse["side"], coarse["width"], coarse["height"], coarse["iterations"]) == (64, 64, 48, 2)
    assert (coarse["tile"], coarse["tiles"]) == (None, 1)  # 64 px: no smaller than the tile
    # Two bands: a 64 px tile's crop (64 + 2 x 80 halo) would hold the whole 128x96 level.
    assert (fine["side"], fine["tile"], fine["tiles"]) == (128, 64, 2)
    # The worker's budget has room over the two bands: the first keeps its tail (the last keeps its whole graph).
    assert (coarse["kept_tails"], fine["kept_tails"]) == (0, 1)
    assert plan["memory_budget_bytes"] == handler.service.worker.budget.total
    assert plan["peak_memory_bytes"] == fine["peak_memory_bytes"] > coarse["peak_memory_bytes"] > handler.service.worker.budget.baseline
    # Seconds from the worker's speed, measured at start-up: the tiled level costs more per pixel.
    assert plan["seconds"] == pytest.approx(coarse["seconds"] + fine["seconds"], abs=0.15)
    assert fine["seconds"] > 4 * coarse["seconds"] > 0
    assert handler.service.worker.desk.store.get is not None and handler.service.worker.desk.store.active("nothing-ran") == 0


def test_a_tiled_run_through_the_handler_matches_the_whole_image(plain, model_dir, body) -> None:
    handler, config = plain
    body["params"] |= {"scales": 1, "iterations": 3, "content_layers": ["relu2_2"], "style_layers": ["relu1_1", "relu2_1"]}
    (whole,), _ = run(handler, model_dir, config, [{"body": body}])
    body["params"]["tile_size"] = 48
    (tiled,), _ = run(handler, model_dir, config, [{"body": body}])
    assert tiled["params"]["tile_size"] == 48 and whole["params"]["tile_size"] is None
    assert tiled["losses"] == pytest.approx(whole["losses"], rel=1e-4)


def test_a_small_budget_tiles_the_level_and_a_tiny_one_is_a_400(model_dir, root_dir, tmp_path, body) -> None:
    held_mib = peak_rss() // MIB
    handler, config = handler_with(model_dir, root_dir, tmp_path, memory_budget_mb=held_mib + 400)
    try:
        body["params"] |= {"image_size": 1024, "scales": 1, "dry_run": True}
        (answer,), _ = run(handler, model_dir, config, [{"body": body}])
        (level,) = answer["plan"]["levels"]
        assert level["tiles"] > 1 and level["tile"] < 1024 and level["lbfgs_history"] < 100
        assert answer["plan"]["peak_memory_bytes"] <= answer["plan"]["memory_budget_bytes"]
    finally:
        handler.service.worker.desk.close()
    handler, config = handler_with(model_dir, root_dir, tmp_path, memory_budget_mb=held_mib + 30)
    try:
        (answer,), ctx = run(handler, model_dir, config, [{"body": body}])
        assert_error(answer, ctx, 0, 400, "over_memory_budget", "params.image_size")
        assert "GiB" in answer["error"]["message"]
        body["params"] |= {"dry_run": False, "image_size": 32}  # small requests still run
        (small,), _ = run(handler, model_dir, config, [{"body": body}])
        assert small["width"] == 32
    finally:
        handler.service.worker.desk.close()


def test_a_dry_run_cannot_stream(plain, model_dir, body) -> None:
    handler, config = plain
    body["params"] |= {"dry_run": True, "stream": True}
    (answer,), ctx = run(handler, model_dir, config, [{"body": body}])
    assert_error(answer, ctx, 0, 400, "invalid_choice", "params.dry_run")

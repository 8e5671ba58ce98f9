"""End to end: every stylization control reaches the engine through HTTP, the SDK and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from nst.options import RECONSTRUCTION_TV_WEIGHT
from nst_client import BadRequestError
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "data"
CONTENT = DATA / "chelsea_128x96.png"
STARRY = DATA / "starry_night_64x64.png"
SCREAM = DATA / "the_scream_128x96.png"
FAST = {"image_size": 64, "iterations": 4}


def test_every_control_in_one_request(torchserve_client):
    left = Image.new("RGB", (64, 48), "black")
    left.paste((255, 255, 255), (32, 0, 64, 48))  # content mask: left black, right white
    result = torchserve_client.stylize(
        CONTENT, [STARRY, SCREAM],
        style_blend_weights=[3, 1], style_scale=0.75, color_control="luminance", init="image",
        init_image=SCREAM, pooling="avg", content_layers=["relu3_2"], style_layers=["relu1_1", "relu2_1"],
        style_layer_weights=[1, 3], optimizer="adam", learning_rate=0.05, scales=2, mode="stylize",
        return_history=True, content_mask=left,
        style_masks=[Image.new("RGB", (8, 8), "black"), Image.new("RGB", (8, 8), "white")], **FAST,
    )
    assert result.image.size == (64, 48)
    p = result.params
    assert p["style_blend_weights"] == [0.75, 0.25] and p["style_layer_weights"] == [0.25, 0.75]
    assert p["scales"] == [32, 64] and p["pooling"] == "avg" and p["optimizer"] == "adam"
    assert p["color_control"] == "luminance" and p["init"] == "image" and p["style_scale"] == 0.75
    assert p["content_layers"] == ["relu3_2"] and p["style_layers"] == ["relu1_1", "relu2_1"]
    assert result.history is not None and len(result.history) == result.iterations == 4
    assert [h["iteration"] for h in result.history] == [1, 2, 3, 4]
    last = {k: v for k, v in result.history[-1].items() if k != "iteration"}
    assert last == result.losses


def test_reconstruction_mode_echoes_what_ran(torchserve_client):
    result = torchserve_client.stylize(CONTENT, STARRY, mode="reconstruct_content", **FAST)
    assert result.params["init"] == "noise"
    assert result.params["style_weight"] == 0.0 and result.params["tv_weight"] == RECONSTRUCTION_TV_WEIGHT
    assert result.params["scales"] == [32, 64]  # coarse to fine from 32 px, as it ran


def test_unknown_layer_is_a_400_listing_valid_names(torchserve_client):
    with pytest.raises(BadRequestError) as err:
        torchserve_client.stylize(CONTENT, STARRY, style_layers=["relu9_9"], **FAST)
    assert err.value.field == "params.style_layers[0]"
    assert "relu5_4" in str(err.value)


def test_cli_repeatable_style_and_history(torchserve, tmp_path):
    out, history = tmp_path / "out.png", tmp_path / "history.json"
    proc = subprocess.run(
        [sys.executable, "-m", "nst_client", "stylize", str(CONTENT), str(STARRY), "--style", str(SCREAM),
         "--style-blend-weights", "1,1", "--scales", "2", "--history-out", str(history), "-o", str(out),
         "--url", torchserve.url, "--key-file", str(torchserve.key_file), "--image-size", "64", "--iterations", "2"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (64, 48)
    assert len(json.loads(history.read_text())) == 2


def test_time_budget_stops_early_and_says_so(torchserve_client):
    result = torchserve_client.stylize(CONTENT, STARRY, image_size=64, iterations=2000, time_budget_s=1.0, return_history=True)
    assert result.stopped == "time_budget"
    assert 1 <= result.iterations < 2000
    assert result.params["time_budget_s"] == 1.0
    assert result.history is not None and len(result.history) == result.iterations
    assert result.image.size == (64, 48)
    assert torchserve_client.stylize(CONTENT, STARRY, **FAST).stopped == "iterations"


def test_repeated_style_is_a_cache_hit_with_identical_pixels(torchserve_client):
    style = Image.open(SCREAM).transpose(Image.Transpose.FLIP_LEFT_RIGHT)  # a style no other test sends
    first = torchserve_client.stylize(CONTENT, style, seed=3, **FAST)
    second = torchserve_client.stylize(CONTENT, style, seed=3, **FAST)
    assert (first.cache, second.cache) == ("miss", "hit")
    assert first.image_bytes == second.image_bytes

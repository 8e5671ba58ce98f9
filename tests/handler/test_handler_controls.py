"""The stylization controls through the TorchServe handler (BaseHandler.handle, real ts Context):
several styles with masks and an init image on a coarse-to-fine run, the loss history, and mask
errors that fail their own row only."""

from __future__ import annotations

import base64
import io
from typing import Any

import nst_service.run
import pytest
from imagebytes import png_b64
from nst.options import RECONSTRUCTION_TV_WEIGHT
from nst.stylize import StylizeOptions
from PIL import Image
from test_nst_handler import (  # noqa: F401 - config, handler and model_dir are fixtures
    assert_error,
    config,
    handler,
    model_dir,
    run,
)

SHALLOW = {"content_layers": ["relu2_1"], "style_layers": ["relu1_1", "relu2_1"]}
RED, BLUE = (255, 0, 0), (0, 0, 255)



def flat_mask(size: tuple[int, int], rgb: tuple[int, int, int]) -> str:
    return png_b64(Image.new("RGB", size, rgb))


def halves_mask(size: tuple[int, int]) -> str:
    """Left half red, right half blue."""
    img = Image.new("RGB", size, RED)
    img.paste(BLUE, (size[0] // 2, 0, size[0], size[1]))
    return png_b64(img)


@pytest.fixture
def recorded_calls(monkeypatch) -> list[dict[str, Any]]:
    """Records what the handler hands to the engine, then runs the real engine."""
    real = nst_service.run.stylize
    calls: list[dict[str, Any]] = []

    def recording(content, styles, features, options, **kwargs):
        calls.append({"content": content, "styles": styles, "options": options, **kwargs})
        return real(content, styles, features, options, **kwargs)

    monkeypatch.setattr(nst_service.run, "stylize", recording)
    return calls


def test_every_control_in_one_request(handler, model_dir, config, image_b64, recorded_calls) -> None:
    body = {
        "content": image_b64("tubingen_64x64.png"),
        "style": [image_b64("starry_night_64x64.png"), image_b64("the_scream_128x96.png")],
        "init_image": image_b64("chelsea_128x96.png"),
        "content_mask": halves_mask((64, 64)),
        "style_masks": [flat_mask((64, 64), RED), flat_mask((128, 96), BLUE)],
        "params": {
            "image_size": 32, "iterations": 4, "scales": 2, "style_blend_weights": [3, 1], "init": "image",
            "return_history": True, "pooling": "avg", "optimizer": "adam", "learning_rate": 0.05, **SHALLOW,
        },
    }
    (out,), ctx = run(handler, model_dir, config, [{"body": body}])
    assert ctx.get_response_status(0) == (200, None), out
    assert (out["width"], out["height"], out["iterations"]) == (32, 32, 4)
    image = Image.open(io.BytesIO(base64.b64decode(out["image"])))
    assert image.format == "PNG" and image.size == (32, 32)
    p = out["params"]
    assert p["style_blend_weights"] == [0.75, 0.25]  # normalized, as run
    assert p["scales"] == [16, 32]  # every level's long side
    assert (p["init"], p["pooling"], p["optimizer"], p["learning_rate"], p["return_history"]) == (
        "image", "avg", "adam", 0.05, True)
    assert (p["content_layers"], p["style_layers"], p["mode"]) == (["relu2_1"], ["relu1_1", "relu2_1"], "stylize")
    assert [h["iteration"] for h in out["history"]] == [1, 2, 3, 4]
    assert {k: v for k, v in out["history"][-1].items() if k != "iteration"} == out["losses"]
    assert all(v == v for v in out["losses"].values())  # no NaN
    # What reached the engine: the options of the echoed params, images at the output's size,
    # the masks at their own resolution.
    (call,) = recorded_calls
    assert call["options"] == StylizeOptions(
        iterations=4, init="image", style_blend_weights=(0.75, 0.25), scales=(16, 32), pooling="avg",
        optimizer="adam", learning_rate=0.05, content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))
    assert tuple(call["content"].shape) == (1, 3, 32, 32)
    assert [tuple(s.shape) for s in call["styles"]] == [(1, 3, 32, 32), (1, 3, 24, 32)]
    assert tuple(call["init_image"].shape) == (1, 3, 24, 32)
    assert tuple(call["content_mask"].shape) == (1, 3, 64, 64)
    assert [tuple(m.shape) for m in call["style_masks"]] == [(1, 3, 64, 64), (1, 3, 96, 128)]


def test_history(handler, model_dir, config, image_b64) -> None:
    body = {"content": image_b64("chelsea_128x96.png"), "style": image_b64("starry_night_64x64.png"),
            "params": {"image_size": 32, "iterations": 3, "return_history": True}}
    plain = {**body, "params": {**body["params"], "return_history": False}}
    (out, without), _ = run(handler, model_dir, config, [{"body": body}, {"body": plain}])
    history = out["history"]
    assert len(history) == out["iterations"] == 3
    assert all(set(h) == {"iteration", "content", "style", "tv", "total"} for h in history)
    assert [h["iteration"] for h in history] == [1, 2, 3]
    assert all(isinstance(h[k], float) for h in history for k in ("content", "style", "tv", "total"))
    assert {k: v for k, v in history[-1].items() if k != "iteration"} == out["losses"]
    assert out["params"]["return_history"] is True
    assert "history" not in without and without["iterations"] == 3
    assert without["losses"] == out["losses"]  # the same run, only reported differently


def test_noisy_content_mask_fails_its_row_only(handler, model_dir, config, image_b64) -> None:
    good = {"content": image_b64("tubingen_64x64.png"), "style": image_b64("starry_night_64x64.png"),
            "params": {"image_size": 32, "iterations": 1, **SHALLOW}}
    # A photo is no label map: far more than 16 colours.
    noisy = good | {"content_mask": image_b64("chelsea_128x96.png"), "style_masks": [flat_mask((64, 64), RED)]}
    (first, second), ctx = run(handler, model_dir, config, [{"body": noisy}, {"body": good}])
    assert_error(first, ctx, 0, 400, "invalid_mask", "content_mask")
    assert "16" in first["error"]["message"]
    assert ctx.get_response_status(1) == (200, None)
    assert (second["width"], second["height"], second["iterations"], second["request_id"]) == (32, 32, 1, "r1")


def test_mask_regions_without_a_style(handler, model_dir, config, image_b64) -> None:
    base = {"content": image_b64("tubingen_64x64.png"),
            "style": [image_b64("starry_night_64x64.png"), image_b64("the_scream_128x96.png")],
            "content_mask": halves_mask((64, 64)), "params": {"image_size": 32, "iterations": 1, **SHALLOW}}
    # Blue is in no style mask.
    uncovered = base | {"style_masks": [flat_mask((8, 8), RED), flat_mask((8, 8), RED)]}
    # Blue is only in the mask of a style blended with weight 0 (was a NaN image, not an error).
    zero_weight = base | {"style_masks": [flat_mask((8, 8), RED), flat_mask((8, 8), BLUE)],
                          "params": base["params"] | {"style_blend_weights": [1, 0]}}
    (first, second), ctx = run(handler, model_dir, config, [{"body": uncovered}, {"body": zero_weight}])
    assert_error(first, ctx, 0, 400, "invalid_mask", "content_mask")
    assert_error(second, ctx, 1, 400, "invalid_mask", "content_mask")
    assert "(0, 0, 255)" in first["error"]["message"] and "(0, 0, 255)" in second["error"]["message"]


def test_scales_halving_below_a_pixel_are_a_400(handler, model_dir, config, image_b64) -> None:
    body = {"content": image_b64("tubingen_64x64.png"), "style": image_b64("starry_night_64x64.png"),
            "params": {"image_size": 64, "iterations": 8, "scales": 8, "content_layers": ["relu1_1"],
                       "style_layers": ["relu1_1"]}}
    (out,), ctx = run(handler, model_dir, config, [{"body": body}])
    assert_error(out, ctx, 0, 400, "out_of_range", "params.scales")


def test_reconstruction_through_the_handler(handler, model_dir, config, image_b64) -> None:
    body = {"content": image_b64("tubingen_64x64.png"), "style": image_b64("starry_night_64x64.png"),
            "params": {"image_size": 32, "iterations": 3, "mode": "reconstruct_content", "return_history": True, **SHALLOW}}
    (out,), ctx = run(handler, model_dir, config, [{"body": body}])
    assert ctx.get_response_status(0) == (200, None)
    p = out["params"]
    assert (p["init"], p["content_weight"], p["style_weight"], p["tv_weight"]) == ("noise", 1.0, 0.0, RECONSTRUCTION_TV_WEIGHT)
    assert all(h["total"] == pytest.approx(h["content"] + RECONSTRUCTION_TV_WEIGHT * h["tv"], rel=1e-5)
               for h in out["history"])
    assert out["losses"]["content"] > 0  # started from noise, not at the content

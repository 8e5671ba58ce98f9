"""Request validation of the stylization controls: several styles and their blend weights, layers
and layer weights, scales, init image, masks, modes, history, style scale, and the mapping of the
effective parameters to :class:`nst.stylize.StylizeOptions`."""

from __future__ import annotations

import dataclasses

import pytest
from imagebytes import png_b64 as _b64_png
from nst.options import MAX_LEVELS, RECONSTRUCTION_TV_WEIGHT, StylizeOptions, declared
from nst.plan import pyramid_sides
from nst_http.errors import RequestError
from nst_http.params import Limits, parse_params
from nst_http.request import parse_request
from PIL import Image


def _error(fn, *args, **kwargs) -> RequestError:
    with pytest.raises(RequestError) as info:
        fn(*args, **kwargs)
    return info.value


def assert_400(error: RequestError, code: str, field: str | None) -> None:
    assert (error.status, error.code, error.field) == (400, code, field), error.message
    assert error.message


@pytest.fixture
def body(image_b64) -> dict:
    return {"content": image_b64("chelsea_128x96.png"), "style": image_b64("starry_night_64x64.png"),
            "params": {"image_size": 64, "iterations": 4}}


@pytest.fixture(scope="module")
def mask_b64() -> str:
    return _b64_png(Image.new("RGB", (16, 12), (255, 0, 0)))


# --- several styles ----------------------------------------------------------------------------

def test_style_as_a_list(body: dict, image_b64) -> None:
    body["style"] = [image_b64("starry_night_64x64.png"), image_b64("the_scream_128x96.png")]
    request = parse_request(body)
    assert [s.size for s in request.styles] == [(64, 64), (128, 96)]
    assert request.style is request.styles[0]
    single = parse_request(body | {"style": [image_b64("the_scream_128x96.png")]})
    assert [s.size for s in single.styles] == [(128, 96)]


def test_too_many_styles(body: dict, image_b64) -> None:
    body["style"] = [image_b64("starry_night_64x64.png")] * 5  # Limits().max_styles is 4
    assert_400(_error(parse_request, body), "out_of_range", "style")
    body["style"] = body["style"][:2]
    assert_400(_error(parse_request, body, limits=Limits(max_styles=1)), "out_of_range", "style")
    assert len(parse_request(body, limits=Limits(max_styles=2)).styles) == 2


@pytest.mark.parametrize("make, code, field", [
    (lambda ok: [], "invalid_type", "style"),
    (lambda ok: {"a": ok}, "invalid_type", "style"),
    (lambda ok: [ok, "%%%"], "invalid_base64", "style[1]"),
    (lambda ok: [ok, 3], "invalid_type", "style[1]"),
])
def test_bad_style_lists(body: dict, image_b64, make, code: str, field: str) -> None:
    body["style"] = make(image_b64("starry_night_64x64.png"))
    assert_400(_error(parse_request, body), code, field)


# --- blend weights -----------------------------------------------------------------------------

def test_blend_weights_are_one_per_style(body: dict, image_b64) -> None:
    body["style"] = [image_b64("starry_night_64x64.png"), image_b64("the_scream_128x96.png")]
    body["params"]["style_blend_weights"] = [1.0, 2.0, 3.0]
    assert_400(_error(parse_request, body), "out_of_range", "params.style_blend_weights")
    body["params"]["style_blend_weights"] = [1.0]
    assert_400(_error(parse_request, body), "out_of_range", "params.style_blend_weights")
    # A single style given as a string counts as one.
    single = body | {"style": image_b64("starry_night_64x64.png"), "params": {"style_blend_weights": [1, 1]}}
    assert_400(_error(parse_request, single), "out_of_range", "params.style_blend_weights")
    body["params"]["style_blend_weights"] = [3, 1]
    request = parse_request(body)
    assert request.params["style_blend_weights"] == [0.75, 0.25]  # normalized, as run
    assert request.options().style_blend_weights == (0.75, 0.25)


def test_blend_weights_values() -> None:
    assert_400(_error(parse_params, {"style_blend_weights": [1.0, -0.5]}), "out_of_range", "params.style_blend_weights[1]")
    assert_400(_error(parse_params, {"style_blend_weights": [0, 0.0]}), "out_of_range", "params.style_blend_weights")
    assert_400(_error(parse_params, {"style_blend_weights": []}), "out_of_range", "params.style_blend_weights")
    assert_400(_error(parse_params, {"style_blend_weights": 0.5}), "invalid_type", "params.style_blend_weights")
    assert_400(_error(parse_params, {"style_blend_weights": ["a"]}), "invalid_type", "params.style_blend_weights[0]")
    assert parse_params({"style_blend_weights": [1, 0]})["style_blend_weights"] == [1.0, 0.0]
    assert parse_params({"style_blend_weights": None})["style_blend_weights"] is None


# --- layers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["content_layers", "style_layers"])
def test_unknown_layer_lists_the_valid_names(name: str) -> None:
    error = _error(parse_params, {name: ["relu1_1", "relu9_1"]})
    assert_400(error, "invalid_choice", f"params.{name}[1]")
    assert "relu9_1" in error.message
    assert "relu5_4" in error.message and "conv1_1" in error.message and "pool5" in error.message
    assert_400(_error(parse_params, {name: []}), "out_of_range", f"params.{name}")
    assert_400(_error(parse_params, {name: "relu1_1"}), "invalid_type", f"params.{name}")


@pytest.mark.parametrize("name", ["content_layers", "style_layers"])
def test_a_layer_the_served_network_lacks_is_refused_with_its_layers(name: str) -> None:
    """``relu5_4`` is VGG19's; on a served VGG16 it is a 400 listing VGG16's names."""
    assert parse_params({name: ["relu5_4"]}, network="vgg19")[name] == ["relu5_4"]
    error = _error(parse_params, {name: ["relu1_1", "relu5_4"]}, network="vgg16")
    assert_400(error, "invalid_choice", f"params.{name}[1]")
    valid = error.message.split("valid names:")[1]
    assert "relu5_3" in valid and "pool5" in valid and "relu5_4" not in valid and "conv3_4" not in valid
    assert parse_params({name: ["relu5_3"]}, network="vgg16")[name] == ["relu5_3"]


def test_custom_layers_are_echoed() -> None:
    p = parse_params({"content_layers": ["relu2_2"], "style_layers": ["relu1_1", "conv3_1"]})
    assert (p["content_layers"], p["style_layers"]) == (["relu2_2"], ["relu1_1", "conv3_1"])


def test_style_layer_weights() -> None:
    assert_400(_error(parse_params, {"style_layer_weights": [1, 1]}), "out_of_range", "params.style_layer_weights")
    assert_400(_error(parse_params, {"style_layers": ["relu1_1"], "style_layer_weights": [1, 2]}),
               "out_of_range", "params.style_layer_weights")
    assert_400(_error(parse_params, {"style_layer_weights": [0] * 5}), "out_of_range", "params.style_layer_weights")
    assert_400(_error(parse_params, {"style_layer_weights": [1, 1, 1, 1, -1]}),
               "out_of_range", "params.style_layer_weights[4]")
    p = parse_params({"style_layers": ["relu1_1", "relu2_1"], "style_layer_weights": [1, 3]})
    assert p["style_layer_weights"] == [0.25, 0.75]


# --- scales ------------------------------------------------------------------------------------

def test_scales_as_a_level_count() -> None:
    assert parse_params({"image_size": 64, "iterations": 4, "scales": 2})["scales"] == [32, 64]
    assert parse_params({"image_size": 512, "scales": 3})["scales"] == list(pyramid_sides(512, 3)) == [128, 256, 512]
    assert parse_params({"image_size": 64, "scales": 1})["scales"] == [64]


def test_scales_as_long_sides() -> None:
    assert parse_params({"image_size": 64, "iterations": 4, "scales": [32, 64]})["scales"] == [32, 64]
    assert parse_params({"image_size": 64, "iterations": 4, "scales": [32]})["scales"] == [32, 64]  # image_size appended
    assert parse_params({"image_size": 64, "scales": [64]})["scales"] == [64]
    assert parse_params({"image_size": 256, "scales": [16, 64, 128]})["scales"] == [16, 64, 128, 256]


@pytest.mark.parametrize("scales, code", [
    ([64, 32], "out_of_range"),  # decreasing
    ([32, 32], "out_of_range"),  # repeated
    ([8, 64], "out_of_range"),  # below 16 pixels
    ([32, 128], "out_of_range"),  # above image_size
    (list(range(16, 16 + MAX_LEVELS + 1)), "out_of_range"),  # too many levels
    (list(range(16, 16 + MAX_LEVELS)), "out_of_range"),  # too many once image_size is appended
    (0, "out_of_range"),
    (MAX_LEVELS + 1, "out_of_range"),
    ("2", "invalid_type"),
    (2.0, "invalid_type"),
    (True, "invalid_type"),
    ([], "invalid_type"),
    ([32.0, 64], "invalid_type"),
    ([None], "invalid_type"),
])
def test_bad_scales(scales, code: str) -> None:
    assert_400(_error(parse_params, {"image_size": 64, "iterations": 20, "scales": scales}), code, "params.scales")


def test_scales_that_halve_below_one_pixel_are_refused() -> None:
    # 8 levels halving 64 px would start at 64 / 128 px; halving 20 px 6 times repeats 1 px. With
    # conv1_1 only no layer needs more than 1 pixel, so nothing else catches it, and the engine
    # would refuse these scales (a 500) after the request was accepted.
    layers = {"content_layers": ["relu1_1"], "style_layers": ["relu1_1"], "iterations": 20}
    for image_size, levels in ((64, 8), (16, 8), (20, 6)):
        error = _error(parse_params, layers | {"image_size": image_size, "scales": levels})
        assert_400(error, "out_of_range", "params.scales")
    assert parse_params(layers | {"image_size": 64, "scales": 7})["scales"] == [1, 2, 4, 8, 16, 32, 64]
    StylizeOptions(iterations=20, scales=(1, 2, 4, 8, 16, 32, 64))  # what the engine then gets is valid


def test_steps_must_cover_every_scale() -> None:
    assert_400(_error(parse_params, {"image_size": 64, "iterations": 2, "scales": 3}), "out_of_range", "params.iterations")
    assert_400(_error(parse_params, {"image_size": 64, "iterations": 1, "scales": [32]}), "out_of_range", "params.iterations")
    assert parse_params({"image_size": 64, "iterations": 3, "scales": 3})["scales"] == [16, 32, 64]


def test_a_coarse_scale_too_small_for_the_layers(body: dict) -> None:
    body["params"].update(scales=[16])  # chelsea is 4:3: 16x12 is too small for relu5_1
    assert_400(_error(parse_request, body), "image_too_small", "params.scales")
    body["params"].update(style_layers=["relu1_1", "relu2_1"], content_layers=["relu2_1"])
    assert parse_request(body).params["scales"] == [16, 64]


def test_a_content_reconstruction_echoes_the_levels_it_runs(body: dict) -> None:
    body["params"].update(mode="reconstruct_content", iterations=40)
    assert parse_request(body).params["scales"] == [32, 64]  # coarse to fine from 32 px (nst.plan)
    body["params"].update(mode="reconstruct_style")
    assert parse_request(body).params["scales"] == [64]


# --- init image --------------------------------------------------------------------------------

def test_init_image(body: dict, image_b64) -> None:
    body["params"]["init"] = "image"
    assert_400(_error(parse_request, body), "missing_field", "init_image")
    assert_400(_error(parse_request, body | {"init_image": None}), "missing_field", "init_image")
    body["init_image"] = image_b64("the_scream_128x96.png")
    request = parse_request(body)
    assert request.init_image is not None and request.init_image.size == (128, 96)
    assert request.options().init == "image"
    body["params"]["init"] = "content"
    error = _error(parse_request, body)
    assert_400(error, "invalid_choice", "params.init")
    assert "init_image" in error.message
    body["init_image"] = "%%%"
    body["params"]["init"] = "image"
    assert_400(_error(parse_request, body), "invalid_base64", "init_image")


# --- masks -------------------------------------------------------------------------------------

def test_masks(body: dict, image_b64, mask_b64: str) -> None:
    assert_400(_error(parse_request, body | {"content_mask": mask_b64}), "missing_field", "style_masks")
    assert_400(_error(parse_request, body | {"style_masks": [mask_b64]}), "missing_field", "content_mask")
    two_styles = body | {"style": [image_b64("starry_night_64x64.png")] * 2, "content_mask": mask_b64}
    assert_400(_error(parse_request, two_styles | {"style_masks": [mask_b64]}), "out_of_range", "style_masks")
    assert_400(_error(parse_request, two_styles | {"style_masks": [mask_b64] * 3}), "out_of_range", "style_masks")
    assert_400(_error(parse_request, two_styles | {"style_masks": mask_b64}), "invalid_type", "style_masks")
    assert_400(_error(parse_request, two_styles | {"style_masks": [mask_b64, "%%%"]}), "invalid_base64", "style_masks[1]")
    assert_400(_error(parse_request, two_styles | {"content_mask": 3, "style_masks": [mask_b64] * 2}),
               "invalid_type", "content_mask")
    request = parse_request(two_styles | {"style_masks": [mask_b64, mask_b64]})
    assert request.content_mask is not None and request.content_mask.size == (16, 12)
    assert request.style_masks is not None and [m.size for m in request.style_masks] == [(16, 12)] * 2
    plain = parse_request(body)
    assert plain.content_mask is None and plain.style_masks is None


# --- modes -------------------------------------------------------------------------------------

def test_reconstruction_modes_echo_what_runs() -> None:
    # The total variation term stays, as the reconstructed term's weight times RECONSTRUCTION_TV_WEIGHT.
    p = parse_params({"mode": "reconstruct_content", "content_weight": 5})
    assert (p["mode"], p["init"], p["content_weight"], p["style_weight"], p["tv_weight"]) == (
        "reconstruct_content", "noise", 5.0, 0.0, 5.0 * RECONSTRUCTION_TV_WEIGHT)
    p = parse_params({"mode": "reconstruct_content", "content_weight": 0})
    assert p["content_weight"] == 1.0  # a reconstruction with nothing to match would do nothing
    p = parse_params({"mode": "reconstruct_style", "init": "content"})
    assert (p["init"], p["content_weight"], p["style_weight"], p["tv_weight"]) == (
        "noise", 0.0, 10.0, 10.0 * RECONSTRUCTION_TV_WEIGHT)
    p = parse_params({"mode": "stylize", "init": "style"})
    assert (p["init"], p["content_weight"], p["style_weight"], p["tv_weight"]) == ("style", 1.0, 10.0, 10.0)
    assert_400(_error(parse_params, {"mode": "reconstruct"}), "invalid_choice", "params.mode")


def test_reconstruction_refuses_an_init_image(body: dict, image_b64) -> None:
    body["params"].update(mode="reconstruct_content", init="image")
    body["init_image"] = image_b64("the_scream_128x96.png")
    # The reconstruction starts from noise: the image would be ignored.
    assert_400(_error(parse_request, body), "invalid_choice", "params.init")


# --- return_history, style_scale, choices ------------------------------------------------------

@pytest.mark.parametrize("value", [1, 0, "true", None, [True]])
def test_return_history_must_be_a_boolean(value) -> None:
    assert_400(_error(parse_params, {"return_history": value}), "invalid_type", "params.return_history")


def test_return_history() -> None:
    assert parse_params({"return_history": True})["return_history"] is True
    assert parse_params({})["return_history"] is False


def test_style_scale_limits(body: dict) -> None:
    # The style may be at most twice max_image_side pixels on its long side.
    assert parse_params({"image_size": 4096, "style_scale": 2.0})["style_scale"] == 2.0
    assert_400(_error(parse_params, {"image_size": 4096, "style_scale": 2.5}), "out_of_range", "params.style_scale")
    small = Limits(max_image_side=64)
    assert parse_params({"image_size": 64, "style_scale": 2.0}, limits=small)["style_scale"] == 2.0
    assert_400(_error(parse_params, {"image_size": 64, "style_scale": 2.5}, limits=small), "out_of_range",
               "params.style_scale")
    assert_400(_error(parse_params, {"style_scale": 0.0}), "out_of_range", "params.style_scale")
    assert_400(_error(parse_params, {"style_scale": 9.0}), "out_of_range", "params.style_scale")
    # Too small a style for the layers in use names style_scale.
    body["params"]["style_scale"] = 0.1  # a 6 px style at image_size 64
    assert_400(_error(parse_request, body), "image_too_small", "params.style_scale")


@pytest.mark.parametrize("name, value", [
    ("color_control", "colour"), ("pooling", "min"), ("optimizer", "sgd"), ("init", "random"), ("mode", "transfer"),
    ("precision", "fp16"), ("style_loss", "w3"),
])
def test_control_choices(name: str, value: str) -> None:
    error = _error(parse_params, {name: value})
    assert_400(error, "invalid_choice", f"params.{name}")
    assert value in error.message


@pytest.mark.parametrize("value, code", [("w3", "invalid_choice"), ("W2", "invalid_choice"), ("wasserstein", "invalid_choice"),
                                         (2, "invalid_type"), (None, "invalid_type")])
def test_a_bad_style_loss_is_a_400_naming_it(body: dict, value, code: str) -> None:
    body["params"]["style_loss"] = value
    error = _error(parse_request, body)
    assert_400(error, code, "params.style_loss")
    if code == "invalid_choice":
        assert all(choice in error.message for choice in ("gram", "w2", repr(value))), error.message


@pytest.mark.parametrize("value", ["gram", "w2"])
def test_style_loss_is_echoed_and_reaches_the_options(body: dict, value: str) -> None:
    body["params"]["style_loss"] = value
    request = parse_request(body)
    assert (request.params["style_loss"], request.options().style_loss) == (value, value)
    del body["params"]["style_loss"]
    assert parse_request(body).params["style_loss"] == "gram"  # the default, echoed


@pytest.mark.parametrize("name, value", [("learning_rate", 0.0), ("learning_rate", 2.0), ("lbfgs_history", 0)])
def test_optimizer_settings_out_of_range(name: str, value) -> None:
    assert_400(_error(parse_params, {name: value}), "out_of_range", f"params.{name}")


# --- StyleRequest.options ----------------------------------------------------------------------

def test_options_map_every_param(body: dict, image_b64) -> None:
    body["style"] = [image_b64("starry_night_64x64.png"), image_b64("the_scream_128x96.png")]
    body["init_image"] = image_b64("the_scream_128x96.png")
    body["params"] = {
        "image_size": 64, "iterations": 7, "content_weight": 2.0, "style_weight": 3.0, "tv_weight": 4.0, "init": "image",
        "seed": 5, "content_layers": ["relu3_1"], "style_layers": ["relu1_1", "relu2_1"],
        "style_layer_weights": [1, 3], "style_blend_weights": [3, 1], "style_scale": 1.5,
        "color_control": "histogram", "pooling": "avg", "optimizer": "adam", "learning_rate": 0.1,
        "lbfgs_history": 7, "precision": "bf16", "scales": 2, "mode": "stylize", "time_budget_s": 30,
        "tile_size": 48, "style_loss": "w2",
    }
    options = parse_request(body).options()
    assert options == StylizeOptions(
        iterations=7, content_weight=2.0, style_weight=3.0, tv_weight=4.0, init="image", seed=5,
        content_layers=("relu3_1",), style_layers=("relu1_1", "relu2_1"), style_layer_weights=(0.25, 0.75),
        style_blend_weights=(0.75, 0.25), style_scale=1.5, color_control="histogram", pooling="avg", style_loss="w2",
        optimizer="adam", learning_rate=0.1, lbfgs_history=7, precision="bf16", scales=(32, 64), mode="stylize",
        time_budget_s=30.0, tile_size=48,
    )
    # Every option was set away from its default, so a parameter options() dropped would show.
    default = StylizeOptions()
    differ = {f.name for f in dataclasses.fields(StylizeOptions) if getattr(options, f.name) != getattr(default, f.name)}
    # The undeclared fields (gradient_checkpointing, the study's switches) are not request
    # parameters: a request leaves them at their defaults.
    assert differ == {name for name, _, _ in declared(StylizeOptions)} - {"mode"}
    for mode in ("reconstruct_content", "reconstruct_style"):
        body["params"] |= {"mode": mode, "init": "noise"}
        request = parse_request(body | {"init_image": None})
        assert request.options().mode == mode
        # The echoed parameters are what the engine runs.
        effective = request.options().effective()
        p = request.params
        assert (effective.init, effective.content_weight, effective.style_weight, effective.tv_weight) == (
            p["init"], p["content_weight"], p["style_weight"], p["tv_weight"])


def test_one_level_maps_to_no_scales(body: dict) -> None:
    assert parse_request(body).options().scales == ()
    body["params"]["scales"] = [64]
    assert parse_request(body).options().scales == ()
    body["params"]["scales"] = [32]
    assert parse_request(body).options().scales == (32, 64)


def test_a_layer_named_twice_is_refused(body: dict) -> None:
    body["params"]["style_layers"] = ["relu1_1", "relu1_1"]
    error = _error(parse_request, body)
    assert (error.status, error.code, error.field) == (400, "out_of_range", "params.style_layers")

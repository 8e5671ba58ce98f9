"""Request validation: parameters, body shape, image fields and their limits."""

from __future__ import annotations

import base64
import json

import pytest
from imagebytes import b64, png_claiming_size
from imagebytes import png_b64 as _b64_png
from nst.stylize import StylizeOptions
from nst_http.errors import RequestError
from nst_http.params import PARAMS, Limits, limits_from_config, parse_params
from nst_http.request import StyleRequest, parse_request
from PIL import Image

DEFAULTS = {
    "image_size": 512,
    "iterations": 300,
    "content_weight": 1.0,
    "style_weight": 10.0,
    "tv_weight": 10.0,
    "init": "content",
    "seed": 0,
    "output_format": "png",
    "style_blend_weights": None,
    "style_scale": 1.0,
    "color_control": "none",
    "pooling": "max",
    "content_layers": ["relu4_2"],
    "style_layers": ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
    "style_layer_weights": None,
    "style_loss": "gram",
    "optimizer": "lbfgs",
    "learning_rate": 0.02,
    "lbfgs_history": 100,
    "precision": "tf32",
    "scales": [512],  # every level's long side: one level at image_size
    "mode": "stylize",
    "return_history": False,
    "time_budget_s": None,
    "tile_size": None,
    "stream": False,
    "progress_every": 10,
    "preview_every": 0,
    "preview_size": 128,
    "dry_run": False,
}


def _error(fn, *args, **kwargs) -> RequestError:
    with pytest.raises(RequestError) as info:
        fn(*args, **kwargs)
    return info.value


@pytest.fixture
def body(image_b64) -> dict:
    return {"content": image_b64("chelsea_128x96.png"), "style": image_b64("starry_night_64x64.png"),
            "params": {"image_size": 64, "iterations": 3}}


# --- parse_params ------------------------------------------------------------------------------

def test_defaults() -> None:
    assert parse_params(None) == DEFAULTS
    assert parse_params({}) == DEFAULTS
    assert set(PARAMS) == set(DEFAULTS)
    # The defaults are the engine's.
    o = StylizeOptions()
    assert (o.iterations, o.content_weight, o.style_weight, o.tv_weight, o.init, o.seed) == (
        DEFAULTS["iterations"], DEFAULTS["content_weight"], DEFAULTS["style_weight"], DEFAULTS["tv_weight"],
        DEFAULTS["init"], DEFAULTS["seed"])


def test_server_defaults_and_request_overrides() -> None:
    p = parse_params({"iterations": 7}, defaults={"image_size": 64, "iterations": 3, "init": "noise"})
    assert p == DEFAULTS | {"image_size": 64, "iterations": 7, "init": "noise", "scales": [64]}
    # Server defaults are validated too.
    err = _error(parse_params, None, defaults={"iterations": 0})
    assert (err.code, err.field) == ("out_of_range", "params.iterations")


def test_the_old_spelling_steps_means_iterations_and_is_echoed_as_iterations() -> None:
    assert parse_params({"steps": 7}) == DEFAULTS | {"iterations": 7}
    assert parse_params(None, defaults={"steps": 5})["iterations"] == 5  # a deployer's handler.defaults
    assert parse_params({"iterations": 7}, defaults={"steps": 5})["iterations"] == 7
    err = _error(parse_params, {"steps": 7, "iterations": 8})
    assert (err.status, err.code, err.field) == (400, "invalid_choice", "params.steps")
    err = _error(parse_params, {"steps": 0})  # checked as what it now is
    assert (err.code, err.field) == ("out_of_range", "params.iterations")


def test_the_old_limit_max_steps_caps_iterations() -> None:
    assert limits_from_config({"max_steps": 9}) == Limits(max_iterations=9)
    err = _error(limits_from_config, {"max_steps": 9, "max_iterations": 10})
    assert err.field == "handler.limits.max_steps"
    with pytest.raises(TypeError):
        limits_from_config({"max_stepz": 9})


def test_int_is_accepted_for_float_and_becomes_float() -> None:
    p = parse_params({"style_weight": 100, "content_weight": 0, "tv_weight": 1e12})
    assert p["style_weight"] == 100.0 and type(p["style_weight"]) is float
    assert type(p["content_weight"]) is float and p["tv_weight"] == 1e12


def test_unknown_param() -> None:
    err = _error(parse_params, {"iterations": 3, "styleweight": 5})
    assert (err.status, err.code, err.field) == (400, "unknown_param", "params.styleweight")
    assert "style_weight" in err.message  # lists the known names


@pytest.mark.parametrize(
    "name, value",
    [("iterations", "10"), ("iterations", True), ("iterations", 10.0), ("iterations", 3.5), ("iterations", None), ("image_size", [64]),
     ("seed", False), ("style_weight", "1e4"), ("style_weight", True), ("init", 1), ("output_format", None)],
)
def test_invalid_type(name: str, value) -> None:
    err = _error(parse_params, {name: value})
    assert (err.status, err.code, err.field) == (400, "invalid_type", f"params.{name}")


def test_params_must_be_an_object() -> None:
    err = _error(parse_params, [1, 2])
    assert (err.code, err.field) == ("invalid_type", "params")


@pytest.mark.parametrize(
    "name, value",
    [("iterations", 0), ("iterations", -1), ("iterations", 2001), ("image_size", 15), ("image_size", 4097),
     ("content_weight", -1.0), ("style_weight", -1), ("tv_weight", 1e13), ("style_weight", float("inf")),
     ("content_weight", float("-inf")), ("tv_weight", float("nan")), ("seed", -1), ("seed", 2**63)],
)
def test_out_of_range(name: str, value) -> None:
    err = _error(parse_params, {name: value})
    assert (err.status, err.code, err.field) == (400, "out_of_range", f"params.{name}")
    assert f"params.{name}" in err.message


@pytest.mark.parametrize("name, value", [("style_weight", 10**400), ("content_weight", -(10**400)),
                                         ("tv_weight", 10**13), ("seed", 10**400), ("iterations", 10**400)])
def test_huge_json_integers_are_out_of_range(name: str, value: int) -> None:
    # json.loads gives a Python int for an integer literal of any length (up to 4300 digits).
    err = _error(parse_params, json.loads(json.dumps({name: value})))
    assert (err.status, err.code, err.field) == (400, "out_of_range", f"params.{name}")


def test_limits_cap_steps_and_image_size() -> None:
    limits = Limits(max_iterations=50, max_image_side=128)
    assert parse_params({"iterations": 50, "image_size": 128}, limits=limits)["iterations"] == 50
    err = _error(parse_params, {"iterations": 51, "image_size": 64}, limits=limits)
    assert (err.code, err.field) == ("out_of_range", "params.iterations") and "50" in err.message
    err = _error(parse_params, {"image_size": 129, "iterations": 5}, limits=limits)
    assert (err.code, err.field) == ("out_of_range", "params.image_size") and "128" in err.message
    # The default image_size (512) is itself over this cap: defaults are checked like the request.
    assert _error(parse_params, {"iterations": 5}, limits=limits).field == "params.image_size"
    assert _error(parse_params, {"image_size": 64}, limits=limits).field == "params.iterations"


def test_boundaries_are_accepted() -> None:
    p = parse_params({"iterations": 2000, "image_size": 1024, "seed": 2**63 - 1, "style_weight": 0, "tv_weight": 1e12})
    assert (p["iterations"], p["image_size"], p["seed"]) == (2000, 1024, 2**63 - 1)
    assert parse_params({"iterations": 1, "image_size": 16})["image_size"] == 16


@pytest.mark.parametrize("name, value", [("init", "random"), ("init", "Content"), ("output_format", "gif"),
                                         ("output_format", "jpg"), ("precision", "fp16")])
def test_invalid_choice(name: str, value: str) -> None:
    err = _error(parse_params, {name: value})
    assert (err.status, err.code, err.field) == (400, "invalid_choice", f"params.{name}")


@pytest.mark.parametrize("value, code", [("fp16", "invalid_choice"), ("FP32", "invalid_choice"), (16, "invalid_type"),
                                         (None, "invalid_type")])
def test_a_bad_precision_is_a_400_naming_it(body: dict, value, code: str) -> None:
    body["params"]["precision"] = value
    err = _error(parse_request, body)
    assert (err.status, err.code, err.field) == (400, code, "params.precision")
    assert "params.precision" in err.message
    if code == "invalid_choice":
        assert all(choice in err.message for choice in ("fp32", "tf32", "bf16"))


@pytest.mark.parametrize("value", ["fp32", "tf32", "bf16"])
def test_precision_is_echoed_and_reaches_the_options(body: dict, value: str) -> None:
    body["params"]["precision"] = value
    request = parse_request(body)
    assert request.params["precision"] == value
    assert request.options().precision == value
    del body["params"]["precision"]
    assert parse_request(body).params["precision"] == "tf32"  # the default, echoed


def test_error_body() -> None:
    err = RequestError(400, "out_of_range", "bad", "params.iterations")
    assert err.body() == {"error": {"code": "out_of_range", "message": "bad", "field": "params.iterations"}}
    assert json.loads(json.dumps(err.body())) == err.body()


# --- parse_request -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"not json", id="text"),
        pytest.param(b"{\"content\": ", id="truncated"),
        pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
        pytest.param("{'single': 'quotes'}", id="str"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"params": {"seed": ' + b"9" * 5000 + b"}}", id="int-over-4300-digits"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-too-deep"),
    ],
)
def test_invalid_json(raw) -> None:
    err = _error(parse_request, raw)
    assert (err.status, err.code, err.field) == (400, "invalid_json", None)


@pytest.mark.parametrize("raw", [[], [1, 2], "[]", b"null", 42, b"\"text\""])
def test_invalid_body(raw) -> None:
    err = _error(parse_request, raw)
    assert (err.status, err.code) == (400, "invalid_body")


def test_bytes_and_str_bodies_are_parsed(body: dict) -> None:
    for raw in (json.dumps(body).encode(), bytearray(json.dumps(body).encode()), json.dumps(body)):
        assert isinstance(parse_request(raw), StyleRequest)


@pytest.mark.parametrize("missing", ["content", "style"])
def test_missing_field(body: dict, missing: str) -> None:
    del body[missing]
    err = _error(parse_request, body)
    assert (err.status, err.code, err.field) == (400, "missing_field", missing)
    assert missing in err.message


def test_unknown_field(body: dict) -> None:
    body["param"] = {}
    err = _error(parse_request, body)
    assert (err.status, err.code, err.field) == (400, "unknown_field", "param")


@pytest.mark.parametrize("field", ["content", "style"])
def test_invalid_base64(body: dict, field: str) -> None:
    body[field] = "this is *not* base64!"
    err = _error(parse_request, body)
    assert (err.status, err.code, err.field) == (400, "invalid_base64", field)
    body[field] = body["content" if field == "style" else "style"][:-1]  # bad padding
    assert _error(parse_request, body).code == "invalid_base64"


@pytest.mark.parametrize("field", ["content", "style"])
def test_image_field_must_be_a_string(body: dict, field: str) -> None:
    body[field] = {"data": "..."}
    err = _error(parse_request, body)
    assert (err.code, err.field) == ("invalid_type", field)


def test_data_url_prefix_is_accepted(body: dict) -> None:
    body["content"] = "data:image/png;base64," + body["content"]
    body["style"] = "DATA:image/x-portable+png;base64," + body["style"]
    request = parse_request(body)
    assert request.content.size == (128, 96) and request.style.size == (64, 64)


@pytest.mark.parametrize("field", ["content", "style"])
def test_non_image(body: dict, field: str) -> None:
    body[field] = base64.b64encode(b"just some text, not an image").decode()
    err = _error(parse_request, body)
    assert (err.status, err.code, err.field) == (400, "invalid_image", field)


def test_image_over_max_input_pixels(body: dict) -> None:
    err = _error(parse_request, body, limits=Limits(max_input_pixels=128 * 96 - 1))
    assert (err.status, err.code, err.field) == (413, "image_too_large", "content")
    # The 64x64 style alone is under that limit, so it is the content that was refused.
    body["content"] = body["style"]
    assert parse_request(body, limits=Limits(max_input_pixels=128 * 96 - 1)).content.size == (64, 64)


@pytest.mark.parametrize("width, height", [(6000, 5000), (100_000, 100_000)])
def test_header_claiming_a_huge_image_is_413(body: dict, width: int, height: int) -> None:
    body["style"] = b64(png_claiming_size(width, height))
    err = _error(parse_request, body)
    assert (err.status, err.code, err.field) == (413, "image_too_large", "style")


def test_image_over_max_input_bytes(body: dict) -> None:
    err = _error(parse_request, body, limits=Limits(max_input_bytes=1000))
    assert (err.status, err.code, err.field) == (413, "image_too_large", "content")


def test_output_too_small(body: dict) -> None:
    body["params"]["image_size"] = 16  # 128x96 -> 16x12
    err = _error(parse_request, body)
    assert (err.status, err.code, err.field) == (400, "image_too_small", "params.image_size")
    assert "16x12" in err.message
    body["params"]["image_size"] = 22  # 22x16.5 -> 22x16: just enough
    assert parse_request(body).output_size == (22, 16)


def test_elongated_style_too_small(body: dict) -> None:
    body["style"] = _b64_png(Image.new("RGB", (200, 20), (9, 9, 9)))  # at 64: 64x6
    err = _error(parse_request, body)
    assert (err.status, err.code, err.field) == (400, "image_too_small", "style")


def test_params_are_checked_before_images(body: dict) -> None:
    body["content"] = "not base64 at all!"
    body["params"]["iterations"] = 0
    assert _error(parse_request, body).field == "params.iterations"


def test_good_request(body: dict) -> None:
    body["params"].update({"style_weight": 5, "init": "noise", "seed": 11, "output_format": "jpeg"})
    request = parse_request(body, defaults={"tv_weight": 0.5})
    assert request.content.mode == "RGB" and request.content.size == (128, 96)
    assert request.style.mode == "RGB" and request.style.size == (64, 64)
    assert request.params == DEFAULTS | {"image_size": 64, "iterations": 3, "style_weight": 5.0, "init": "noise",
                                         "seed": 11, "output_format": "jpeg", "tv_weight": 0.5, "scales": [64]}
    assert request.output_size == (64, 48)
    assert request.options() == StylizeOptions(iterations=3, content_weight=1.0, style_weight=5.0, tv_weight=0.5,
                                               init="noise", seed=11)


def test_params_may_be_omitted(body: dict) -> None:
    del body["params"]
    request = parse_request(body, defaults={"image_size": 100})
    assert request.params == DEFAULTS | {"image_size": 100, "scales": [100]}
    assert request.output_size == (100, 75)

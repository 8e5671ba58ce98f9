"""The TorchServe handler, driven through BaseHandler.handle with a real ts.context.Context."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path
from typing import Any

import nst_service.run
import nst_service.service
import pytest
import torch
import ts
import yaml
from imagebytes import png_claiming_size
from nst import weights
from nst_handler import NSTHandler
from nst_http.params import Limits, parse_params
from PIL import Image
from ts.context import Context, RequestProcessor
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

MANIFEST = {"model": {"modelName": "nst", "serializedFile": "vgg_features.pth", "handler": "nst_handler.py",
                      "modelVersion": "1.0"}}
TINY_DEFAULTS = {"image_size": 64, "iterations": 3}


def model_yaml_config(root: Path, **handler_overrides: Any) -> dict:
    """handler/model-config.yaml as TorchServe parses it, with tiny defaults to stay fast."""
    config = yaml.safe_load((root / "handler" / "model-config.yaml").read_text())
    config["handler"]["defaults"] = dict(TINY_DEFAULTS)
    config["handler"].update(handler_overrides)
    return config


def make_context(model_dir: Path, config: dict, n_rows: int = 2) -> Context:
    """A context as TorchServe's worker builds it, with fresh per-request processors for one batch."""
    metrics = MetricsCacheYamlImpl(config_file_path=str(Path(ts.__file__).parent / "configs" / "metrics.yaml"))
    metrics.initialize_cache()
    ctx = Context("nst", str(model_dir), MANIFEST, n_rows, None, ts.__version__, metrics=metrics,
                  model_yaml_config=config)
    ctx.request_ids = {i: f"r{i}" for i in range(n_rows)}
    ctx.request_processor = [RequestProcessor({}) for _ in range(n_rows)]
    return ctx


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, random_state) -> Path:
    """What TorchServe unpacks from nst.mar: the weights, their provenance and the handler."""
    path = tmp_path_factory.mktemp("model")
    weights.save(weights.make_random(0), path)
    return path


@pytest.fixture(scope="module")
def config(root_dir: Path) -> dict:
    return model_yaml_config(root_dir)


@pytest.fixture(scope="module")
def handler(model_dir: Path, config: dict) -> NSTHandler:
    h = NSTHandler()
    h.initialize(make_context(model_dir, config))
    return h


@pytest.fixture
def good_body(image_b64) -> dict:
    return {"content": image_b64("chelsea_128x96.png"), "style": image_b64("starry_night_64x64.png"),
            "params": {"iterations": 2}}


def run(handler: NSTHandler, model_dir: Path, config: dict, rows: list[dict]) -> tuple[list[Any], Context]:
    ctx = make_context(model_dir, config, len(rows))
    out = handler.handle(rows, ctx)
    assert isinstance(out, list) and len(out) == len(rows)
    assert all(isinstance(text, str) for text in out)
    for i in range(len(rows)):
        assert ctx.get_response_content_type(i) == "application/json"
    return [json.loads(text) for text in out], ctx


def assert_error(body: dict, ctx: Context, idx: int, status: int, code: str, field: str | None) -> None:
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "field", "request_id"}
    assert (error["code"], error["field"], error["request_id"]) == (code, field, f"r{idx}")
    assert isinstance(error["message"], str) and error["message"]
    code_, phrase = ctx.get_response_status(idx)
    assert code_ == status and phrase


# --- initialize ---------------------------------------------------------------------------------

def test_initialize(handler: NSTHandler, random_state) -> None:
    assert handler.initialized is True
    assert handler.service.worker.device == torch.device("cpu")
    assert handler.service.worker.provenance.label == "random-seed-0" and handler.service.worker.provenance.source == "random"
    assert handler.service.worker.limits == Limits(max_image_side=4096, max_iterations=2000, max_input_pixels=25_000_000,
                                    max_input_bytes=20_000_000)
    assert handler.service.worker.defaults == TINY_DEFAULTS
    assert next(handler.service.worker.features.parameters()).device.type == "cpu"
    state = handler.service.worker.features.state_dict()
    assert torch.equal(state["0.weight"], random_state["0.weight"])
    assert torch.equal(state["34.bias"], random_state["34.bias"])


def test_initialize_refuses_weights_that_do_not_match_provenance(model_dir: Path, config: dict, tmp_path: Path,
                                                                 random_state) -> None:
    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    tampered = dict(random_state) | {"0.bias": random_state["0.bias"] + 1}
    torch.save(tampered, bad / "vgg_features.pth")  # a valid VGG19 file, but not the one recorded
    h = NSTHandler()
    with pytest.raises(ValueError, match="does not match the sha256"):
        h.initialize(make_context(bad, config))
    assert not h.initialized


@pytest.mark.parametrize(("key", "value", "field"), [
    ("iterations", 5000, "params.iterations"),  # over limits.max_iterations
    ("stpes", 10, "unknown parameter .stpes."),  # a typo must not be ignored silently
])
def test_initialize_refuses_bad_defaults(model_dir: Path, root_dir: Path, key: str, value: int, field: str) -> None:
    config = model_yaml_config(root_dir)
    config["handler"]["defaults"][key] = value
    with pytest.raises(ValueError, match=field):
        NSTHandler().initialize(make_context(model_dir, config))


# --- one good request ---------------------------------------------------------------------------

def test_good_request(handler: NSTHandler, model_dir: Path, config: dict, good_body: dict) -> None:
    (body,), ctx = run(handler, model_dir, config, [{"body": good_body}])
    assert ctx.get_response_status(0) == (200, None)  # TorchServe's default, left as is
    image = Image.open(io.BytesIO(base64.b64decode(body["image"], validate=True)))
    assert image.format == "PNG" and image.size == (64, 48)
    assert (body["format"], body["width"], body["height"]) == ("png", 64, 48)
    assert body["iterations"] == 2
    assert set(body["losses"]) == {"content", "style", "tv", "total"}
    assert all(isinstance(v, float) for v in body["losses"].values())
    assert body["params"] == parse_params(None) | {
        "image_size": 64, "iterations": 2, "scales": [64],  # every parameter, effective values
    }
    assert body["params"]["style_weight"] == 10.0 and body["params"]["init"] == "content"
    assert "history" not in body  # only with return_history
    assert body["weights"] == "random-seed-0"
    assert body["device"] == "cpu"
    assert body["request_id"] == "r0"
    assert set(body["timings_ms"]) == {"decode", "optimize", "encode", "total"}
    assert body["timings_ms"]["optimize"] > 0


def test_server_defaults_apply(handler: NSTHandler, model_dir: Path, config: dict, good_body: dict) -> None:
    del good_body["params"]  # the server's tiny defaults: 64 px, 3 steps
    (body,), _ = run(handler, model_dir, config, [{"body": good_body}])
    assert body["iterations"] == 3 and body["params"]["iterations"] == 3 and body["params"]["image_size"] == 64


def test_jpeg_output(handler: NSTHandler, model_dir: Path, config: dict, good_body: dict) -> None:
    good_body["params"] = {"iterations": 1, "output_format": "jpeg", "image_size": 32}
    (body,), ctx = run(handler, model_dir, config, [{"body": good_body}])
    data = base64.b64decode(body["image"])
    assert data[:3] == b"\xff\xd8\xff"
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.size == (32, 24)
    assert body["format"] == "jpeg" and body["params"]["output_format"] == "jpeg"
    assert ctx.get_response_status(0)[0] == 200


def test_raw_json_bytes_body(handler: NSTHandler, model_dir: Path, config: dict, good_body: dict) -> None:
    good_body["params"] = {"iterations": 1, "image_size": 32}
    (body,), _ = run(handler, model_dir, config, [{"body": bytearray(json.dumps(good_body).encode())}])
    assert (body["width"], body["height"], body["iterations"]) == (32, 24, 1)


# --- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "spoil, code, field",
    [
        pytest.param(lambda b: b["params"].update(iterations=-1), "out_of_range", "params.iterations", id="iterations"),
        pytest.param(lambda b: b.update(content="%%% not base64 %%%"), "invalid_base64", "content", id="base64"),
        pytest.param(lambda b: b["params"].update(colour="red"), "unknown_param", "params.colour", id="param"),
        pytest.param(lambda b: b["params"].update(precision="fp16"), "invalid_choice", "params.precision",
                     id="precision"),
        pytest.param(lambda b: b.pop("style"), "missing_field", "style", id="missing"),
    ],
)
def test_bad_row_does_not_affect_the_good_one(handler, model_dir, config, good_body, spoil, code, field) -> None:
    good_body["params"] = {"iterations": 1, "image_size": 32}  # cheap: this test is about the batch
    bad = json.loads(json.dumps(good_body))
    spoil(bad)
    (first, second), ctx = run(handler, model_dir, config, [{"body": bad}, {"body": good_body}])
    assert_error(first, ctx, 0, 400, code, field)
    assert ctx.get_response_status(0) == (400, "Bad Request")
    assert ctx.get_response_status(1) == (200, None)
    assert (second["width"], second["height"], second["iterations"], second["request_id"]) == (32, 24, 1, "r1")
    assert Image.open(io.BytesIO(base64.b64decode(second["image"]))).size == (32, 24)


@pytest.mark.parametrize("raw", [b"{not json", bytearray(b"\xff\xfe\x00")])
def test_invalid_json(handler: NSTHandler, model_dir: Path, config: dict, raw) -> None:
    (body,), ctx = run(handler, model_dir, config, [{"body": raw}])
    assert_error(body, ctx, 0, 400, "invalid_json", None)


def test_data_key_and_non_object(handler: NSTHandler, model_dir: Path, config: dict) -> None:
    (first, second), ctx = run(handler, model_dir, config, [{"data": b"not json"}, {"body": [1, 2]}])
    assert_error(first, ctx, 0, 400, "invalid_json", None)
    assert_error(second, ctx, 1, 400, "invalid_body", None)


def test_image_too_large(handler: NSTHandler, model_dir: Path, config: dict, good_body: dict) -> None:
    good_body["content"] = base64.b64encode(png_claiming_size(6000, 5000)).decode()
    (body,), ctx = run(handler, model_dir, config, [{"body": good_body}])
    assert_error(body, ctx, 0, 413, "image_too_large", "content")
    assert ctx.get_response_status(0) == (413, "Payload Too Large")


def test_limits_come_from_the_config(model_dir: Path, root_dir: Path, good_body: dict) -> None:
    config = model_yaml_config(root_dir, limits={"max_input_pixels": 64 * 64})
    h = NSTHandler()
    h.initialize(make_context(model_dir, config))
    (body,), ctx = run(h, model_dir, config, [{"body": good_body}])  # the 128x96 content is over
    assert_error(body, ctx, 0, 413, "image_too_large", "content")


def test_unexpected_failure_is_a_500_for_that_row_only(handler, model_dir, config, good_body, monkeypatch) -> None:
    real = nst_service.run.stylize
    calls = []

    def flaky(content, *args, **kwargs):
        calls.append(tuple(content.shape))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(content, *args, **kwargs)

    monkeypatch.setattr(nst_service.run, "stylize", flaky)
    good_body["params"] = {"iterations": 1, "image_size": 32}
    (first, second), ctx = run(handler, model_dir, config, [{"body": good_body}, {"body": good_body}])
    assert len(calls) == 2
    assert_error(first, ctx, 0, 500, "internal_error", None)
    assert "r0" in first["error"]["message"] and "boom" not in first["error"]["message"]
    assert ctx.get_response_status(0) == (500, "Internal Server Error")
    assert ctx.get_response_status(1) == (200, None)
    assert (second["width"], second["height"], second["request_id"]) == (32, 24, "r1")
    # The handler keeps serving afterwards.
    (third,), ctx2 = run(handler, model_dir, config, [{"body": good_body}])
    assert ctx2.get_response_status(0) == (200, None)
    assert third["iterations"] == 1 and len(calls) == 3


def test_unexpected_failure_in_validation_is_a_500_for_that_row_only(handler, model_dir, config, good_body,
                                                                     monkeypatch) -> None:
    real = nst_service.service.parse_request

    def flaky(body, **kwargs):
        if body.get("params", {}).get("seed") == 13:
            raise KeyError("boom")
        return real(body, **kwargs)

    monkeypatch.setattr(nst_service.service, "parse_request", flaky)
    good_body["params"] = {"iterations": 1, "image_size": 32}
    bad = json.loads(json.dumps(good_body))
    bad["params"]["seed"] = 13
    (first, second), ctx = run(handler, model_dir, config, [{"body": good_body}, {"body": bad}])
    assert ctx.get_response_status(0) == (200, None) and first["request_id"] == "r0"
    assert_error(second, ctx, 1, 500, "internal_error", None)
    assert "r1" in second["error"]["message"]


def test_json_that_torchserve_could_not_decode(handler: NSTHandler, model_dir: Path, config: dict) -> None:
    # TorchServe forwards the raw bytes when its own json.loads fails; ours must fail the same way.
    too_long = b'{"params": {"seed": ' + b"9" * 5000 + b"}}"
    too_deep = b"[" * 100_000 + b"]" * 100_000
    (first, second), ctx = run(handler, model_dir, config, [{"body": too_long}, {"body": too_deep}])
    assert_error(first, ctx, 0, 400, "invalid_json", None)
    assert_error(second, ctx, 1, 400, "invalid_json", None)


def test_huge_integer_weight_is_a_400(handler: NSTHandler, model_dir: Path, config: dict, good_body: dict) -> None:
    good_body["params"]["style_weight"] = 10**400
    (body,), ctx = run(handler, model_dir, config, [{"body": good_body}])
    assert_error(body, ctx, 0, 400, "out_of_range", "params.style_weight")


# --- the served network ---------------------------------------------------------------------------

def test_a_vgg16_model_serves_its_own_layers_and_describes_them(tmp_path: Path, config: dict, good_body: dict) -> None:
    model = tmp_path / "model16"
    weights.save(weights.make_random(0, "vgg16"), model)
    h = NSTHandler()
    h.initialize(make_context(model, config))
    assert (h.service.worker.features.network, h.service.worker.features.input_convention.name) == ("vgg16", "torchvision")
    described = json.loads(h.describe_handle())
    assert described["weights"]["network"] == "vgg16" and described["weights"]["input_convention"] == "torchvision"
    assert described["weights"]["label"] == "random-seed-0-vgg16"
    assert described["layers"][-3:] == ["conv5_3", "relu5_3", "pool5"] and "relu5_4" not in described["layers"]
    good_body["params"]["style_layers"] = ["relu1_1", "relu5_4"]
    (body,), ctx = run(h, model, config, [{"body": good_body}])
    assert_error(body, ctx, 0, 400, "invalid_choice", "params.style_layers[1]")
    assert "relu5_3" in body["error"]["message"]
    good_body["params"]["style_layers"] = ["relu1_1", "relu5_3"]
    (body,), _ = run(h, model, config, [{"body": good_body}])
    assert body["weights"] == "random-seed-0-vgg16" and body["iterations"] == 2

"""docs/openapi.yaml is a valid OpenAPI 3.1 document and says what the handler does.

The spec is hand-maintained; these tests tie it to the code that cannot be seen from outside:
the parameter table (``nst.api.PARAMS``), the shipped limits and defaults
(``handler/model-config.yaml``), the VGG19 layer names and the error codes the handler raises.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from nst.options import MAX_LEVELS
from nst.vgg import VGG16_LAYERS, VGG19_LAYERS
from nst_http.params import PARAMS, Limits, parse_params
from openapi_contract import SPEC_PATH, load_spec, validate
from openapi_spec_validator import validate as validate_openapi
from openapi_spec_validator.readers import read_from_filename

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = load_spec()["components"]["schemas"]
JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", list: "array"}


def shipped_config() -> tuple[Limits, dict[str, Any]]:
    """The limits and the effective defaults of the shipped handler/model-config.yaml."""
    handler = yaml.safe_load((ROOT / "handler" / "model-config.yaml").read_text())["handler"]
    limits = Limits(**handler.get("limits", {}))
    return limits, parse_params(handler.get("defaults", {}), limits=limits)


def param_schema(name: str) -> dict[str, Any]:
    if name == "scales":
        return SCHEMAS["Params"]["properties"]["scales"]
    return SCHEMAS["ParamFields"]["properties"][name]


def types_of(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    return {kind} if isinstance(kind, str) else set(kind or ())


def test_the_spec_is_valid_openapi_3_1() -> None:
    spec, base_uri = read_from_filename(str(SPEC_PATH))
    assert spec["openapi"] == "3.1.0"
    validate_openapi(spec, base_uri=base_uri)  # raises OpenAPIValidationError with the reason


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_schema_is_valid_json_schema_2020_12(name: str) -> None:
    # Also catches YAML 1.1 traps such as `1.0e12` read as a string, which the OpenAPI
    # meta-schema lets through.
    jsonschema.Draft202012Validator.check_schema(SCHEMAS[name])


def test_params_are_exactly_nst_api_params_in_order() -> None:
    assert SCHEMAS["ParamName"]["enum"] == list(PARAMS)
    assert set(SCHEMAS["ParamFields"]["properties"]) | {"scales"} == set(PARAMS)
    assert "scales" not in SCHEMAS["ParamFields"]["properties"]
    assert SCHEMAS["Params"]["propertyNames"] == {"$ref": "#/components/schemas/ParamName"}
    assert SCHEMAS["EffectiveParams"]["required"] == list(PARAMS)


@pytest.mark.parametrize("name", [n for n in PARAMS if n != "scales"])
def test_each_parameter_matches_its_type_bounds_choices_and_default(name: str) -> None:
    param, schema = PARAMS[name], param_schema(name)
    limits, defaults = shipped_config()
    assert types_of(schema) == {JSON_TYPES[param.kind]} | ({"null"} if param.nullable else set())
    assert schema["default"] == defaults[name], "the spec's default is not the shipped effective default"
    cap = {"image_size": limits.max_image_side, "iterations": limits.max_iterations}.get(name)
    maximum = min(m for m in (param.maximum, cap, float("inf")) if m is not None)
    bounded = schema["items"] if param.kind is list else schema
    if param.item is not None:
        item_type = bounded.get("type") or SCHEMAS[bounded["$ref"].rsplit("/", 1)[1]]["type"]
        assert item_type == JSON_TYPES[param.item]
    if param.choices is not None:
        choices = bounded.get("enum") or SCHEMAS[bounded["$ref"].rsplit("/", 1)[1]]["enum"]
        assert choices == list(param.choices)
    else:
        assert "enum" not in bounded
    assert bounded.get("minimum") == param.minimum
    assert bounded.get("maximum", float("inf")) == maximum
    if param.kind is list:
        assert schema["minItems"] == 1  # the handler refuses an empty list
    assert schema.get("description"), f"{name} has no description"


def test_scales_integer_and_list_forms() -> None:
    param, (by_count, by_sides) = PARAMS["scales"], param_schema("scales")["oneOf"]
    limits, defaults = shipped_config()
    assert param_schema("scales")["default"] == param.default == 1 and defaults["scales"] == [defaults["image_size"]]
    assert (by_count["type"], by_count["minimum"], by_count["maximum"]) == ("integer", param.minimum, param.maximum)
    assert by_sides["type"] == "array" and by_sides["maxItems"] == MAX_LEVELS
    assert by_sides["items"] == {"type": "integer", "minimum": 16, "maximum": limits.max_image_side}
    assert SCHEMAS["EffectiveScales"]["maxItems"] == MAX_LEVELS


def test_layer_names_are_vgg19s() -> None:
    assert SCHEMAS["VGG19Layer"]["enum"] == list(VGG19_LAYERS)


def test_style_image_count_is_the_shipped_max_styles() -> None:
    limits, _ = shipped_config()
    style = SCHEMAS["StylizeRequest"]["properties"]["style"]["oneOf"][1]
    masks = SCHEMAS["StylizeRequest"]["properties"]["style_masks"]["oneOf"][0]
    assert style["maxItems"] == masks["maxItems"] == limits.max_styles


def test_model_metadata_lists_every_limit_and_the_non_null_defaults() -> None:
    meta = SCHEMAS["NSTModelMetadata"]["properties"]
    limits, defaults = shipped_config()
    assert meta["limits"]["required"] == list(asdict(limits))
    assert set(meta["defaults"]["required"]) == {n for n, v in defaults.items() if v is not None}
    # The metadata is what the handler's describe_handle returns, with nulls dropped by TorchServe.
    instance = {"weights": {"source": "hed", "label": "hed-bsds500-vgg16", "network": "vgg16",
                            "input_convention": "caffe", "sha256": "0" * 64, "torchvision": "0",
                            "torch": "0", "origin": "0", "credit": "HED"},
                "layers": list(VGG16_LAYERS), "device": "cpu", "limits": asdict(limits),
                "defaults": {k: v for k, v in defaults.items() if v is not None}}
    assert validate(instance, "/components/schemas/NSTModelMetadata") == []
    assert validate({**instance, "defaults": defaults}, "/components/schemas/NSTModelMetadata") == []  # nulls too


def error_codes_in_source() -> dict[str, int]:
    """Every error code the handler, nst_http, nst_jobs and the engine's option rules can put in
    an error body, with its HTTP status."""
    codes: dict[str, int] = {}
    for path in [ROOT / "handler" / "nst_handler.py",
                 *(p for package in ("nst", "nst_http", "nst_jobs") for p in (ROOT / "handler" / package).glob("*.py"))]:
        text = path.read_text()
        codes |= dict.fromkeys(re.findall(r'\bbad\(\s*"([a-z0-9_]+)"', text), 400)
        codes |= dict.fromkeys(re.findall(r'OptionError\(\s*"([a-z0-9_]+)"', text), 400)
        codes |= {code: int(status) for status, code in re.findall(r'RequestError\(\s*(\d+),\s*"([a-z0-9_]+)"', text)}
        codes |= dict.fromkeys(re.findall(r'"code": "([a-z0-9_]+)"', text), 500)  # a stored job error
    return codes


def test_error_codes_are_the_handlers() -> None:
    codes = error_codes_in_source()
    assert len(codes) >= 10  # the search found the calls at all
    assert set(SCHEMAS["ErrorDetail"]["properties"]["code"]["enum"]) == set(codes)
    bad_request = set(SCHEMAS["BadRequestError"]["properties"]["error"]["properties"]["code"]["enum"])
    assert bad_request == {code for code, status in codes.items() if status == 400}


def test_every_operation_documents_its_responses() -> None:
    for path, item in load_spec()["paths"].items():
        for method, op in item.items():
            if method == "servers":
                continue
            assert op.get("summary") and op.get("responses"), f"{method} {path}"
            for status, response in op["responses"].items():
                assert response.get("description"), f"{method} {path} {status}"


def test_closed_objects_name_exactly_their_properties() -> None:
    # StylizeResponse and ResultEvent close StylizeResult through propertyNames (which keeps
    # error messages about the field at fault, unlike unevaluatedProperties).
    assert SCHEMAS["StylizeResultKey"]["enum"] == list(SCHEMAS["StylizeResult"]["properties"])
    assert set(SCHEMAS["StylizeResult"]["required"]) == set(SCHEMAS["StylizeResult"]["properties"]) - {"history"}

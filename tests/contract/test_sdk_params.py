"""The SDK's one parameter declaration (``nst_client._params``) equals docs/openapi.yaml's request
parameters (``Params``: ``ParamFields`` and its own ``scales``).

The SDK cannot import the server (it is torch-free), so the two sides are tied through the spec:
this test holds the SDK equal to it, ``test_openapi_spec.py`` holds the server equal to it.
Compared, parameter by parameter: the names, the JSON types (``int`` is ``integer``, ``float``
``number``, a ``Sequence`` an ``array`` of its items, a ``Union`` a ``oneOf``), the choices of
string parameters (the ``Literal`` aliases against the ``enum``), and nullability: every SDK
keyword takes ``None``, meaning "not sent", so a parameter the spec lets be ``null`` must have
``null`` as its default (then leaving it out and sending ``null`` are the same request).

Not compared: ranges (the server checks them), and the items of the layer lists, which the SDK
types as ``str`` because the served network decides the names (``info().layers``).
"""

from __future__ import annotations

import collections.abc
import re
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
from nst_client._params import PARAMS, STREAM_PARAMS, Param
from nst_client._params import RENAMED as SDK_RENAMED
from nst_client._request import stream_params
from nst_http.params import RENAMED as SERVER_RENAMED
from openapi_contract import load_spec

#: A JSON value's possible forms: ("integer",), ("string", enum or None), ("array", items), ("null",)...
Shape = frozenset[tuple[Any, ...]]
NULL = ("null",)
_JSON_OF = {int: "integer", float: "number", bool: "boolean", str: "string"}
#: What a streamed call adds to ``params`` beside the declared intervals: ``{"stream": True}``.
STREAM_FLAGS = {k: v for k, v in stream_params({}, None, None).items() if k not in {p.name for p in STREAM_PARAMS}}
SDK: dict[str, Param] = {p.name: p for p in (*PARAMS, *STREAM_PARAMS)}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with its ``$ref`` (``#/components/...``) followed."""
    while "$ref" in node:
        target: Any = load_spec()
        for key in node["$ref"].removeprefix("#/").split("/"):
            target = target[key]
        node = target
    return node


def _properties(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The properties of an object schema, through ``$ref`` and ``allOf`` (a later one refines an
    earlier one of the same name)."""
    node = _resolve(node)
    merged: dict[str, dict[str, Any]] = {}
    for part in [*node.get("allOf", []), {"properties": node.get("properties", {})}]:
        found = _properties(part) if "$ref" in part or "allOf" in part else part.get("properties", {})
        for name, schema in found.items():
            merged[name] = {**merged.get(name, {}), **schema}
    return merged


def _spec_shape(node: dict[str, Any], *, item: bool = False) -> Shape:
    node = _resolve(node)
    alternatives = node.get("oneOf") or node.get("anyOf")
    if alternatives:
        return Shape().union(*(_spec_shape(n, item=item) for n in alternatives))
    kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
    shape: set[tuple[Any, ...]] = set()
    for kind in kinds:
        if kind == "array":
            shape.add(("array", _spec_shape(node["items"], item=True)))
        elif kind == "string":
            shape.add(("string", None if item or "enum" not in node else frozenset(node["enum"])))
        else:
            shape.add((kind,))
    return Shape(shape)


def _sdk_shape(kind: Any, *, item: bool = False) -> Shape:
    if get_origin(kind) is Union:
        return Shape().union(*(_sdk_shape(k, item=item) for k in get_args(kind)))
    if get_origin(kind) is Literal:
        return Shape({("string", None if item else frozenset(get_args(kind)))})
    if get_origin(kind) is collections.abc.Sequence:
        return Shape({("array", _sdk_shape(get_args(kind)[0], item=True))})
    return Shape({(_JSON_OF[kind],) if kind is not str else ("string", None)})


SPEC = _properties(load_spec()["components"]["schemas"]["Params"])


def test_the_sdk_declares_exactly_the_spec_parameters() -> None:
    sdk, spec = {*SDK, *STREAM_FLAGS}, set(SPEC)
    assert sdk == spec, f"only in the SDK: {sorted(sdk - spec)}; only in docs/openapi.yaml: {sorted(spec - sdk)}"


def test_the_spec_parameter_name_list_agrees() -> None:
    names = _resolve(load_spec()["components"]["schemas"]["Params"]).get("propertyNames")
    if names is None:
        pytest.skip("Params has no propertyNames")
    assert set(_resolve(names)["enum"]) == {*SDK, *STREAM_FLAGS}


@pytest.mark.parametrize("name", list(SDK))
def test_each_parameter_has_the_spec_type_and_choices(name: str) -> None:
    assert name in SPEC, f"{name} is not a parameter of docs/openapi.yaml"
    spec = _spec_shape(SPEC[name])
    assert _sdk_shape(SDK[name].type) == spec - {NULL}, f"{name}: SDK {SDK[name].type} vs spec {SPEC[name]}"


@pytest.mark.parametrize("name", list(SDK))
def test_none_not_sent_means_the_same_as_a_spec_null(name: str) -> None:
    assert name in SPEC, f"{name} is not a parameter of docs/openapi.yaml"
    if NULL in _spec_shape(SPEC[name]):
        assert SPEC[name].get("default", "absent") is None, f"{name} may be null but its default is not"


def test_a_streamed_call_adds_the_spec_stream_switch() -> None:
    assert STREAM_FLAGS == {"stream": True}
    assert _spec_shape(SPEC["stream"]) == {("boolean",)}


def test_the_sdk_the_server_and_api_md_keep_the_same_old_spellings() -> None:
    assert dict(SDK_RENAMED) == SERVER_RENAMED
    api = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    table = api.split("#### Renamed parameters", 1)[1].split("| old name | name | renamed |", 1)[1].split("\n\n", 1)[0]
    assert dict(re.findall(r"^\| `(\w+)` \| `(\w+)`", table, re.M)) == SERVER_RENAMED

"""The request parameters are declared once on the server (``nst.options.StylizeOptions`` and
``nst_http.params.ServingOptions``); everything else about them is derived from those two
declarations or, where written by hand (``docs/api.md``'s table), checked against them here.
``test_openapi_spec.py`` holds ``docs/openapi.yaml`` to the same table."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
from nst.options import StylizeOptions, declared
from nst_http.params import PARAMS, Param, ServingOptions, parse_params

ROOT = Path(__file__).resolve().parents[2]
JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean"}


def api_md_rows() -> dict[str, list[str]]:
    """``docs/api.md``'s parameter table: name -> [type, unit, default, range, meaning]."""
    rows = {}
    for line in (ROOT / "docs" / "api.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 6 and re.fullmatch(r"`[a-z_]+`", cells[0]) and cells[0].strip("`") in PARAMS:
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def renderings(value: float) -> set[str]:
    """The ways the table writes a bound: 1e12, 1e-6, 1,000,000, 2^63−1, 8.0, 86400."""
    forms = {str(value), f"{value:,}", re.sub(r"e([+-]?)0*(\d)", lambda m: "e" + m.group(1).lstrip("+") + m.group(2),
                                              f"{value:g}")}
    if float(value).is_integer():
        forms |= {str(int(value)), f"{int(value):,}"}
    if value == 2**63 - 1:
        forms.add("2^63−1")
    return forms


def field_docstrings(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass ``cls`` in its source, whitespace collapsed."""
    body = ast.parse(inspect.getsource(cls)).body[0]
    assert isinstance(body, ast.ClassDef)
    docs = {}
    for node, after in zip(body.body, body.body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr) \
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def test_params_are_the_two_declarations_in_order() -> None:
    serving = [name for name, _, _ in declared(ServingOptions)]
    engine = [name for name, _, _ in declared(StylizeOptions)]
    assert list(PARAMS) == serving + engine
    # Every engine option is a request parameter but the engine-only switches, each of which
    # says so in its docstring (gradient_checkpointing, the study's switches).
    docs = field_docstrings(StylizeOptions)
    engine_only = {f.name for f in dataclasses.fields(StylizeOptions)} - set(engine)
    assert "gradient_checkpointing" in engine_only
    assert engine_only == {name for name, doc in docs.items() if "Not a request parameter" in doc}
    assert not set(serving) & set(engine)


@pytest.mark.parametrize("name", list(PARAMS))
def test_defaults_are_the_declared_ones_and_the_echo_has_them(name: str) -> None:
    echoed = parse_params({}, defaults={"image_size": 64, "iterations": 4})
    assert list(echoed) == list(PARAMS)
    param = PARAMS[name]
    if name == "scales":
        assert param.default == 1 and echoed[name] == [64]
    elif name not in ("image_size", "iterations"):
        assert echoed[name] == param.default


def test_the_api_md_table_lists_every_parameter_in_order() -> None:
    assert list(api_md_rows()) == list(PARAMS)


def _type_cell(param: Param) -> str:
    if param.name == "scales":
        return "integer, or array of integers"
    kind = f"array of {JSON_TYPES[param.item]}s" if param.kind is list and param.item else JSON_TYPES[param.kind]
    return kind + (", or `null`" if param.nullable else "")


@pytest.mark.parametrize("name", list(PARAMS))
def test_the_api_md_row_states_the_declared_type_unit_default_and_range(name: str) -> None:
    param, (kind, unit, default, bounds, meaning) = PARAMS[name], api_md_rows()[name]
    assert kind == _type_cell(param)
    assert unit == (param.unit or "—")
    stated: Any = json.loads(default.split(" (")[0].replace("`", ""))
    assert stated == param.default and type(stated) in (type(param.default), int)
    if param.kind is bool:
        assert bounds == "`true`, `false`"
    elif param.choices is not None and param.kind is str:
        assert bounds == ", ".join(f'`"{c}"`' for c in param.choices)
    elif param.choices is not None:  # layer names: too many to list in a cell
        assert bounds.startswith("non-empty; each a layer of the served network")
    if param.minimum is not None:
        assert any(f"{low} … " in bounds for low in renderings(param.minimum)), bounds
    if param.maximum is not None:
        assert any(f" … {high}" in bounds for high in renderings(param.maximum)), bounds
    assert meaning

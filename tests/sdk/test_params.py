"""Everything the SDK derives from its one parameter declaration (``nst_client._params``) agrees
with it: both clients' signatures, the request body, the CLI's flags and docs/sdk.md's table.
(``tests/contract/test_sdk_params.py`` holds the declaration equal to docs/openapi.yaml.)"""

from __future__ import annotations

import argparse
import inspect
import re
import typing
from pathlib import Path

import pytest
from nst_client import AsyncStyleTransferClient, StyleTransferClient, cli
from nst_client._params import PARAMS, STREAM_PARAMS, STYLIZE_IMAGES, STYLIZE_PARAMS
from nst_client._request import split_stylize_args

SDK_DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


@pytest.mark.parametrize("client", [StyleTransferClient, AsyncStyleTransferClient])
def test_both_clients_take_every_declared_keyword(client: type) -> None:
    def keywords(method: str) -> list[str]:
        parameters = inspect.signature(getattr(client, method)).parameters.values()
        return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]

    assert keywords("stylize") == ["progress", *STYLIZE_PARAMS, *STYLIZE_IMAGES]
    assert keywords("stylize_stream") == [*STYLIZE_PARAMS, *STYLIZE_IMAGES, *(p.name for p in STREAM_PARAMS)]


def test_keywords_are_sorted_into_params_and_image_fields() -> None:
    images, params = split_stylize_args({"future_knob": 1, "init_image": b"x", "steps": 3, "seed": None})
    assert images == {"init_image": b"x"}
    assert list(params) == ["steps", "seed", "future_knob"]  # declared ones first, unknown ones kept
    _, streamed = split_stylize_args({"progress_every": 2, "steps": 3}, stream=True)
    assert streamed == {"steps": 3, "stream": True, "progress_every": 2, "preview_every": None}


def _flags(command: str) -> dict[str, argparse.Action]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions}


@pytest.mark.parametrize("command", ["stylize", "sweep"])
def test_every_parameter_has_its_flag(command: str) -> None:
    flags = _flags(command)
    for param in PARAMS:
        action = flags[param.name]
        assert action.help == param.cli.help
        if typing.get_origin(param.type) is typing.Literal:
            assert tuple(action.choices or ()) == typing.get_args(param.type)
    if command == "stylize":
        assert all(p.name in flags for p in STREAM_PARAMS)


def test_sdk_doc_tables_every_parameter() -> None:
    table = SDK_DOC.read_text(encoding="utf-8").split("| parameter | type |", 1)[1].split("\n\n", 1)[0]
    named = {name for cell in re.findall(r"^\| ([^|]+) \|", table, re.M) for name in re.findall(r"`(\w+)`", cell)}
    assert named - {"progress"} == set(STYLIZE_PARAMS)

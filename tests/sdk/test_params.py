"""Everything the SDK derives from its one parameter declaration (``nst_client._params``) agrees
with it: both clients' signatures, the request body, the CLI's flags and docs/sdk.md's table.
(``tests/contract/test_sdk_params.py`` holds the declaration equal to docs/openapi.yaml.)"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import re
import typing
from pathlib import Path

import nst_client
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
    images, params = split_stylize_args({"future_knob": 1, "init_image": b"x", "iterations": 3, "seed": None})
    assert images == {"init_image": b"x"}
    assert list(params) == ["iterations", "seed", "future_knob"]  # declared ones first, unknown ones kept
    _, streamed = split_stylize_args({"progress_every": 2, "iterations": 3}, stream=True)
    assert streamed == {"iterations": 3, "stream": True, "progress_every": 2, "preview_every": None}


def _flags(command: str) -> dict[str, argparse.Action]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions}


@pytest.mark.parametrize("command", ["stylize", "sweep"])
def test_every_parameter_has_its_flag(command: str) -> None:
    flags = _flags(command)
    for param in PARAMS:
        action = flags[param.name]
        assert (action.help or "").startswith(param.cli.help)  # and, for a renamed one, its old spelling
        if typing.get_origin(param.type) is typing.Literal:
            assert tuple(action.choices or ()) == typing.get_args(param.type)
    if command == "stylize":
        assert all(p.name in flags for p in STREAM_PARAMS)


def test_sdk_doc_tables_every_parameter() -> None:
    table = SDK_DOC.read_text(encoding="utf-8").split("| parameter | type |", 1)[1].split("\n\n", 1)[0]
    named = {name for cell in re.findall(r"^\| ([^|]+) \|", table, re.M) for name in re.findall(r"`(\w+)`", cell)}
    assert named - {"progress"} == set(STYLIZE_PARAMS)


# --- one parameter end to end: precision (issue 23) --------------------------------------------

DATA = Path(__file__).resolve().parents[1] / "data"
CONTENT, STYLE = DATA / "tubingen_64x64.png", DATA / "starry_night_64x64.png"


def test_precision_is_a_typed_keyword_sent_in_params(fake_server) -> None:
    StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE, precision="bf16")

    async def main() -> None:
        async with AsyncStyleTransferClient(base_url=fake_server.url) as client:
            await client.stylize(CONTENT, STYLE, precision="fp32")

    asyncio.run(main())
    assert [r.json["params"] for r in fake_server.requests] == [{"precision": "bf16"}, {"precision": "fp32"}]
    assert typing.get_args(next(p.type for p in PARAMS if p.name == "precision")) == ("fp32", "tf32", "bf16")


def test_precision_left_out_is_not_sent(fake_server) -> None:
    StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE, precision=None, iterations=2)
    assert fake_server.requests[0].json["params"] == {"iterations": 2}


def test_cli_precision_flag_reaches_the_request(fake_server, tmp_path: Path) -> None:
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "--precision", "bf16", "-o", str(tmp_path / "o.png"),
                   "--url", fake_server.url])
    assert rc == 0
    assert fake_server.requests[0].json["params"] == {"precision": "bf16"}


def test_cli_refuses_an_unknown_precision_before_any_request(fake_server, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["stylize", str(CONTENT), str(STYLE), "--precision", "fp16", "-o", str(tmp_path / "o.png"),
                  "--url", fake_server.url])
    assert exit_info.value.code == 2 and fake_server.requests == []
    assert "fp16" in capsys.readouterr().err


# --- style_loss (issue 25) ---------------------------------------------------------------------


def test_style_loss_is_a_typed_keyword_sent_in_params(fake_server) -> None:
    StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE, style_loss="w2")

    async def main() -> None:
        async with AsyncStyleTransferClient(base_url=fake_server.url) as client:
            await client.stylize(CONTENT, STYLE, style_loss="gram")
            async for _ in await client.stylize_stream(CONTENT, STYLE, style_loss="w2"):
                pass

    asyncio.run(main())
    assert [r.json["params"].get("style_loss") for r in fake_server.requests] == ["w2", "gram", "w2"]
    assert typing.get_args(next(p.type for p in PARAMS if p.name == "style_loss")) == ("gram", "w2")
    assert nst_client.StyleLoss is next(p.type for p in PARAMS if p.name == "style_loss")


def test_cli_style_loss_flag_reaches_the_request(fake_server, tmp_path: Path) -> None:
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "--style-loss", "w2", "-o", str(tmp_path / "o.png"),
                   "--url", fake_server.url])
    assert rc == 0
    assert fake_server.requests[0].json["params"] == {"style_loss": "w2"}


@pytest.mark.parametrize("command", ["stylize", "sweep", "batch", "submit", "plan"])
def test_every_request_command_offers_the_style_loss_flag(command: str) -> None:
    assert tuple(_flags(command)["style_loss"].choices or ()) == ("gram", "w2")


def test_cli_refuses_an_unknown_style_loss_before_any_request(fake_server, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["stylize", str(CONTENT), str(STYLE), "--style-loss", "w3", "-o", str(tmp_path / "o.png"),
                  "--url", fake_server.url])
    assert exit_info.value.code == 2 and fake_server.requests == []
    assert "w3" in capsys.readouterr().err


# --- renamed parameters: the old spelling still accepted ----------------------------------------


def test_the_old_steps_keyword_is_sent_as_iterations_with_a_warning(fake_server) -> None:
    with pytest.warns(DeprecationWarning, match="'steps' keyword is now 'iterations'"):
        StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE, steps=3)  # type: ignore[call-arg]
    assert fake_server.requests[0].json["params"] == {"iterations": 3}


def test_both_spellings_of_one_parameter_are_refused_before_any_request(fake_server) -> None:
    with pytest.raises(TypeError, match="old spelling"):
        StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE, steps=3, iterations=4)  # type: ignore[call-arg]
    assert fake_server.requests == []


def test_the_old_steps_flag_sets_iterations(fake_server, tmp_path: Path, capsys) -> None:
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "--steps", "5", "-o", str(tmp_path / "o.png"),
                   "--url", fake_server.url])
    assert rc == 0 and fake_server.requests[0].json["params"] == {"iterations": 5}
    with pytest.raises(SystemExit):
        cli.main(["stylize", "--help"])
    assert "--iterations N, --steps N" in capsys.readouterr().out

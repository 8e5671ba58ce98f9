"""Several styles, masks, init image, the extended parameters and the loss history:
request shape from the client and the CLI, and parsing of ``history``."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import requests
from nst_client import APIResponseValidationError, StyleTransferClient, cli
from PIL import Image

DATA = Path(__file__).parents[1] / "data"
CONTENT = DATA / "tubingen_64x64.png"
STYLE = DATA / "starry_night_64x64.png"
STYLE2 = DATA / "the_scream_128x96.png"
OUTPUT = DATA / "chelsea_128x96.png"

HISTORY = [
    {"iteration": 1, "content": 0.5, "style": 2.0, "tv": 0.25, "total": 3.0},
    {"iteration": 2, "content": 0.4, "style": 1.5, "tv": 0.2, "total": 2.5},
]


def _dec(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _png(color: tuple, size: tuple = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- client


def test_list_of_two_styles_is_sent_as_json_list(fake_server):
    StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, [STYLE, str(STYLE2)])
    req = fake_server.requests[0].json
    assert isinstance(req["style"], list) and len(req["style"]) == 2
    assert [_dec(s) for s in req["style"]] == [STYLE.read_bytes(), STYLE2.read_bytes()]
    assert set(req) == {"content", "style", "params"}  # no image field that was not given


def test_list_of_one_style_stays_a_list_and_single_style_stays_a_string(fake_server):
    client = StyleTransferClient(base_url=fake_server.url)
    client.stylize(CONTENT, (STYLE,))
    client.stylize(CONTENT, STYLE)
    one_list, single = (r.json["style"] for r in fake_server.requests)
    assert isinstance(one_list, list) and [_dec(s) for s in one_list] == [STYLE.read_bytes()]
    assert isinstance(single, str) and _dec(single) == STYLE.read_bytes()


def test_masks_and_init_image_are_top_level_fields(fake_server):
    content_mask, mask_a, mask_b = _png((255, 0, 0)), _png((0, 255, 0)), _png((0, 0, 255))
    pil_init = Image.new("RGB", (6, 4), (1, 2, 3))
    StyleTransferClient(base_url=fake_server.url).stylize(
        CONTENT, [STYLE, STYLE2], content_mask=content_mask, style_masks=[mask_a, bytearray(mask_b)],
        init_image=pil_init, init="image",
    )
    req = fake_server.requests[0].json
    assert set(req) == {"content", "style", "params", "content_mask", "style_masks", "init_image"}
    assert _dec(req["content_mask"]) == content_mask
    assert [_dec(m) for m in req["style_masks"]] == [mask_a, mask_b]
    with Image.open(io.BytesIO(_dec(req["init_image"]))) as img:
        assert img.format == "PNG" and img.size == (6, 4)
    assert req["params"] == {"init": "image"}


def test_one_mask_for_a_single_style(fake_server):
    mask = _png((9, 9, 9))
    StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE, style_masks=[mask])
    req = fake_server.requests[0].json
    assert isinstance(req["style"], str)
    assert [_dec(m) for m in req["style_masks"]] == [mask]


@pytest.mark.parametrize(
    "style, masks",
    [([STYLE, STYLE2], [STYLE]), ([STYLE], [STYLE, STYLE2]), (STYLE, [STYLE, STYLE2]), ([STYLE, STYLE2], [])],
)
def test_mismatched_style_masks_raise_before_any_http(fake_server, style, masks):
    with pytest.raises(ValueError, match="style_masks"):
        StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, style, style_masks=masks)
    assert fake_server.requests == []


def test_structural_errors_raise_before_any_http(fake_server):
    client = StyleTransferClient(base_url=fake_server.url)
    with pytest.raises(ValueError, match="style"):
        client.stylize(CONTENT, [])
    with pytest.raises(TypeError, match="style_masks"):
        client.stylize(CONTENT, STYLE, style_masks=str(STYLE))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"style\[1\]"):
        client.stylize(CONTENT, [STYLE, 42])  # type: ignore[list-item]
    with pytest.raises(FileNotFoundError, match="init_image"):
        client.stylize(CONTENT, STYLE, init_image="missing.png")
    with pytest.raises(FileNotFoundError, match=r"style_masks\[0\]"):
        client.stylize(CONTENT, STYLE, style_masks=["missing.png"])
    assert fake_server.requests == []


def test_all_new_params_are_sent_with_lists_as_json_lists(fake_server):
    StyleTransferClient(base_url=fake_server.url).stylize(
        CONTENT, [STYLE, STYLE2],
        style_blend_weights=(0.7, 0.3), style_scale=0.5, color_control="luminance", init="style",
        pooling="avg", content_layers=("relu4_2",), style_layers=["relu1_1", "relu2_1"],
        style_layer_weights=(1.0, 2.0), optimizer="adam", learning_rate=0.01, lbfgs_history=50,
        scales=(128, 256), mode="reconstruct_style", return_history=True,
        future_list=(1, 2),
    )
    raw = fake_server.requests[0].raw.decode()
    assert '"style_blend_weights": [0.7, 0.3]' in raw  # a tuple goes out as a JSON list
    assert fake_server.requests[0].json["params"] == {
        "style_blend_weights": [0.7, 0.3], "style_scale": 0.5, "color_control": "luminance",
        "init": "style", "pooling": "avg", "content_layers": ["relu4_2"],
        "style_layers": ["relu1_1", "relu2_1"], "style_layer_weights": [1.0, 2.0],
        "optimizer": "adam", "learning_rate": 0.01, "lbfgs_history": 50, "scales": [128, 256],
        "mode": "reconstruct_style", "return_history": True, "future_list": [1, 2],
    }


@pytest.mark.parametrize("scales, sent", [(3, 3), ([128, 256], [128, 256]), (range(2), [0, 1])])
def test_scales_int_or_list(fake_server, scales, sent):
    StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE, scales=scales)
    assert fake_server.requests[0].json["params"] == {"scales": sent}


def test_return_history_false_is_sent_and_none_is_omitted(fake_server):
    client = StyleTransferClient(base_url=fake_server.url)
    client.stylize(CONTENT, STYLE, return_history=False)
    client.stylize(CONTENT, STYLE, return_history=None)
    assert [r.json["params"] for r in fake_server.requests] == [{"return_history": False}, {}]


def test_history_is_parsed(fake_server, success_body):
    fake_server.reply(200, success_body(history=HISTORY))
    result = StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE, return_history=True)
    assert fake_server.requests[0].json["params"] == {"return_history": True}
    assert result.history == HISTORY
    assert result.raw["history"] == HISTORY
    assert "history" not in repr(result)


def test_history_absent_or_null_is_none(fake_server, success_body):
    client = StyleTransferClient(base_url=fake_server.url)
    assert client.stylize(CONTENT, STYLE).history is None  # key absent
    fake_server.reply(200, success_body(history=None))
    assert client.stylize(CONTENT, STYLE).history is None  # explicit null


@pytest.mark.parametrize("history", [{"iteration": 1}, [1, 2], "x"])
def test_malformed_history_is_a_validation_error(fake_server, success_body, history):
    fake_server.reply(200, success_body(history=history))
    with pytest.raises(APIResponseValidationError, match="history"):
        StyleTransferClient(base_url=fake_server.url).stylize(CONTENT, STYLE)


# --------------------------------------------------------------------------- CLI


def _run(fake_server, tmp_path, *extra: str) -> int:
    return cli.main(["stylize", str(CONTENT), *extra, "-o", str(tmp_path / "o.png"), "--url", fake_server.url])


def test_cli_positional_styles_then_style_flags(fake_server, tmp_path):
    rc = cli.main([
        "stylize", str(CONTENT), str(STYLE), str(STYLE2), "--style", str(OUTPUT), "--style", str(STYLE),
        "-o", str(tmp_path / "o.png"), "--url", fake_server.url,
    ])
    assert rc == 0
    styles = fake_server.requests[0].json["style"]
    assert [_dec(s) for s in styles] == [STYLE.read_bytes(), STYLE2.read_bytes(), OUTPUT.read_bytes(),
                                        STYLE.read_bytes()]


def test_cli_styles_after_options_keep_their_order(fake_server, tmp_path):
    rc = cli.main([
        "stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), str(STYLE2),
        "--style", str(OUTPUT), "--url", fake_server.url, "--iterations", "2", str(CONTENT),
    ])
    assert rc == 0
    req = fake_server.requests[0].json
    assert [_dec(s) for s in req["style"]] == [STYLE.read_bytes(), STYLE2.read_bytes(), CONTENT.read_bytes(),
                                              OUTPUT.read_bytes()]
    assert req["params"] == {"iterations": 2}


def test_cli_unknown_option_is_still_a_usage_error(fake_server, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        _run(fake_server, tmp_path, str(STYLE), "--no-such-flag")
    assert info.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err
    assert fake_server.requests == []


def test_cli_single_style_via_flag_is_a_string(fake_server, tmp_path):
    assert _run(fake_server, tmp_path, "--style", str(STYLE2)) == 0
    style = fake_server.requests[0].json["style"]
    assert isinstance(style, str) and _dec(style) == STYLE2.read_bytes()


def test_cli_no_style_is_a_usage_error(fake_server, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        _run(fake_server, tmp_path)
    assert info.value.code == 2
    assert "style" in capsys.readouterr().err
    assert fake_server.requests == []


def test_cli_masks_and_init_image(fake_server, tmp_path):
    paths = []
    for i, color in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (5, 5, 5)]):
        path = tmp_path / f"m{i}.png"
        path.write_bytes(_png(color))
        paths.append(path)
    rc = _run(fake_server, tmp_path, str(STYLE), str(STYLE2), "--content-mask", str(paths[0]),
              "--style-mask", str(paths[1]), "--style-mask", str(paths[2]),
              "--init-image", str(paths[3]), "--init", "image")
    assert rc == 0
    req = fake_server.requests[0].json
    assert _dec(req["content_mask"]) == paths[0].read_bytes()
    assert [_dec(m) for m in req["style_masks"]] == [paths[1].read_bytes(), paths[2].read_bytes()]
    assert _dec(req["init_image"]) == paths[3].read_bytes()
    assert req["params"] == {"init": "image"}


def test_cli_mask_count_mismatch_exits_2_without_request(fake_server, tmp_path, capsys):
    rc = _run(fake_server, tmp_path, str(STYLE), str(STYLE2), "--style-mask", str(STYLE))
    assert rc == 2 and fake_server.requests == []
    assert "style_masks" in capsys.readouterr().err


def test_cli_every_new_flag(fake_server, tmp_path):
    rc = _run(
        fake_server, tmp_path, str(STYLE), str(STYLE2),
        "--style-blend-weights", "0.25,0.75", "--style-scale", "1.5", "--color-control", "histogram",
        "--init", "noise", "--pooling", "avg", "--content-layers", "relu4_2",
        "--style-layers", "relu1_1, relu2_1,relu3_1", "--style-layer-weights", "1,2,3",
        "--optimizer", "lbfgs", "--learning-rate", "1e-2", "--lbfgs-history", "20",
        "--scales", "3", "--mode", "reconstruct_content", "--return-history",
    )
    assert rc == 0
    params = fake_server.requests[0].json["params"]
    assert params == {
        "style_blend_weights": [0.25, 0.75], "style_scale": 1.5, "color_control": "histogram",
        "init": "noise", "pooling": "avg", "content_layers": ["relu4_2"],
        "style_layers": ["relu1_1", "relu2_1", "relu3_1"], "style_layer_weights": [1.0, 2.0, 3.0],
        "optimizer": "lbfgs", "learning_rate": 0.01, "lbfgs_history": 20, "scales": 3,
        "mode": "reconstruct_content", "return_history": True,
    }
    assert all(isinstance(w, float) for w in params["style_layer_weights"])


@pytest.mark.parametrize("text, sent", [("3", 3), ("128,256", [128, 256]), (" 64 , 128 ", [64, 128])])
def test_cli_scales(fake_server, tmp_path, text, sent):
    assert _run(fake_server, tmp_path, str(STYLE), "--scales", text) == 0
    assert fake_server.requests[0].json["params"] == {"scales": sent}


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--style-blend-weights", "0.5,abc"),
        ("--style-blend-weights", "0.5,,0.5"),
        ("--style-blend-weights", "nan,1"),
        ("--style-layer-weights", ""),
        ("--style-layers", "relu1_1,"),
        ("--content-layers", ","),
        ("--scales", "128,x"),
        ("--scales", "1.5"),
        ("--scales", "256,"),
        ("--color-control", "sepia"),
        ("--init", "random"),
    ],
)
def test_cli_bad_values_are_usage_errors(fake_server, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as info:
        _run(fake_server, tmp_path, str(STYLE), flag, value)
    assert info.value.code == 2
    assert flag in capsys.readouterr().err
    assert fake_server.requests == []


def test_cli_history_out_writes_the_servers_history(fake_server, tmp_path, success_body):
    fake_server.reply(200, success_body(history=HISTORY))
    hist = tmp_path / "history.json"
    assert _run(fake_server, tmp_path, str(STYLE), "--history-out", str(hist)) == 0
    assert fake_server.requests[0].json["params"] == {"return_history": True}
    assert json.loads(hist.read_text()) == HISTORY
    assert (tmp_path / "o.png").read_bytes() == OUTPUT.read_bytes()


def test_cli_history_out_without_history_in_answer_is_a_bad_response(fake_server, tmp_path, capsys):
    hist = tmp_path / "history.json"
    # EXIT_BAD_RESPONSE: the answer lacks what was asked for
    assert _run(fake_server, tmp_path, str(STYLE), "--history-out", str(hist)) == 11
    assert not hist.exists()
    assert "no history" in capsys.readouterr().err


def test_time_budget_is_sent_and_bounds_the_read_timeout(fake_server, success_body, monkeypatch):
    from nst_client._constants import DEADLINE_READ_MARGIN

    fake_server.reply(200, success_body(stopped="time_budget"))
    client = StyleTransferClient(base_url=fake_server.url, timeout=900)
    sent = {}
    original = requests.Session.request

    def spy(session, method, url, **kwargs):
        sent["timeout"] = kwargs["timeout"]
        return original(session, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)  # records the timeout the real request is made with
    result = client.stylize(CONTENT, STYLE, time_budget_s=5)
    assert fake_server.requests[-1].json["params"]["time_budget_s"] == 5
    assert sent["timeout"][1] == 5 + DEADLINE_READ_MARGIN
    assert result.stopped == "time_budget"

"""``nst-client stylize --compare/--plot/--animate`` against the local recording server."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from nst_client import cli
from PIL import Image, ImageChops

DATA = Path(__file__).parents[1] / "data"
CONTENT = DATA / "tubingen_64x64.png"
STYLE = DATA / "starry_night_64x64.png"
OUTPUT = DATA / "chelsea_128x96.png"  # the fake server's result image

HISTORY = [{"iteration": i, "content": 1.0 / i, "style": 4.0 / i, "tv": 0.1, "total": 5.0 / i} for i in range(1, 8)]


def _open(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img.copy()


def _jpeg(color) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buf, format="JPEG", quality=95)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _stream(success_body, colors, *, iterations: int) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for i, color in enumerate(colors):
        lines.append({"event": "preview", "iteration": i, "width": 32, "height": 24, "image": _jpeg(color)})
    lines.append({"event": "result", **success_body(iterations=iterations)})
    return lines


def test_compare_sheet_holds_the_result_pixel_for_pixel(fake_server, tmp_path, capsys):
    out, sheet = tmp_path / "o.png", tmp_path / "cmp.png"
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(out), "--compare", str(sheet), "--url", fake_server.url])
    assert rc == 0
    assert f"wrote {sheet} (compare)" in capsys.readouterr().out
    img = _open(sheet).convert("RGB")
    result = _open(OUTPUT).convert("RGB")
    assert img.height > result.height  # labels under the row
    # The result (128x96) appears unchanged somewhere in the top row of the sheet: find it.
    found = [x for x in range(img.width - result.width + 1)
             if ImageChops.difference(img.crop((x, 6, x + result.width, 6 + result.height)), result).getbbox() is None]
    assert len(found) == 1 and found[0] > 2 * 96  # right of content and style
    assert fake_server.requests[0].json["params"] == {}  # a picture flag changes nothing in the request


def test_plot_implies_return_history_and_writes_the_png(fake_server, success_body, tmp_path):
    fake_server.reply(200, success_body(history=HISTORY))
    plot = tmp_path / "losses.png"
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--plot", str(plot),
                   "--url", fake_server.url, "--iterations", "7"])
    assert rc == 0
    assert fake_server.requests[0].json["params"] == {"iterations": 7, "return_history": True}
    with Image.open(plot) as img:
        assert img.format == "PNG" and img.size == (960, 540)


def test_plot_without_matplotlib_names_the_extra_and_sends_nothing(fake_server, tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--plot",
                   str(tmp_path / "l.png"), "--url", fake_server.url])
    assert rc == cli.EXIT_MISSING_EXTRA and fake_server.requests == []
    assert "pip install 'nst-client[plot]'" in capsys.readouterr().err


def test_progress_without_tqdm_exit_code(fake_server, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--progress",
                   "--url", fake_server.url, "--json"])
    assert rc == cli.EXIT_MISSING_EXTRA and fake_server.requests == []
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"]["kind"] == "missing-extra" and "nst-client[progress]" in doc["error"]["message"]


@pytest.mark.parametrize("flag, name", [("--plot", "l.xyz"), ("--compare", "c.xyz"), ("--compare", "c.psd")])
def test_picture_suffixes_are_checked_before_sending(fake_server, tmp_path, capsys, flag, name):
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), flag,
                   str(tmp_path / name), "--url", fake_server.url])
    assert rc == cli.EXIT_USAGE and fake_server.requests == []
    assert ".png" in capsys.readouterr().err


def test_animate_streams_previews_into_a_gif_ending_on_the_result(fake_server, success_body, tmp_path, capsys):
    colors = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]
    fake_server.stream(_stream(success_body, colors, iterations=7))
    gif = tmp_path / "a.gif"
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--animate", str(gif),
                   "--preview-every", "3", "--iterations", "7", "--url", fake_server.url, "--json"])
    assert rc == 0
    assert fake_server.requests[0].json["params"] == {"iterations": 7, "stream": True, "preview_every": 3}
    doc = json.loads(capsys.readouterr().out)
    # Three previews (iterations 0, 1, 2 here) and the result (iteration 7) as the last frame.
    assert doc["animation_frames"] == 4 and doc["files"]["animation"] == str(gif)
    with Image.open(gif) as img:
        assert img.n_frames == 4 and img.width == 32
        for i, color in enumerate(colors):
            img.seek(i)
            r, g, b = img.convert("RGB").getpixel((16, 12))
            assert max(abs(r - color[0]), abs(g - color[1]), abs(b - color[2])) < 24


def test_animate_default_interval_and_gif_suffix(fake_server, success_body, tmp_path, capsys):
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--animate",
                   str(tmp_path / "a.png"), "--url", fake_server.url])
    assert rc == cli.EXIT_USAGE and fake_server.requests == []
    assert "gif" in capsys.readouterr().err
    fake_server.stream(_stream(success_body, [(9, 9, 9)], iterations=7))
    rc = cli.main(["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--animate",
                   str(tmp_path / "a.gif"), "--url", fake_server.url])
    assert rc == 0
    assert fake_server.requests[0].json["params"] == {"stream": True, "preview_every": 10}

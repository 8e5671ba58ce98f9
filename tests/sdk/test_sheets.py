"""The picture builders of the CLI: compare sheet, contact sheet, preview GIF (Pillow) and the
loss plot (matplotlib, the optional ``plot`` extra)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from nst_client import MissingDependencyError
from nst_client.cli.plots import LOSS_TERMS, plot_formats, plot_history, require_matplotlib
from nst_client.cli.sheets import compare_sheet, fit_within, grid_sheet, to_rgb, write_animation
from PIL import Image, ImageChops

DATA = Path(__file__).parents[1] / "data"


def _solid(color, size=(40, 30)) -> Image.Image:
    return Image.new("RGB", size, color)


def _open(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img.copy()


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(to_rgb(a), to_rgb(b)).getbbox() is None


# ------------------------------------------------------------------------------ compare sheet


def test_compare_sheet_places_the_result_unchanged_and_inputs_at_its_height():
    content = _open(DATA / "chelsea_128x96.png")
    style = _open(DATA / "starry_night_64x64.png")
    result = _open(DATA / "the_scream_128x96.png").resize((64, 48))
    sheet = compare_sheet(content, [style], result, caption="64x48, 3 iterations")
    assert list(sheet.boxes) == ["content", "style", "result"]
    # The result region is exactly the result image.
    assert _same(sheet.image.crop(sheet.boxes["result"]), result)
    # Content and style are resized to the result's height, aspect ratio kept, left to right.
    assert _same(sheet.image.crop(sheet.boxes["content"]), content.resize((64, 48), Image.Resampling.LANCZOS))
    assert _same(sheet.image.crop(sheet.boxes["style"]), style.resize((48, 48), Image.Resampling.LANCZOS))
    lefts = [sheet.boxes[k][0] for k in ("content", "style", "result")]
    assert lefts == sorted(lefts)
    assert all(b[1] == sheet.boxes["result"][1] and b[3] - b[1] == 48 for b in sheet.boxes.values())
    # Labels and caption are drawn below the row: there are dark pixels under each tile.
    below = sheet.image.crop((0, sheet.boxes["result"][3], sheet.image.width, sheet.image.height))
    assert below.convert("L").getextrema()[0] < 100


def test_compare_sheet_several_styles_are_numbered_and_alpha_is_flattened():
    rgba = Image.new("RGBA", (30, 30), (255, 0, 0, 0))  # fully transparent red -> white
    sheet = compare_sheet(_solid((0, 0, 255)), [rgba, _solid((0, 255, 0))], _solid((9, 9, 9), (20, 30)))
    assert list(sheet.boxes) == ["content", "style 1", "style 2", "result"]
    assert sheet.image.crop(sheet.boxes["style 1"]).getcolors() == [(30 * 30, (255, 255, 255))]
    assert sheet.image.crop(sheet.boxes["style 2"]).getcolors() == [(40 * 30, (0, 255, 0))]


def test_compare_sheet_needs_a_style():
    with pytest.raises(ValueError, match="style"):
        compare_sheet(_solid((0, 0, 0)), [], _solid((0, 0, 0)))


# ------------------------------------------------------------------------------ contact sheet


def test_grid_sheet_puts_each_cell_under_its_labels():
    colors = [[(255, 0, 0), (0, 255, 0)], [(0, 0, 255), None]]
    cells = [[None if c is None else _solid(c, (80, 60)) for c in row] for row in colors]
    sheet = grid_sheet(cells, row_labels=["style_weight=100", "style_weight=1000"],
                       col_labels=["tv_weight=0", "tv_weight=0.01"], tile=40, title="a title")
    assert set(sheet.boxes) == {(0, 0), (0, 1), (1, 0)}  # the missing cell has no image
    for (r, c), box in sheet.boxes.items():
        tile = sheet.image.crop(box)
        assert tile.size == (40, 30)  # scaled down to the tile, aspect kept
        assert tile.getcolors() == [(40 * 30, colors[r][c])]
    # Row-major placement: same row -> same top, same column -> same left.
    assert sheet.boxes[(0, 0)][1] == sheet.boxes[(0, 1)][1] < sheet.boxes[(1, 0)][1]
    assert sheet.boxes[(0, 0)][0] == sheet.boxes[(1, 0)][0] < sheet.boxes[(0, 1)][0]
    # The row labels sit left of the first column, the column labels above the first row.
    assert sheet.image.crop((0, sheet.boxes[(0, 0)][1], sheet.boxes[(0, 0)][0], sheet.boxes[(0, 0)][3])) \
        .convert("L").getextrema()[0] < 100
    assert sheet.image.crop((sheet.boxes[(0, 1)][0], 0, sheet.boxes[(0, 1)][2], sheet.boxes[(0, 1)][1])) \
        .convert("L").getextrema()[0] < 100
    # The missing cell is a grey tile where (1, 1) would be.
    x = sheet.boxes[(0, 1)][0] + 2
    y = sheet.boxes[(1, 0)][1] + 2
    assert sheet.image.getpixel((x, y)) == (225, 225, 225)


def test_grid_sheet_never_enlarges_and_drops_an_empty_label_column():
    one_row = grid_sheet([[_solid((1, 2, 3), (20, 10)), _solid((4, 5, 6), (20, 10))]],
                         row_labels=[""], col_labels=["a=1", "a=2"], tile=256)
    assert [one_row.image.crop(b).size for b in one_row.boxes.values()] == [(20, 10), (20, 10)]
    assert one_row.boxes[(0, 0)][0] < 20  # no label column before the first cell


@pytest.mark.parametrize("kwargs, match", [
    ({"row_labels": ["r"], "col_labels": ["a", "b"]}, "row 0 has 1 cells"),
    ({"row_labels": [], "col_labels": ["a"]}, "row labels"),
    ({"row_labels": ["r"], "col_labels": ["a"], "tile": 8}, "tile"),
])
def test_grid_sheet_rejects_inconsistent_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        grid_sheet([[_solid((0, 0, 0))]], **kwargs)


def test_fit_within_keeps_aspect_and_never_enlarges():
    assert fit_within(_solid((0, 0, 0), (400, 100)), 100, 100).size == (100, 25)
    assert fit_within(_solid((0, 0, 0), (10, 20)), 100, 100).size == (10, 20)


# ------------------------------------------------------------------------------------ GIF


def test_animation_has_one_frame_per_preview_scaled_to_the_largest(tmp_path):
    colors = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]
    frames = [_solid(c, (32, 24) if i < 2 else (64, 48)) for i, c in enumerate(colors)]  # coarse then fine
    path = write_animation(frames, tmp_path / "a.gif", labels=[f"iteration {i}" for i in range(4)])
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 4 and gif.info.get("loop") == 0
        for i, color in enumerate(colors):
            gif.seek(i)
            frame = gif.convert("RGB")
            assert frame.width == 64 and frame.height > 48  # the largest frame, plus a label strip below
            r, g, b = frame.getpixel((32, 20))
            assert max(abs(r - color[0]), abs(g - color[1]), abs(b - color[2])) < 16
        gif.seek(3)
        assert gif.info["duration"] == 1500  # the last frame is held


def test_animation_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="gif"):
        write_animation([_solid((0, 0, 0))], tmp_path / "a.png")
    with pytest.raises(ValueError, match="no frames"):
        write_animation([], tmp_path / "a.gif")
    with pytest.raises(ValueError, match="labels"):
        write_animation([_solid((0, 0, 0))], tmp_path / "a.gif", labels=["a", "b"])


# ------------------------------------------------------------------------------------- plot


def _history(n=6):
    return [{"iteration": i, "content": 0.5 / i, "style": 2.0 / i ** 2, "tv": 0.01, "total": 10.0 / i}
            for i in range(1, n + 1)]


def test_plot_history_writes_a_png_of_the_requested_size(tmp_path):
    path = plot_history(_history(), tmp_path / "losses.png", title="t", width_px=640, height_px=400, dpi=80)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (640, 400)
        # Four coloured lines: far more than the white background and black axes.
        assert len(img.convert("RGB").getcolors(1 << 20)) > 50


def test_plot_history_draws_each_term_on_a_log_axis(tmp_path, monkeypatch):
    seen = {}
    real_savefig = __import__("matplotlib.figure", fromlist=["Figure"]).Figure.savefig

    def spy(fig, *args, **kwargs):  # look at the finished figure, then save it for real
        ax = fig.axes[0]
        seen["scale"] = ax.get_yscale()
        seen["lines"] = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", spy)
    history = _history(3)
    history[1]["content"] = 0.0  # cannot be drawn on a log axis: left out
    plot_history(history, tmp_path / "l.svg")
    assert seen["scale"] == "log"
    assert list(seen["lines"]) == list(LOSS_TERMS)
    assert seen["lines"]["total"] == [10.0, 5.0, 10.0 / 3]
    assert seen["lines"]["content"] == [0.5, 0.5 / 3]
    assert (tmp_path / "l.svg").read_text().lstrip().startswith("<?xml")


def test_plot_history_rejects_empty_history_and_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plot_history([], tmp_path / "l.png")
    with pytest.raises(ValueError, match=r"\.png"):
        plot_history(_history(), tmp_path / "l.xyz")
    assert {"png", "svg", "pdf"} <= plot_formats()


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes "import matplotlib" fail
    with pytest.raises(MissingDependencyError) as info:
        plot_history(_history(), tmp_path / "l.png")
    assert isinstance(info.value, ImportError)
    assert "pip install 'nst-client[plot]'" in str(info.value)
    with pytest.raises(MissingDependencyError):
        require_matplotlib()
    assert not (tmp_path / "l.png").exists()

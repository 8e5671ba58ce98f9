"""``nst-client sweep`` against the local recording server: the grid, its files, the manifest,
the contact sheet, concurrency and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nst_client import cli
from PIL import Image

DATA = Path(__file__).parents[1] / "data"
CONTENT = DATA / "tubingen_64x64.png"
STYLE = DATA / "starry_night_64x64.png"
OUTPUT = DATA / "chelsea_128x96.png"  # the fake server's result image

GRID = ["--param", "style_weight=1e2,1e4", "--param", "tv_weight=0,0.01"]
FILES = {
    "style_weight=100.0__tv_weight=0.png": {"style_weight": 100.0, "tv_weight": 0},
    "style_weight=100.0__tv_weight=0.01.png": {"style_weight": 100.0, "tv_weight": 0.01},
    "style_weight=10000.0__tv_weight=0.png": {"style_weight": 10000.0, "tv_weight": 0},
    "style_weight=10000.0__tv_weight=0.01.png": {"style_weight": 10000.0, "tv_weight": 0.01},
}


def _sweep(fake_server, out: Path, *extra: str) -> int:
    return cli.main(["sweep", str(CONTENT), str(STYLE), "-o", str(out), "--url", fake_server.url, *GRID, *extra])


def test_a_2x2_grid_writes_cells_manifest_and_sheet(fake_server, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert _sweep(fake_server, out, "--iterations", "3") == 0
    sent = sorted((r.json["params"]["style_weight"], r.json["params"]["tv_weight"]) for r in fake_server.requests)
    assert sent == [(100.0, 0), (100.0, 0.01), (10000.0, 0), (10000.0, 0.01)]
    assert all(r.json["params"]["iterations"] == 3 for r in fake_server.requests)  # other flags go to every cell
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, "sheet.png", "sweep.json"])
    for name in FILES:
        assert (out / name).read_bytes() == OUTPUT.read_bytes()
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["axes"] == {"style_weight": [100.0, 10000.0], "tv_weight": [0, 0.01]}
    assert manifest["params"] == {"iterations": 3}
    assert {name: entry["params"] for name, entry in manifest["cells"].items()} == FILES
    assert all(entry["losses"]["total"] == 3.875 and entry["effective_params"] == {"image_size": 128, "iterations": 7}
               for entry in manifest["cells"].values())
    # The sheet: two rows of two 128x96 results, plus labels.
    with Image.open(out / "sheet.png") as sheet:
        assert sheet.width > 2 * 128 and sheet.height > 2 * 96
    lines = capsys.readouterr().out.splitlines()
    assert sum("->" in line for line in lines) == 4 and "4 cells: 4 rendered, 0 skipped" in lines[-1]


def test_a_rerun_skips_finished_cells(fake_server, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert _sweep(fake_server, out) == 0
    fake_server.requests.clear()
    sheet_before = (out / "sheet.png").read_bytes()
    capsys.readouterr()
    assert _sweep(fake_server, out, "--json") == 0
    assert fake_server.requests == []  # nothing was sent for finished cells
    doc = json.loads(capsys.readouterr().out)
    assert (doc["rendered"], doc["skipped"]) == (0, 4)
    assert (out / "sheet.png").read_bytes() == sheet_before

    # A lost image is rendered again, alone.
    (out / "style_weight=10000.0__tv_weight=0.png").unlink()
    assert _sweep(fake_server, out, "--json") == 0
    assert [(r.json["params"]["style_weight"], r.json["params"]["tv_weight"]) for r in fake_server.requests] == [(10000.0, 0)]
    doc = json.loads(capsys.readouterr().out)
    assert (doc["rendered"], doc["skipped"]) == (1, 3)
    assert [c["status"] for c in doc["cells"]] == ["skipped", "skipped", "rendered", "skipped"]


def test_a_new_axis_value_renders_only_the_new_cells(fake_server, tmp_path):
    out = tmp_path / "sweep"
    assert _sweep(fake_server, out) == 0
    fake_server.requests.clear()
    rc = cli.main(["sweep", str(CONTENT), str(STYLE), "-o", str(out), "--url", fake_server.url,
                   "--param", "style_weight=1e2,1e4,1e6", "--param", "tv_weight=0,0.01"])
    assert rc == 0
    assert sorted(r.json["params"]["tv_weight"] for r in fake_server.requests) == [0, 0.01]
    assert all(r.json["params"]["style_weight"] == 1e6 for r in fake_server.requests)


def test_other_settings_in_the_same_directory_are_refused(fake_server, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert _sweep(fake_server, out, "--iterations", "3") == 0
    fake_server.requests.clear()
    assert _sweep(fake_server, out, "--iterations", "4") == cli.EXIT_USAGE
    assert fake_server.requests == []
    assert "other settings" in capsys.readouterr().err


def test_concurrency_keeps_n_requests_in_flight(fake_server, success_body, tmp_path, pairs_in_flight):
    fake_server.reply(200, success_body(), delay=0.3)
    assert _sweep(fake_server, tmp_path / "sweep", "--concurrency", "2") == 0
    # Two at a time (the fixture's pairing would time out one after the other), never all four.
    assert len(fake_server.requests) == 4 and pairs_in_flight.peak == 2


def test_one_axis_is_one_row_of_the_sheet(fake_server, tmp_path):
    out = tmp_path / "sweep"
    rc = cli.main(["sweep", str(CONTENT), str(STYLE), "-o", str(out), "--url", fake_server.url,
                   "--param", "seed=1,2,3", "--tile", "64"])
    assert rc == 0 and sorted(r.json["params"]["seed"] for r in fake_server.requests) == [1, 2, 3]
    with Image.open(out / "sheet.png") as sheet:
        assert sheet.width > 3 * 64 and 48 < sheet.height < 2 * 48  # one row of 128x96 results shown at 64x48


def test_list_values_and_a_single_value_param(fake_server, tmp_path):
    out = tmp_path / "sweep"
    rc = cli.main(["sweep", str(CONTENT), str(STYLE), "-o", str(out), "--url", fake_server.url,
                   "--param", "scales=[32,64],2", "--param", "optimizer=adam"])
    assert rc == 0
    sent = [r.json["params"] for r in fake_server.requests]
    assert sorted(json.dumps(p, sort_keys=True) for p in sent) == sorted(json.dumps(p, sort_keys=True) for p in [
        {"scales": [32, 64], "optimizer": "adam"}, {"scales": 2, "optimizer": "adam"}])
    assert {p.name for p in out.glob("scales=*")} == {"scales=32,64__optimizer=adam.png", "scales=2__optimizer=adam.png"}


def test_a_failed_cell_stops_the_sweep_and_keeps_the_finished_ones(fake_server, success_body, tmp_path, capsys):
    fake_server.reply(200).reply(400, {"error": {"code": "out_of_range", "message": "too big", "field": "params.x"}})
    out = tmp_path / "sweep"
    assert _sweep(fake_server, out) == cli.EXIT_REJECTED
    assert len(fake_server.requests) == 2  # sequential: the third and fourth cells were never started
    manifest = json.loads((out / "sweep.json").read_text())
    assert list(manifest["cells"]) == ["style_weight=100.0__tv_weight=0.png"]
    assert (out / "sheet.png").is_file()  # with the missing cells marked
    assert "too big" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--param", "style_weight=1,2", "--style-weight", "3"], "set by a flag and by --param"),
    (["--param", "style_weight=1", "--param", "style_weight=2"], "given twice"),
])
def test_conflicting_axes_are_usage_errors(fake_server, tmp_path, capsys, argv, message):
    rc = cli.main(["sweep", str(CONTENT), str(STYLE), "-o", str(tmp_path / "s"), "--url", fake_server.url, *argv])
    assert rc == cli.EXIT_USAGE and fake_server.requests == []
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["--param", "style_weight"], ["--param", "style_weight=1,,2"],
                                  ["--param", "style_weight=1,1"], ["--param", "x=1", "--concurrency", "0"]])
def test_sweep_usage_errors(fake_server, tmp_path, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(["sweep", str(CONTENT), str(STYLE), "-o", str(tmp_path / "s"), "--url", fake_server.url, *argv])
    assert info.value.code == cli.EXIT_USAGE and fake_server.requests == []

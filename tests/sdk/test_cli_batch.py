"""``nst-client batch`` against the local recording server: contents from a directory or a glob,
one image per (content, style) pair, the manifest, the contact sheet, resuming, failures that
do not stop the batch, concurrency and the ``--json`` document."""

from __future__ import annotations

import base64
import json
import shutil
import sys
from pathlib import Path

import pytest
from nst_client import cli
from nst_client._params import PARAMS
from PIL import Image

DATA = Path(__file__).parents[1] / "data"
OUTPUT = DATA / "chelsea_128x96.png"  # the fake server's result image
STYLES = [DATA / "starry_night_64x64.png", DATA / "the_scream_128x96.png"]
PAIRS = {  # output file -> (content file name, style file name)
    "a__starry_night_64x64.png": ("a.png", "starry_night_64x64.png"),
    "a__the_scream_128x96.png": ("a.png", "the_scream_128x96.png"),
    "b__starry_night_64x64.png": ("b.jpg", "starry_night_64x64.png"),
    "b__the_scream_128x96.png": ("b.jpg", "the_scream_128x96.png"),
}
REJECTED = {"error": {"code": "out_of_range", "message": "too big", "field": "params.image_size"}}


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A content directory: a.png, b.jpg, and a text file and a folder that are no images."""
    d = tmp_path / "photos"
    d.mkdir()
    shutil.copy(DATA / "tubingen_64x64.png", d / "a.png")
    shutil.copy(DATA / "tubingen_128x96.png", d / "b.jpg")  # the fake server does not decode it
    (d / "notes.txt").write_text("not an image")
    (d / "sub.png").mkdir()
    return d


def _batch(fake_server, content: object, out: Path, *extra: str) -> int:
    return cli.main(["batch", str(content), *map(str, STYLES), "-o", str(out), "--url", fake_server.url, *extra])


def _sent_pairs(fake_server, photos: Path) -> list[tuple[str, str]]:
    """(content name, style name) of each request, in the order they were sent."""
    names = {base64.b64encode(p.read_bytes()).decode(): p.name for p in [*photos.iterdir(), *STYLES] if p.is_file()}
    return [(names[r.json["content"]], names[r.json["style"]]) for r in fake_server.requests]


def test_a_directory_gives_an_image_per_pair_a_manifest_and_a_sheet(fake_server, photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert _batch(fake_server, photos, out, "--iterations", "3") == 0
    assert sorted(_sent_pairs(fake_server, photos)) == sorted(PAIRS.values())  # notes.txt and the folder left out
    assert all(r.json["params"] == {"iterations": 3} for r in fake_server.requests)
    assert sorted(p.name for p in out.iterdir()) == sorted([*PAIRS, "batch.json", "sheet.png"])
    for name in PAIRS:
        assert (out / name).read_bytes() == OUTPUT.read_bytes()
    manifest = json.loads((out / "batch.json").read_text())
    pairs = manifest["pairs"]
    assert {name: (Path(e["content"]).name, Path(e["style"]).name) for name, e in pairs.items()} == PAIRS
    assert all(e["params"] == {"iterations": 3} and e["model"] == "nst" and e["losses"]["total"] == 3.875
               and len(e["inputs_sha256"]["content"]) == 64 for e in pairs.values())
    with Image.open(out / "sheet.png") as sheet:  # two rows (contents) of two 128x96 results, plus labels
        assert sheet.width > 2 * 128 and sheet.height > 2 * 96
    lines = capsys.readouterr().out.splitlines()
    assert sum("->" in line for line in lines) == 4
    assert "4 pairs: 4 rendered, 0 skipped as done before, 0 failed" in lines[-1]


def test_a_glob_takes_the_files_it_matches(fake_server, photos, tmp_path):
    (photos / "deeper").mkdir()
    shutil.copy(DATA / "starry_night_128x96.png", photos / "deeper" / "c.png")
    out = tmp_path / "out"
    assert _batch(fake_server, photos / "*.png", out) == 0  # a.png only: b.jpg does not match, sub.png is a folder
    assert {p.name for p in out.glob("*__*")} == {"a__starry_night_64x64.png", "a__the_scream_128x96.png"}
    assert _batch(fake_server, f"{photos}/**/*.png", out) == 0  # ** spans directories
    assert {p.name.split("__")[0] for p in out.glob("*__*")} == {"a", "c"}


def test_a_rerun_skips_every_pair_done(fake_server, photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert _batch(fake_server, photos, out) == 0
    fake_server.requests.clear()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*__*")}
    capsys.readouterr()
    assert _batch(fake_server, photos, out, "--json") == 0
    assert fake_server.requests == []  # nothing was sent
    doc = json.loads(capsys.readouterr().out)
    assert (doc["rendered"], doc["skipped"], doc["failed"]) == (0, 4, 0)
    assert {p["status"] for p in doc["pairs"]} == {"skipped"}
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*__*")} == mtimes


def test_a_changed_parameter_or_input_renders_again(fake_server, photos, tmp_path):
    out = tmp_path / "out"
    assert _batch(fake_server, photos, out, "--iterations", "3") == 0
    fake_server.requests.clear()
    assert _batch(fake_server, photos, out, "--iterations", "4") == 0  # no refusal: every pair is rendered anew
    assert len(fake_server.requests) == 4 and all(r.json["params"] == {"iterations": 4} for r in fake_server.requests)
    assert {e["params"]["iterations"] for e in json.loads((out / "batch.json").read_text())["pairs"].values()} == {4}

    fake_server.requests.clear()
    shutil.copy(DATA / "chelsea_128x96.png", photos / "a.png")  # other bytes under the same name
    assert _batch(fake_server, photos, out, "--iterations", "4") == 0
    assert sorted(_sent_pairs(fake_server, photos)) == [("a.png", "starry_night_64x64.png"),
                                                   ("a.png", "the_scream_128x96.png")]


def test_a_rejected_pair_does_not_stop_the_others(fake_server, photos, tmp_path, capsys):
    fake_server.reply(200).reply(400, REJECTED).reply(200)  # the second pair is refused, the rest succeed
    out = tmp_path / "out"
    assert _batch(fake_server, photos, out) == cli.EXIT_REJECTED
    assert len(fake_server.requests) == 4
    assert sorted(p.name for p in out.glob("*__*")) == sorted(set(PAIRS) - {"a__the_scream_128x96.png"})
    entry = json.loads((out / "batch.json").read_text())["pairs"]["a__the_scream_128x96.png"]
    assert entry["error"]["kind"] == "rejected" and entry["error"]["code"] == "out_of_range"
    assert (out / "sheet.png").is_file()  # with the failed pair marked missing
    lines = capsys.readouterr().out.splitlines()
    assert "4 pairs: 3 rendered, 0 skipped as done before, 1 failed" in lines[-2]
    assert lines[-1] == f"failed: {photos / 'a.png'} x {STYLES[1]}: rejected: too big"

    # A rerun sends the failed pair alone.
    fake_server.requests.clear()
    assert _batch(fake_server, photos, out) == 0
    assert _sent_pairs(fake_server, photos) == [("a.png", "the_scream_128x96.png")]


def test_an_unreadable_content_fails_its_pairs_only(fake_server, photos, tmp_path, capsys):
    (photos / "c.png").write_bytes(b"")
    out = tmp_path / "out"
    assert _batch(fake_server, photos, out, "--json") == cli.EXIT_USAGE
    assert sorted(_sent_pairs(fake_server, photos)) == sorted(PAIRS.values())  # nothing sent for c.png
    doc = json.loads(capsys.readouterr().out)
    assert (doc["rendered"], doc["failed"]) == (4, 2)
    assert [f["file"] for f in doc["failures"]] == ["c__starry_night_64x64.png", "c__the_scream_128x96.png"]
    assert all(f["error"]["kind"] == "usage" and "file is empty" in f["error"]["message"] for f in doc["failures"])


def test_the_json_document_of_a_batch_with_failures(fake_server, photos, tmp_path, capsys):
    (photos / "c.png").write_bytes(b"")  # fails locally (usage) while a server refusal fails another pair
    fake_server.reply(400, REJECTED).reply(200)
    out = tmp_path / "out"
    assert _batch(fake_server, photos, out, "--json") == cli.EXIT_ERROR  # failures of two kinds
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"ok", "command", "dir", "sheet", "manifest", "contents", "styles", "rendered", "skipped",
                        "failed", "pairs", "failures", "exit_code", "error"}
    assert (doc["ok"], doc["command"], doc["exit_code"]) == (False, "batch", cli.EXIT_ERROR)
    assert doc["error"] == {"kind": "error", "type": "Exception", "message": "3 of 6 pairs failed"}
    assert [Path(c).name for c in doc["contents"]] == ["a.png", "b.jpg", "c.png"]
    assert doc["styles"] == [str(s) for s in STYLES] and doc["sheet"] == str(out / "sheet.png")
    assert [(p["file"], p["status"], p["row"], p["col"]) for p in doc["pairs"]] == [
        ("a__starry_night_64x64.png", "failed", 0, 0), ("a__the_scream_128x96.png", "rendered", 0, 1),
        ("b__starry_night_64x64.png", "rendered", 1, 0), ("b__the_scream_128x96.png", "rendered", 1, 1),
        ("c__starry_night_64x64.png", "failed", 2, 0), ("c__the_scream_128x96.png", "failed", 2, 1)]
    first = doc["failures"][0]
    assert first["file"] == "a__starry_night_64x64.png" and first["content"] == str(photos / "a.png")
    assert first["style"] == str(STYLES[0])
    assert first["error"] == {"kind": "rejected", "type": "BadRequestError", "message": "too big",
                              "status_code": 400, "code": "out_of_range", "field": "params.image_size"}


def test_concurrency_keeps_n_requests_in_flight(fake_server, success_body, photos, tmp_path, capsys, pairs_in_flight):
    fake_server.reply(200, success_body(), delay=0.3)
    assert _batch(fake_server, photos, tmp_path / "out", "--concurrency", "2", "--progress") == 0
    # Two rounds of two (the fixture's pairing would time out one after the other), never all four at once.
    assert len(fake_server.requests) == 4 and pairs_in_flight.peak == 2
    assert "4/4" in capsys.readouterr().err  # the progress bar


def test_concurrency_needs_no_async_extra(fake_server, photos, tmp_path, monkeypatch, pairs_in_flight):
    monkeypatch.setitem(sys.modules, "httpx", None)  # the base install: importing httpx fails
    assert _batch(fake_server, photos, tmp_path / "out", "--concurrency", "2") == 0
    assert len(fake_server.requests) == 4 and pairs_in_flight.peak == 2


def test_an_auth_failure_stops_the_batch(fake_server, photos, tmp_path):
    fake_server.reply(401, {"error": {"code": "unauthorized", "message": "bad token", "field": None}})
    assert _batch(fake_server, photos, tmp_path / "out") == cli.EXIT_AUTH
    assert len(fake_server.requests) == 1  # it would fail every pair: no other one is started


def test_each_pair_sends_the_mask_of_its_style(fake_server, photos, tmp_path):
    masks = [tmp_path / "m0.png", tmp_path / "m1.png"]
    shutil.copy(DATA / "tubingen_64x64.png", masks[0])
    shutil.copy(DATA / "chelsea_128x96.png", masks[1])
    flags = ["--content-mask", str(masks[0]), "--style-mask", str(masks[0]), "--style-mask", str(masks[1])]
    assert _batch(fake_server, photos, tmp_path / "out", *flags) == 0
    encoded = [base64.b64encode(m.read_bytes()).decode() for m in masks]
    for (_, style), request in zip(_sent_pairs(fake_server, photos), fake_server.requests):
        assert request.json["style_masks"] == [encoded[[s.name for s in STYLES].index(style)]]
        assert request.json["content_mask"] == encoded[0]


@pytest.mark.parametrize("make_argv, message", [
    (lambda d: [str(d / "*.gif")], "no file matches"),
    (lambda d: [str(d / "sub.png")], "no image file"),  # an empty directory
    (lambda d: [str(d), "--dry-run"], "--dry-run is not supported"),
    (lambda d: [str(d), "--style-mask", str(STYLES[0])], "one per style"),
])
def test_batch_usage_errors(fake_server, photos, tmp_path, capsys, make_argv, message):
    argv = make_argv(photos)
    rc = cli.main(["batch", argv[0], *map(str, STYLES), "-o", str(tmp_path / "out"), "--url", fake_server.url, *argv[1:]])
    assert rc == cli.EXIT_USAGE and fake_server.requests == [] and not (tmp_path / "out").exists()
    err = capsys.readouterr().err
    assert message in err and (message != "no file matches" or str(photos / "*.gif") in err)


def test_two_contents_with_one_stem_are_refused(fake_server, photos, tmp_path, capsys):
    shutil.copy(photos / "a.png", photos / "a.webp")
    assert _batch(fake_server, photos, tmp_path / "out") == cli.EXIT_USAGE and fake_server.requests == []
    assert "would both be written to a__starry_night_64x64.png" in capsys.readouterr().err


def test_jpeg_outputs_and_every_parameter_has_its_flag(fake_server, photos, tmp_path):
    out = tmp_path / "out"
    assert _batch(fake_server, photos, out, "--output-format", "jpeg") == 0
    assert {p.suffix for p in out.glob("*__*")} == {".jpg"}
    help_text = cli.build_parser().parse_args(["batch", "x", "y", "-o", "z"])
    assert all(hasattr(help_text, p.name) for p in PARAMS)

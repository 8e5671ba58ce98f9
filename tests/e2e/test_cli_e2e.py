"""End to end: every ``nst-client`` command against the real TorchServe, on tiny images."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from imagebytes import encode
from nst_client import cli
from PIL import Image, ImageChops

DATA = Path(__file__).resolve().parents[1] / "data"
CONTENT = DATA / "tubingen_64x64.png"
STYLE = DATA / "starry_night_64x64.png"
NST_CLIENT = Path(sys.executable).parent / "nst-client"


def _conn(server) -> list:
    return ["--url", server.url, "--key-file", str(server.key_file), "--max-retries", "0"]


def _run_json(capsys, argv) -> tuple:
    rc = cli.main(argv)
    return rc, json.loads(capsys.readouterr().out)


def _open(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img.copy()


def _inference_requests(server) -> float:
    """TorchServe's own count of inference requests (Prometheus, no token needed)."""
    text = requests.get(f"{server.metrics_url}/metrics", timeout=30).text
    return sum(float(m) for m in re.findall(r"^ts_inference_requests_total\{[^}]*\} (\S+)$", text, re.M))


def test_stylize_compare_plot_animate_json(torchserve, tmp_path, capsys):
    out, sheet, plot, gif = (tmp_path / n for n in ("out.png", "cmp.png", "losses.png", "steps.gif"))
    rc, doc = _run_json(capsys, [
        "stylize", str(CONTENT), str(STYLE), "-o", str(out), *_conn(torchserve), "--image-size", "32", "--iterations", "3",
        "--compare", str(sheet), "--plot", str(plot), "--animate", str(gif), "--preview-every", "1", "--json"])
    assert rc == 0, doc
    assert doc["ok"] and doc["iterations"] == 3 and doc["weights"] == "random-seed-0"
    assert doc["params"]["return_history"] is True and doc["params"]["stream"] is True  # --plot, --animate
    result = _open(out).convert("RGB")
    assert result.size == (32, 32) and (doc["width"], doc["height"]) == (32, 32)

    # Compare sheet: content, style, result in one row; the result is in it, pixel for pixel.
    picture = _open(sheet).convert("RGB")
    hits = [(x, y) for y in range(picture.height - 31) for x in range(picture.width - 31)
            if ImageChops.difference(picture.crop((x, y, x + 32, y + 32)), result).getbbox() is None]
    assert len(hits) == 1 and hits[0][0] > 2 * 32

    with Image.open(plot) as img:
        assert img.format == "PNG" and img.size == (960, 540)

    # Previews at iterations 0, 1, 2, 3: the last one is the final iteration, so no extra frame.
    with Image.open(gif) as img:
        assert img.format == "GIF" and img.n_frames == doc["animation_frames"] == 4


def test_sweep_two_by_two_concurrently_then_resumed(torchserve, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", str(CONTENT), str(STYLE), "-o", str(out), *_conn(torchserve), "--image-size", "32", "--iterations", "2",
            "--param", "style_weight=1e2,1e4", "--param", "tv_weight=0,0.01", "--concurrency", "2", "--json"]
    rc, doc = _run_json(capsys, argv)
    assert rc == 0, doc
    assert (doc["rendered"], doc["skipped"]) == (4, 0)
    for cell in doc["cells"]:
        # The torchserve used each cell's values (its effective parameters echo them).
        assert {k: cell["effective_params"][k] for k in cell["params"]} == cell["params"]
        assert cell["effective_params"]["iterations"] == 2
        assert _open(out / cell["file"]).size == (32, 32)
    with Image.open(out / "sheet.png") as sheet:
        assert sheet.width > 2 * 32 and sheet.height > 2 * 32

    before = _inference_requests(torchserve)
    rc, again = _run_json(capsys, argv)
    assert rc == 0 and (again["rendered"], again["skipped"]) == (0, 4)
    assert _inference_requests(torchserve) == before  # the rerun sent nothing
    assert [c["file"] for c in again["cells"]] == [c["file"] for c in doc["cells"]]


def test_batch_of_contents_and_styles_with_a_failure_then_resumed(torchserve, tmp_path, capsys):
    contents = tmp_path / "contents"
    contents.mkdir()
    for name in ("tubingen_64x64.png", "chelsea_128x96.png"):
        (contents / name).write_bytes((DATA / name).read_bytes())
    (contents / "tiny.png").write_bytes(encode(Image.new("RGB", (8, 8), (10, 20, 30)), "PNG"))
    out = tmp_path / "batch"
    argv = ["batch", str(contents), str(STYLE), str(DATA / "the_scream_128x96.png"), "-o", str(out), *_conn(torchserve),
            "--image-size", "32", "--iterations", "2", "--output-format", "webp", "--concurrency", "2", "--json"]
    rc, doc = _run_json(capsys, argv)
    # tiny.png (8x8) is refused by the torchserve (400 image_too_small); the batch goes on without it.
    assert rc == 6 and doc["ok"] is False, doc
    assert (doc["rendered"], doc["skipped"], doc["failed"]) == (4, 0, 2)
    assert {Path(f["content"]).name for f in doc["failures"]} == {"tiny.png"}
    names = sorted(p.name for p in out.glob("*.webp"))
    assert names == ["chelsea_128x96__starry_night_64x64.webp", "chelsea_128x96__the_scream_128x96.webp",
                     "tubingen_64x64__starry_night_64x64.webp", "tubingen_64x64__the_scream_128x96.webp"]
    assert _open(out / names[0]).size == (32, 24)
    with Image.open(out / "sheet.png") as sheet:
        assert sheet.width > 2 * 32 and sheet.height > 2 * 24

    (contents / "tiny.png").unlink()
    before = _inference_requests(torchserve)
    rc, again = _run_json(capsys, argv)
    assert rc == 0 and (again["rendered"], again["skipped"], again["failed"]) == (0, 4, 0), again
    assert _inference_requests(torchserve) == before  # the rerun sent nothing


def test_health_json_from_the_installed_script(torchserve):
    proc = subprocess.run([str(NST_CLIENT), "health", "--json", *_conn(torchserve)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"ok": True, "command": "health", "url": torchserve.url,
                                       "response": {"status": "Healthy"}}


def test_info_json_and_text(torchserve, capsys):
    argv = ["info", *_conn(torchserve), "--management-url", torchserve.management_url]
    rc, doc = _run_json(capsys, [*argv, "--json"])
    assert rc == 0, doc
    assert doc["model"] == "nst" and doc["version"] == "1.0" and doc["management_url"] == torchserve.management_url
    assert doc["weights"]["label"] == "random-seed-0" and doc["device"] == "cpu"
    assert doc["limits"]["max_image_side"] > 0 and doc["defaults"]["iterations"] > 0
    assert doc["ready_workers"] >= 1
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "random-seed-0" in text and "device:   cpu" in text and "ready" in text


def test_a_wrong_key_exits_with_the_auth_code(torchserve, tmp_path, capsys):
    bad = tmp_path / "key_file.json"
    bad.write_text(json.dumps({"inference": {"key": "wrong"}, "management": {"key": "wrong"}}))
    rc, doc = _run_json(capsys, ["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"),
                                 "--url", torchserve.url, "--key-file", str(bad), "--json"])
    assert rc == cli.EXIT_AUTH == doc["exit_code"]
    assert doc["error"]["type"] == "AuthenticationError" and doc["error"]["status_code"] == 400
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("argv, code, field", [
    (["--iterations", "0"], cli.EXIT_REJECTED, "params.iterations"),
    (["--model", "no_such_model"], cli.EXIT_NOT_FOUND, None),
])
def test_a_refused_request_exits_with_its_code(torchserve, tmp_path, capsys, argv, code, field):
    rc, doc = _run_json(capsys, ["stylize", str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"),
                                 *_conn(torchserve), "--image-size", "32", *argv, "--json"])
    assert rc == code == doc["exit_code"]
    assert doc["error"].get("field") == field

"""`make bench BENCH_ARGS=--quick` keeps running: both benchmarks at toy sizes (smoke tests; they
assert that every table is printed and nothing is written, never a timing)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


@pytest.fixture()
def results_unchanged():
    before = RESULTS.read_text() if RESULTS.exists() else None
    yield
    assert (RESULTS.read_text() if RESULTS.exists() else None) == before


def run(script: str, *args: str) -> str:
    # One torch thread, as in the tests' own process: the fast tier runs a test on every core.
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args],
                          capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


#: Each section of bench_engine.py (run alone, so that the fast tier's workers share them) and
#: what its table must show.
ENGINE_SECTIONS = {
    "floor": ("Engine against the floor", ["| 64 |", "floor s/iter"]),
    "levers": ("Levers on the floor pass", []),
    "peers": ("Peers, same wall time", ["PyTorch tutorial recipe", "Gatys et al. recipe"]),
    "quality": ("Time to quality", ["coarse-to-fine, scales [32, 64]", "hed-bsds500-vgg16 weights"]),
    "memory": ("Peak memory", []),
    "large": ("Large images", []),
    "overhead": ("Tiling overhead, one process", []),
    "curve": ("Speed curve", ["| 192 | 0.6 |"]),  # the row at 192 px: 0.56x the start-up run's pixels
}


def test_every_engine_section_is_smoke_tested() -> None:
    source = (ROOT / "benchmarks" / "bench_engine.py").read_text()
    sections = ast.literal_eval(re.search(r"^SECTIONS = (\(.*\))$", source, re.M).group(1))  # type: ignore[union-attr]
    assert set(ENGINE_SECTIONS) == set(sections)


@pytest.mark.parametrize("section", ENGINE_SECTIONS)
def test_quick_engine_benchmark_prints_its_section(section: str, results_unchanged) -> None:
    out = run("bench_engine.py", "--only", section)
    title, shown = ENGINE_SECTIONS[section]
    assert f"## {title}" in out
    assert all(text in out for text in shown), [text for text in shown if text not in out]
    assert "failed" not in out  # every memory probe process ran, no lever broke


@pytest.mark.e2e  # benchmarks/bench_server.py starts TorchServe (running_server, in its own process)
def test_quick_server_benchmark_prints_its_tables(results_unchanged) -> None:
    out = run("bench_server.py")
    assert "`torchserve --start` to worker READY" in out
    assert "| overhead |" in out
    for clients in (1, 2, 4):
        assert f"\n| {clients} | {clients} |" in out

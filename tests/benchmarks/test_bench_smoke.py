"""`make bench BENCH_ARGS=--quick` keeps running: both benchmarks at toy sizes (smoke tests; they
assert that every table is printed and nothing is written, never a timing)."""

from __future__ import annotations

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


def run(script: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_quick_engine_benchmark_prints_every_section(results_unchanged) -> None:
    out = run("bench_engine.py")
    for title in ("Engine against the floor", "Levers on the floor pass", "Peers, same wall time", "Time to quality",
                  "Peak memory", "Large images", "Tiling overhead, one process", "Speed curve"):
        assert f"## {title}" in out
    assert "| 192 | 0.6 |" in out  # the speed curve's row at 192 px: 0.56x the start-up run's pixels
    assert "| 64 |" in out and "floor s/iter" in out
    assert "PyTorch tutorial recipe" in out and "Gatys et al. recipe" in out
    assert "coarse-to-fine, scales [32, 64]" in out and "hed-bsds500-vgg16 weights" in out
    assert "failed" not in out  # every memory probe process ran, no lever broke


@pytest.mark.e2e  # benchmarks/bench_server.py starts TorchServe (running_server, in its own process)
def test_quick_server_benchmark_prints_its_tables(results_unchanged) -> None:
    out = run("bench_server.py")
    assert "`torchserve --start` to worker READY" in out
    assert "| overhead |" in out
    for clients in (1, 2, 4):
        assert f"\n| {clients} | {clients} |" in out

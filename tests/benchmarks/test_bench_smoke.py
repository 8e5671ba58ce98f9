"""`benchmarks/bench_engine.py --quick` keeps running (a smoke test; it asserts no timings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_engine_benchmark_prints_its_table_and_writes_nothing() -> None:
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_text() if results.exists() else None
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_engine.py"), "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| 64 |" in proc.stdout and "floor s/iter" in proc.stdout
    assert (results.read_text() if results.exists() else None) == before

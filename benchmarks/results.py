"""Where the benchmarks' reports go: printed, and appended to ``benchmarks/RESULTS.md``."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def publish(report: str, *, quick: bool) -> None:
    """Print a Markdown ``report``; append it to ``benchmarks/RESULTS.md`` unless ``quick``
    (toy sizes are not results)."""
    print(report, flush=True)
    if not quick:
        with RESULTS.open("a") as f:
            f.write(report)

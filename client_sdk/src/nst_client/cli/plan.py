"""``nst-client plan``: the server's plan of a stylize request (a dry run), as a table of its
levels or, with ``--json``, the plan document. ``stylize --dry-run`` and ``submit --dry-run``
run this command with their own inputs and flags."""

from __future__ import annotations

import argparse
from typing import Any, Callable, Dict, List, Optional, Sequence

from .._client import StyleTransferClient
from .._params import DRY_RUN, PARAMS
from ._flags import add_inputs, request_args, style_input, styles

__all__ = ["add_parser", "run", "text", "GIB"]

#: Bytes in a GiB, the unit of the table's memory columns.
GIB = 2 ** 30


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``plan`` command to the subparsers ``sub``."""
    plan = sub.add_parser(
        "plan", parents=[common], help="show what stylizing CONTENT would do and need, without running it",
        description="Send the request stylize would send as a dry run (params.dry_run): the server answers "
                    "at once, without optimizing, with its plan: each coarse-to-fine level's size, iterations, "
                    "tiles, L-BFGS history, estimated peak memory and seconds (unknown until the worker "
                    "has measured its speed). A request the run would refuse exits as the run would "
                    "(e.g. 6 for over_memory_budget). Takes stylize's inputs and request flags.")
    add_inputs(plan, [p for p in PARAMS if p.name != DRY_RUN])


def run(args: argparse.Namespace, make_client: Callable[[], StyleTransferClient],
        log: Callable[[str], None]) -> Dict[str, Any]:
    """Run ``plan`` (or ``stylize``/``submit`` with ``--dry-run``); return its JSON document:
    ``{"ok", "command", "plan": {...}, "params", "weights", "device", "request_id"}``."""
    kwargs = request_args(args)
    kwargs.pop(DRY_RUN, None)  # stylize/submit --dry-run: plan() sends it
    with make_client() as client:
        plan = client.plan(args.content, style_input(styles(args)), **kwargs)
    return {"ok": True, "command": args.command, **plan.to_dict()}


def _gib(n_bytes: Optional[int]) -> str:
    return "unknown" if n_bytes is None else f"{n_bytes / GIB:.2f} GiB"


def _seconds(seconds: Optional[float]) -> str:
    return "unknown" if seconds is None else f"{seconds:.1f}"


def _table(header: Sequence[str], rows: List[List[str]], left: Sequence[int]) -> List[str]:
    """``header`` and ``rows`` in aligned columns: those numbered in ``left`` left-aligned, the
    others (numbers) right-aligned."""
    widths = [max(len(r[i]) for r in [list(header), *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(header), *(line(r) for r in rows)]


def text(doc: Dict[str, Any]) -> str:
    """The plan document as a table: one row per level (side and size in pixels, iterations, tiles
    and their side, L-BFGS history, peak memory in GiB, seconds), the totals, and the budget."""
    plan = doc["plan"]
    levels = plan["levels"]
    rows = []
    for i, level in enumerate(levels, 1):
        tiles = f"{level['tiles']} (whole)" if level["tile"] is None else f"{level['tiles']} ({level['tile']} px)"
        if level.get("kept_tails"):
            tiles += f", {level['kept_tails']} kept"
        rows.append([str(i), str(level["side"]), f"{level['width']}x{level['height']}", str(level["iterations"]), tiles,
                     str(level["lbfgs_history"]), _gib(level["peak_memory_bytes"]), _seconds(level["seconds"])])
    rows.append(["total", "", "", str(sum(level["iterations"] for level in levels)), "", "",
                 _gib(plan["peak_memory_bytes"]), _seconds(plan["seconds"])])
    header = ["level", "side", "size", "iterations", "tiles", "L-BFGS history", "peak memory", "seconds"]
    budget = plan["memory_budget_bytes"]
    if budget is None:
        budget_line = "memory budget: none reported"
    else:
        share = f" (the peak is {100 * plan['peak_memory_bytes'] / budget:.0f}% of it)" if budget > 0 else ""
        budget_line = f"memory budget: {_gib(budget)}{share}"
    count = f"{len(levels)} level{'s' if len(levels) != 1 else ''}"
    return "\n".join([
        f"plan: {plan['width']}x{plan['height']} px in {count}, weights {doc['weights']} on {doc['device']}",
        *_table(header, rows, left=(0, 2, 4)),
        budget_line,
    ])

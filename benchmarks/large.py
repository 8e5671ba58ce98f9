"""Section 5 of ``bench_engine.py``: large images (issue 13), each case in a fresh process.

For every case the probe (:func:`large_probe`, run as ``bench_engine.py --probe-large ...``)
does what a worker does: loads the network, measures its speed on the start-up run
(:func:`nst_http.budget.measure_speed`), plans the level within the budget
(:func:`nst.plan.make_plan`), then runs ``iters`` L-BFGS iterations of one level of
``size x size`` random images with random weights. It reports:

- the plan (whole image, or tiles of some side; L-BFGS history kept);
- seconds per iteration, measured between the first and the last evaluation (the targets and
  the final loss report are not iterations), and estimated: the level's pixel-iterations
  (:attr:`nst.plan.Level.cost`: halos, the second pass) at the start-up speed, scaled to the
  pixels one pass runs on (the level's, or a tile's crop) by the device's speed curve;
- peak RSS (``torch.cuda.max_memory_allocated`` on a GPU), measured, and estimated by
  :mod:`nst.memory` for the history pairs the probe actually stored (``iters - 1``) plus the
  process's baseline; and the model's peak for a long run (the whole planned history).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from nst.memory import CHECKPOINT_PIXELS, level_bytes
from nst.options import StylizeOptions
from nst.plan import make_plan
from nst.records import Iterate
from nst.stylize import stylize
from nst.vgg import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, build_vgg19_features
from nst.weights import make_random
from nst_http.budget import measure_budget, measure_speed, peak_rss

BENCH_ENGINE = Path(__file__).with_name("bench_engine.py")
GIB = 2**30


def large_probe(size: int, tile: int | None, budget_mb: int | None, iters: int, device: torch.device) -> dict:
    """Run in a fresh process: one case of the section (see the module)."""
    features = build_vgg19_features(make_random(0).state).to(device)
    budget = measure_budget(budget_mb, device) if budget_mb is not None else None
    curve, seconds, work = measure_speed(features, device)
    rate = seconds / work
    options = StylizeOptions(steps=iters, tile_size=tile)
    plan = make_plan((size, size), [(size, size)], options, budget=None if budget is None else budget.working)
    (level,) = plan.levels
    gen = torch.Generator().manual_seed(0)
    content, style = (torch.rand(1, 3, size, size, generator=gen).to(device) for _ in range(2))
    stamps: list[float] = []

    def callback(it: Iterate) -> None:
        if it.iteration < iters:  # an evaluation (the last report is the result's losses)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            stamps.append(time.perf_counter())

    baseline = peak_rss() if device.type == "cpu" else torch.cuda.memory_allocated(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stylize(content, style, features, options, plan=plan, callback=callback)
    peak = peak_rss() if device.type == "cpu" else torch.cuda.max_memory_allocated(device)
    layers = DEFAULT_CONTENT_LAYERS + DEFAULT_STYLE_LAYERS
    stored = min(iters - 1, level.history or options.lbfgs_history)
    on = bool(level.checkpointing) if level.checkpointing is not None else level.tile is None and size * size > CHECKPOINT_PIXELS
    model_probe = baseline + level_bytes((size, size), layers, DEFAULT_CONTENT_LAYERS, tile=level.tile,
                                         checkpointing=on, history=stored)
    return {"size": size, "tile": level.tile, "tiles": level.tiles, "history": level.history or options.lbfgs_history,
            "checkpointing": on, "budget_gib": None if budget is None else budget.total / GIB,
            "s_per_iter": (stamps[-1] - stamps[0]) / (len(stamps) - 1),
            "s_per_iter_estimate": level.iteration_work * curve.weight(level) * rate, "exponent": curve.exponent,
            "peak_gib": peak / GIB, "peak_estimate_gib": model_probe / GIB,
            "long_run_gib": (baseline + level.peak_bytes) / GIB}


def section_large(device: torch.device, cases: list[tuple[int, int | None, int | None]], iters: int) -> str:
    """One row per ``(size, tile, budget MiB)`` case, and the tiling overhead at the first size
    that has both an untiled and a tiled case."""
    rows, results = [], []
    for size, tile, budget in cases:
        cmd = [sys.executable, str(BENCH_ENGINE), "--probe-large", str(size), "--iters", str(iters),
               "--device", str(device)]
        cmd += (["--tile", str(tile)] if tile else []) + (["--budget-mb", str(budget)] if budget else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        label = f"{size} | {tile or 'auto'} | {'none' if budget is None else f'{budget / 1024:.0f} GiB'}"
        if proc.returncode != 0:
            rows.append(f"| {label} | failed: {proc.stderr.strip().splitlines()[-1:]} | | | | | |")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        ran = "whole" if r["tile"] is None else f"{r['tiles']} tiles of {r['tile']} px"
        ran += ", checkpointing" if r["checkpointing"] else ""
        rows.append(f"| {label} | {ran}, history {r['history']} | {r['s_per_iter']:.1f} | "
                    f"{r['s_per_iter_estimate']:.1f} ({r['s_per_iter_estimate'] / r['s_per_iter'] - 1:+.0%}) | "
                    f"{r['peak_gib']:.2f} | {r['peak_estimate_gib']:.2f} ({r['peak_estimate_gib'] / r['peak_gib'] - 1:+.0%}) | "
                    f"{r['long_run_gib']:.2f} |")
    overhead = ""
    for r in results:
        whole = [w for w in results if w["size"] == r["size"] and w["tile"] is None]
        if r["tile"] is not None and whole:
            overhead = (f"\nTiling overhead at {r['size']} px ({r['tiles']} tiles of {r['tile']} px against the whole "
                        f"image, same run): {r['s_per_iter'] / whole[0]['s_per_iter']:.2f}x per iteration.\n")
            break
    kind = "peak RSS of the process" if device.type == "cpu" else "torch.cuda.max_memory_allocated"
    return "\n".join([
        f"Each case in a fresh process: the start-up speed run, the plan within the budget, then {iters} L-BFGS "
        f"iterations of one level of square random images, random weights. Measured: seconds per iteration "
        f"(between the first and last evaluation) and {kind}. Estimates: the plan's pixel-iterations at the "
        f"start-up speed scaled to the pixels one pass runs on (the level's, or a tile's crop) by the device's "
        f"speed curve (nst_http.budget.SpeedCurve, exponent {results[0]['exponent'] if results else 0:.2f}), and "
        f"nst.memory's model for the {iters - 1} history pairs stored plus the process's "
        f"baseline; 'long run': the model with the whole planned history.\n",
        "| size (px) | tile | budget | plan | s / iteration | estimate (error) | peak (GiB) | estimate (error) "
        "| long run, model (GiB) |",
        "|---|---|---|---|---|---|---|---|---|", *rows]) + "\n" + overhead

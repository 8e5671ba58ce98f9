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
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from nst.memory import checkpoints, level_bytes
from nst.options import StylizeOptions
from nst.plan import make_plan
from nst.records import Iterate
from nst.stylize import stylize
from nst.vgg import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, build_vgg19_features
from nst.weights import make_random
from nst_http.budget import CALIBRATION_STEPS, measure_budget, measure_speed, peak_rss

BENCH_ENGINE = Path(__file__).with_name("bench_engine.py")
#: Set by ``bench_engine.py --quick`` for itself and its probe processes: the iterations of each
#: start-up speed measurement (:func:`calibration_steps`).
CALIBRATION_ENV = "NST_BENCH_CALIBRATION_STEPS"


def calibration_steps() -> int:
    """Iterations of a start-up speed measurement here: ``measure_speed``'s own, or two in a
    ``--quick`` smoke run (:data:`CALIBRATION_ENV`), where only the tables' shapes matter."""
    return int(os.environ.get(CALIBRATION_ENV, CALIBRATION_STEPS))
GIB = 2**30


def evaluation_stamper(device: torch.device, iterations: int, stamps: list[float]) -> Callable[[Iterate], None]:
    """A progress callback that appends the time of each of a ``iterations``-iteration run's
    evaluations to ``stamps`` (the last report is the result's losses, not an evaluation)."""

    def callback(it: Iterate) -> None:
        if it.iteration < iterations:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            stamps.append(time.perf_counter())

    return callback


def large_probe(size: int, tile: int | None, budget_mb: int | None, iters: int, device: torch.device) -> dict:
    """Run in a fresh process: one case of the section (see the module)."""
    features = build_vgg19_features(make_random(0).state).to(device)
    budget = measure_budget(budget_mb, device) if budget_mb is not None else None
    curve, seconds, work = measure_speed(features, device, calibration_steps())
    rate = seconds / work
    options = StylizeOptions(iterations=iters, tile_size=tile)
    plan = make_plan((size, size), [(size, size)], options, budget=None if budget is None else budget.working)
    (level,) = plan.levels
    gen = torch.Generator().manual_seed(0)
    content, style = (torch.rand(1, 3, size, size, generator=gen).to(device) for _ in range(2))
    stamps: list[float] = []
    callback = evaluation_stamper(device, iters, stamps)
    baseline = peak_rss() if device.type == "cpu" else torch.cuda.memory_allocated(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stylize(content, style, features, options, plan=plan, callback=callback)
    peak = peak_rss() if device.type == "cpu" else torch.cuda.max_memory_allocated(device)
    layers = DEFAULT_CONTENT_LAYERS + DEFAULT_STYLE_LAYERS
    stored = min(iters - 1, level.history or options.lbfgs_history)
    on = checkpoints((size, size), level.tile, level.checkpointing)
    model_probe = baseline + level_bytes((size, size), layers, DEFAULT_CONTENT_LAYERS, tile=level.tile,
                                         checkpointing=on, history=stored, kept_tails=level.kept_tails)
    return {"size": size, "tile": level.tile, "tiles": level.tiles, "history": level.history or options.lbfgs_history,
            "checkpointing": on, "budget_gib": None if budget is None else budget.total / GIB,
            "s_per_iter": (stamps[-1] - stamps[0]) / (len(stamps) - 1),
            "s_per_iter_estimate": level.iteration_work * curve.weight(level) * rate, "exponent": curve.exponent,
            "startup_us": rate * 1e6,
            "peak_gib": peak / GIB, "peak_estimate_gib": model_probe / GIB,
            "long_run_gib": (baseline + level.peak_bytes) / GIB}


def _iters(size: int, iters: int) -> int:
    """Iterations a case runs: twice ``iters`` up to 1024 px, where they are short and the
    tiling overhead is measured (three intervals average this VM's drift better than one)."""
    return 2 * iters if size <= 1024 else iters


def large_cases(sizes: list[int], untiled: list[int] | None, budget_mb: int) -> list[tuple[int, int | None, int | None]]:
    """The section's ``(size, tile, budget MiB)`` cases: ``untiled`` sizes whole without a budget
    (default: the first two; 2048 px whole peaks near 10 GiB), the first size also in tiles of
    half and three quarters its side (squares, bands), and every other size within ``budget_mb``."""
    first = sizes[0]
    cases: list[tuple[int, int | None, int | None]] = [(s, None, None) for s in (sizes[:2] if untiled is None else untiled)]
    cases += [(first, first // 2, None), (first, first * 3 // 4, None)]
    return cases + [(s, None, budget_mb) for s in sizes[1:]]


def section_large(device: torch.device, cases: list[tuple[int, int | None, int | None]], iters: int) -> str:
    """One row per ``(size, tile, budget MiB)`` case, and the tiling overhead at the first size
    that has both an untiled and a tiled case."""
    rows, results = [], []
    for size, tile, budget in cases:
        cmd = [sys.executable, str(BENCH_ENGINE), "--probe-large", str(size), "--iters", str(_iters(size, iters)),
               "--device", str(device)]
        cmd += (["--tile", str(tile)] if tile else []) + (["--budget-mb", str(budget)] if budget else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        label = f"{size} | {tile or 'auto'} | {'none' if budget is None else f'{budget / 1024:.0f} GiB'}"
        if proc.returncode != 0:
            rows.append(f"| {label} | failed: {proc.stderr.strip().splitlines()[-1:]} | | | | | | |")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        ran = "whole" if r["tile"] is None else f"{r['tiles']} tiles of {r['tile']} px"
        ran += ", checkpointing" if r["checkpointing"] else ""
        rows.append(f"| {label} | {ran}, history {r['history']} | {r['startup_us']:.1f} | {r['s_per_iter']:.1f} | "
                    f"{r['s_per_iter_estimate']:.1f} ({r['s_per_iter_estimate'] / r['s_per_iter'] - 1:+.0%}) | "
                    f"{r['peak_gib']:.2f} | {r['peak_estimate_gib']:.2f} ({r['peak_estimate_gib'] / r['peak_gib'] - 1:+.0%}) | "
                    f"{r['long_run_gib']:.2f} |")
    overhead = ""
    for r in results:
        whole = [w for w in results if w["size"] == r["size"] and w["tile"] is None and not w["checkpointing"]]
        if r["tile"] is not None and whole:
            overhead += (f"\nTiling overhead at {r['size']} px, {r['tiles']} tiles within a {r['tile']} px square's "
                         f"memory, against the whole image (separate processes; the 'overhead' section measures it in "
                         f"one): {r['s_per_iter'] / whole[0]['s_per_iter']:.2f}x per iteration.\n")
    kind = "peak RSS of the process" if device.type == "cpu" else "torch.cuda.max_memory_allocated"
    return "\n".join([
        f"Each case in a fresh process: the start-up speed run ('start-up': its speed, which every estimate of "
        f"the row scales), the plan within the budget, then {iters} L-BFGS "
        f"iterations ({_iters(1024, iters)} up to 1024 px) of one level of square random images, random weights. "
        f"Measured: seconds per iteration "
        f"(between the first and last evaluation) and {kind}. Estimates: the plan's pixel-iterations at the "
        f"start-up speed scaled to the pixels one pass runs on (the level's, or a tile's crop) by the device's "
        f"speed curve (nst_http.budget.SpeedCurve, exponent {results[0]['exponent'] if results else 0:.3f}), and "
        f"nst.memory's model for the history pairs stored (one fewer than the iterations) plus the process's "
        f"baseline; 'long run': the model with the whole planned history.\n",
        "| size (px) | tile | budget | plan | start-up (µs / pixel-iteration) | s / iteration | estimate (error) "
        "| peak (GiB) | estimate (error) | long run, model (GiB) |",
        "|---|---|---|---|---|---|---|---|---|---|", *rows]) + "\n" + overhead


#: Iterations per run of the overhead probe (two intervals timed per run).
OVERHEAD_STEPS = 3
#: Start-up speed measurements the overhead probe repeats per round, for their spread.
CALIBRATIONS_PER_ROUND = 3


def overhead_probe(size: int, rounds: int, device: torch.device) -> dict:
    """Run in a fresh process: the tiling overhead at ``size`` px measured in one process, and
    the spread of the start-up speed measurement that the estimates start from.

    ``rounds`` times in turn, one :data:`OVERHEAD_STEPS`-iteration run of each configuration:
    the whole image, tiles within a half-side square's memory (squares) and within a
    three-quarter-side square's (bands), and both again within the whole image's planned peak,
    which keeps tails (:func:`nst.memory.plan_memory`). Ratios of the median seconds per iteration, so the
    VM's drift hits the three alike. Then :data:`CALIBRATIONS_PER_ROUND` x ``rounds`` start-up
    speed measurements (:func:`nst_http.budget.measure_speed`), in microseconds per
    pixel-iteration.
    """
    features = build_vgg19_features(make_random(0).state).to(device)
    gen = torch.Generator().manual_seed(0)
    content, style = (torch.rand(1, 3, size, size, generator=gen).to(device) for _ in range(2))
    whole_plan = make_plan((size, size), [(size, size)], StylizeOptions(iterations=OVERHEAD_STEPS,
                                                                        gradient_checkpointing=False))
    # (tile_size, budget): without a budget no tail is kept; within the whole image's planned
    # peak, as many as fit (nst.memory.plan_memory).
    runs = {"whole": (None, None), "squares": (size // 2, None), "bands": (size * 3 // 4, None),
            "squares, tails kept": (size // 2, whole_plan.peak_bytes),
            "bands, tails kept": (size * 3 // 4, whole_plan.peak_bytes)}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    levels = {}
    for _ in range(rounds):
        for name, (tile, budget) in runs.items():
            options = StylizeOptions(iterations=OVERHEAD_STEPS, tile_size=tile, gradient_checkpointing=False)
            plan = make_plan((size, size), [(size, size)], options, budget=budget)
            stamps: list[float] = []
            stylize(content, style, features, options, plan=plan, callback=evaluation_stamper(device, OVERHEAD_STEPS, stamps))
            seconds[name] += [b - a for a, b in zip(stamps, stamps[1:])]
            levels[name] = plan.levels[0]
    whole = statistics.median(seconds["whole"])
    speeds = (measure_speed(features, device, calibration_steps()) for _ in range(CALIBRATIONS_PER_ROUND * rounds))
    rates = sorted(s / w * 1e6 for _, s, w in speeds)
    return {"size": size, "calibration_us": rates,
            "runs": {name: {"tiles": levels[name].tiles, "kept": levels[name].kept_tails, "cost": levels[name].cost,
                            "peak_gib": levels[name].peak_bytes / GIB, "seconds": seconds[name],
                            "ratio": statistics.median(seconds[name]) / whole} for name in runs}}


def section_overhead(device: torch.device, size: int, rounds: int) -> str:
    """The tiling overhead and the start-up speed's spread (:func:`overhead_probe`, in a fresh process)."""
    cmd = [sys.executable, str(BENCH_ENGINE), "--probe-overhead", str(size), "--iters", str(rounds),
           "--device", str(device)]
    r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    rows = [f"| {name} | {run['tiles']} | {run['kept']} | {run['peak_gib']:.2f} | {run['cost']:.2f} | "
            f"{' '.join(f'{s:.1f}' for s in run['seconds'])} | {run['ratio']:.2f}x |" for name, run in r["runs"].items()]
    rates = r["calibration_us"]
    return "\n".join([
        f"One process, {rounds} rounds; each round runs the whole image, then squares (tile_size {size // 2}: "
        f"tiles within a {size // 2} px square's memory), then bands (tile_size {size * 3 // 4}), then both "
        f"again planned within the whole image's planned peak, which keeps as many tiles' graphs after "
        f"nst.tiled.TAIL_AFTER between the passes as fit; {OVERHEAD_STEPS} L-BFGS iterations each, random images "
        f"and weights at {size} px. Overhead: the median seconds per iteration over the whole image's, measured in "
        f"the same rounds so that the machine's drift hits all five. 'peak': the plan's (nst.memory, L-BFGS "
        f"history included); 'cost': the plan's pixels per iteration over the whole image's.\n",
        "| run | tiles | tails kept | peak (GiB, model) | cost (model) | seconds per iteration | overhead |",
        "|---|---|---|---|---|---|---|", *rows,
        f"\nStart-up speed, {len(rates)} measurements in the same process (nst_http.budget.measure_speed): "
        f"{', '.join(f'{x:.1f}' for x in rates)} µs per pixel-iteration; largest over smallest "
        f"{rates[-1] / rates[0]:.2f}x.\n"])

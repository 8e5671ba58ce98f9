"""Section 7 of ``bench_engine.py``: the speed curve behind the plan's seconds (issue 13).

A worker estimates a level's seconds from one start-up run on 256 px images
(:func:`nst_http.budget.measure_speed`), scaled to the pixels one pass of the network runs on by
its :class:`nst_http.budget.SpeedCurve`: on a CPU, larger feature maps fall out of the caches and
each pixel costs more. This section measures that growth in one process: ``rounds`` times in
turn, two start-up runs, then one run of the whole image at each side (the default
configuration, random images and weights, no checkpointing), in microseconds per
pixel-iteration (:attr:`nst.plan.Level.iteration_work`). Each side's median over the start-up
runs' median is the curve's weight measured there; the exponent that fits them best (least
squares on the logarithms, through 1 at the start-up run's pixels) is what
:data:`nst_http.budget.CPU_SPEED_EXPONENT` is set from.
"""

from __future__ import annotations

import math
import statistics

import torch
from large import calibration_steps, evaluation_stamper
from nst.options import StylizeOptions
from nst.plan import make_plan
from nst.stylize import stylize
from nst.vgg import VGGFeatures
from nst_http.budget import CALIBRATION_SIDE, measure_speed

#: Start-up runs per round.
STARTUPS_PER_ROUND = 2


def _steps(side: int) -> int:
    """Iterations of one run at ``side`` px: three intervals timed up to 512 px, one beyond
    1024 px (a 1448 px iteration takes about 40 s on the 2-core CPU)."""
    return 4 if side <= 512 else 3 if side <= 1024 else 2


def section_speed_curve(features: VGGFeatures, device: torch.device, sides: list[int], rounds: int) -> str:
    """Measure the speed curve (see the module) and return the section's Markdown body."""
    startup: list[float] = []
    rates: dict[int, list[float]] = {side: [] for side in sides}
    levels = {}
    for r in range(rounds):
        for _ in range(STARTUPS_PER_ROUND):
            curve, seconds, work = measure_speed(features, device, calibration_steps())
            startup.append(seconds / work * 1e6)
        for side in sides:
            steps = _steps(side)
            gen = torch.Generator().manual_seed(r)
            content, style = (torch.rand(1, 3, side, side, generator=gen).to(device) for _ in range(2))
            options = StylizeOptions(iterations=steps, gradient_checkpointing=False)
            plan = make_plan((side, side), [(side, side)], options)
            stamps: list[float] = []
            stylize(content, style, features, options, plan=plan, callback=evaluation_stamper(device, steps, stamps))
            levels[side] = plan.levels[0]
            work = levels[side].iteration_work
            rates[side] += [(b - a) / work * 1e6 for a, b in zip(stamps, stamps[1:])]
    base = statistics.median(startup)
    points = [(side * side / CALIBRATION_SIDE**2, statistics.median(rates[side]) / base) for side in sides]
    logs = [(math.log(x), math.log(y)) for x, y in points if x > 1]
    fitted = sum(lx * ly for lx, ly in logs) / sum(lx * lx for lx, _ in logs) if logs else 0.0
    rows = []
    for (x, ratio), side in zip(points, sides):
        rows.append(f"| {side} | {x:.1f} | {' '.join(f'{v:.1f}' for v in rates[side])} | {ratio:.2f} | "
                    f"{x ** fitted:.2f} | {curve.weight(levels[side]):.2f} |")
    return "\n".join([
        f"One process, {rounds} rounds; each round runs {STARTUPS_PER_ROUND} start-up runs "
        f"(nst_http.budget.measure_speed, {CALIBRATION_SIDE} px), then the whole image at each side "
        f"(default configuration, random images and weights, no checkpointing). 'measured': the side's median "
        f"µs per pixel-iteration over the start-up runs' median; 'fit': (pixels ratio)^e with the exponent "
        f"that fits the measured ratios best, e = {fitted:.3f}; 'curve': the shipped SpeedCurve's weight "
        f"(exponent {curve.exponent}, held beyond {curve.hold / curve.reference:.0f}x).\n",
        "| side (px) | pixels over the start-up run's | µs per pixel-iteration | measured | fit | curve |",
        "|---|---|---|---|---|---|", *rows,
        f"\nStart-up runs: {', '.join(f'{v:.1f}' for v in sorted(startup))} µs per pixel-iteration "
        f"(median {base:.1f}).\n"])

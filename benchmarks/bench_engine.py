"""Engine benchmark: our iteration against the hardware floor, peers, time to quality, memory.

Sections (issue 5), each printed as a Markdown table and, unless ``--quick``, appended with the
machine and the command to ``benchmarks/RESULTS.md``:

1. ``floor``: one forward and input-gradient backward pass of VGG19 to ``relu5_1``; the engine's
   seconds per iteration (L-BFGS history full) at the same sizes, and the ratio: the overhead of
   everything else an iteration does (loss terms, Gram matrices, L-BFGS, image handling).
   ``levers``: the same pass under channels_last, torch.compile, thread counts (CPU) or each
   ``precision`` (GPU), and the style cache's saving per request.
2. ``peers``: the PyTorch tutorial's and Gatys et al.'s recipes (``benchmarks/peers.py``) against
   the engine for the same wall time, inputs and weights: seconds per evaluation and the loss each
   reaches on our default objective (lower is better); the pictures into ``benchmarks/peers.png``.
3. ``quality``: time to quality: the target is the last loss of ``--ttq-steps`` (500) single-scale
   L-BFGS iterations at ``--ttq-size`` (512) px; the time that run and ``--ttq-levels`` (3)
   coarse-to-fine levels of ``--ttq-scaled-steps`` (300) iterations in all first reach it.
4. ``memory``: peak memory of a few iterations at 512, 1024 and (checkpointed) 2048 px, each in a
   fresh process (RSS on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU), plus the L-BFGS
   history a long run adds (computed: 2 x history x image).
5. ``large``: large images (``benchmarks/large.py``): seconds per iteration and peak memory at
   1024, 2048 and 4096 px, whole and tiled, within an 8 GiB budget (``--large-budget-mb``),
   each against the plan's estimate, and the tiling overhead at 1024 px.
6. ``overhead``: the tiling overhead at 1024 px, whole image, squares and bands in turn in one
   process, and the spread of the start-up speed measurement (``benchmarks/large.py``).
7. ``curve``: seconds per pixel-iteration against image size over the start-up run's, the fit
   behind the plan's speed curve (``benchmarks/speed_curve.py``).

``peers`` and ``quality`` run on real trained weights, ``--weights`` (default ``hed``: HED's VGG16,
cached by ``nst.weights``); the rest measure speed and memory, on seeded random VGG19 weights.

Usage: ``python benchmarks/bench_engine.py [--quick] [--only floor peers ...] [--device cpu|cuda]``
(``make bench``; ``--quick``: toy sizes, a minute, writes nothing). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "handler"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import peers  # noqa: E402
from large import CALIBRATION_ENV, large_cases, large_probe, overhead_probe, section_large, section_overhead  # noqa: E402
from memory import memory_probe, section_memory  # noqa: E402
from nst.cache import StyleCache, StyleTargets  # noqa: E402
from nst.images import decode_image, to_pil, to_tensor  # noqa: E402
from nst.objective import first_level_objective  # noqa: E402
from nst.precision import numerics  # noqa: E402
from nst.stylize import Iterate, StylizeOptions, stylize  # noqa: E402
from nst.vgg import LAYER_INDEX, FeatureExtractor, VGGFeatures, build_vgg19_features  # noqa: E402
from nst.weights import make_random, resolve  # noqa: E402
from results import publish  # noqa: E402
from speed_curve import section_speed_curve  # noqa: E402

SECTIONS = ("floor", "levers", "peers", "quality", "memory", "large", "overhead", "curve")
CONTENT = ROOT / "examples" / "contents" / "tubingen.jpg"
STYLE = ROOT / "examples" / "styles" / "starry_night.jpg"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load(path: Path, side: int, device: torch.device) -> torch.Tensor:
    """``(1, 3, H, W)`` in ``[0, 1]`` with long side ``side`` pixels."""
    return to_tensor(decode_image(path.read_bytes(), max_pixels=10**8), side).to(device)


# --- 1. floor ------------------------------------------------------------------------------------

def floor_seconds(features: VGGFeatures, size: int, iters: int, device: torch.device) -> float:
    """Median seconds of VGG19 forward + backward (input gradient only) to relu5_1 at size x size."""
    extractor = FeatureExtractor(features, ["relu5_1"])
    image = torch.rand(1, 3, size, size, device=device, requires_grad=True)
    stamps = []
    for _ in range(iters + 1):  # the first pass warms up
        sync(device)
        stamps.append(time.perf_counter())
        out = extractor(image)["relu5_1"]
        torch.autograd.grad(out.sum(), image)
    sync(device)
    stamps.append(time.perf_counter())
    return statistics.median(b - a for a, b in zip(stamps[1:], stamps[2:]))


def engine_seconds(features: VGGFeatures, size: int, iters: int, device: torch.device,
                   history: int = StylizeOptions.lbfgs_history, style_loss: str = "gram") -> float:
    """Median seconds per L-BFGS iteration of the engine's default configuration (with ``style_loss``) at size x size,
    over ``iters`` iterations once L-BFGS's ``history`` pairs are filled (each of those
    iterations runs the two-loop recursion over the whole history)."""
    gen = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, size, size, generator=gen).to(device)
    style = torch.rand(1, 3, size, size, generator=gen).to(device)
    stamps: list[float] = []

    def callback(it: Iterate) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    stylize(content, style, features, StylizeOptions(iterations=history + iters + 2, lbfgs_history=history,
                                                     style_loss=style_loss), callback=callback)
    # stamps[0] is iteration 0 (after the targets), stamps[-1] the final evaluation (forward only):
    # time the last iters + 1 iterations before it, each one forward + backward + an L-BFGS update.
    inner = stamps[-iters - 2:-1]
    return statistics.median(b - a for a, b in zip(inner, inner[1:]))


def section_floor(features, device, sizes: list[int], iters: int, history: int) -> str:
    rows = []
    for size in sizes:
        floor = floor_seconds(features, size, iters, device)
        ours, w2 = (engine_seconds(features, size, iters, device, history, loss) for loss in ("gram", "w2"))
        rows.append(f"| {size} | {floor:.3f} | {ours:.3f} | {ours / floor:.2f}x | {w2:.3f} | {w2 / ours:.2f}x |")
    return "\n".join([
        f"Seconds per iteration, median of {iters} after a warm-up (the engine's after its L-BFGS history of "
        f"{history} pairs is full), random weights, fp32; the engine with the Gram and with the W2 style loss.\n",
        "| size (px) | floor s/iter (VGG19 fwd+bwd to relu5_1) | engine s/iter | ratio | engine, W2 | W2 / Gram |",
        "|---|---|---|---|---|---|", *rows])


# --- levers -------------------------------------------------------------------------------------

def _pass_seconds(extractor, image: torch.Tensor, iters: int, device: torch.device) -> tuple[float, float]:
    """(first call, median of the next ``iters``) seconds of one forward + input-gradient pass."""
    times = []
    for _ in range(iters + 1):
        sync(device)
        t0 = time.perf_counter()
        out = extractor(image)["relu5_1"]
        torch.autograd.grad(out.sum(), image)
        sync(device)
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times[1:])


def section_levers(features, device, size: int, iters: int, compile_: bool = True) -> str:
    """The floor pass under each lever the issue lists, and the style cache's saving
    (``compile_=False`` skips torch.compile, whose first call takes a minute or more on a CPU)."""
    rows = []
    image = torch.rand(1, 3, size, size, device=device, requires_grad=True)
    # NCHW: torchvision's default layout, the same layers and ImageNet normalization.
    nchw_net = copy.deepcopy(features[: LAYER_INDEX["relu5_1"] + 1]).to(memory_format=torch.contiguous_format)
    extractor = FeatureExtractor(features, ["relu5_1"])

    def nchw(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"relu5_1": nchw_net(x * extractor.scale - extractor.shift)}

    _, contiguous = _pass_seconds(nchw, image, iters, device)
    _, base = _pass_seconds(extractor, image, iters, device)
    rows.append(f"| NCHW (contiguous; torchvision's default) | {contiguous:.3f} | {base / contiguous:.2f}x | |")
    rows.append(f"| NHWC (channels_last): the engine, and the floor above | {base:.3f} | 1.00x | kept |")
    # torch.compile of the feature extractor (default mode); its first call compiles.
    if not compile_:
        rows.append("| torch.compile (default mode) | skipped (--quick) | | |")
    else:
        try:
            compiled = torch.compile(FeatureExtractor(features, ["relu5_1"]))
            first, comp = _pass_seconds(compiled, image, iters, device)
            rows.append(f"| torch.compile (default mode) of the NHWC extractor | {comp:.3f} | {base / comp:.2f}x | "
                        f"first call (compiling) {first:.1f} s |")
        except Exception as exc:  # a missing compiler toolchain is a result too
            rows.append(f"| torch.compile (default mode) | failed | | {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:80]} |")
    if device.type == "cpu":
        threads = torch.get_num_threads()
        for n in sorted({1, threads}):
            torch.set_num_threads(n)
            _, t = _pass_seconds(FeatureExtractor(features, ["relu5_1"]), image, iters, device)
            rows.append(f"| {n} torch thread(s) | {t:.3f} | {base / t:.2f}x | one worker using {n} of {threads} cores |")
        torch.set_num_threads(threads)
    else:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, bf = _pass_seconds(FeatureExtractor(features, ["relu5_1"]), image, iters, device)
        rows.append(f"| bf16 autocast | {bf:.3f} | {base / bf:.2f}x | |")
        for precision in ("fp32", "tf32"):
            with numerics(precision):
                _, t = _pass_seconds(FeatureExtractor(features, ["relu5_1"]), image, iters, device)
            rows.append(f"| precision {precision} | {t:.3f} | {base / t:.2f}x | |")
    # The style cache: a repeated style skips the style image's VGG pass and Gram matrices.
    style = load(STYLE, size, device)
    content = load(CONTENT, size, device)
    cache = StyleCache(4)
    timings = []
    for _ in range(2):  # miss, then hit
        sync(device)
        t0 = time.perf_counter()
        first_level_objective(features, StylizeOptions(), content, [style], StyleTargets(cache, ["style"]))
        sync(device)
        timings.append(time.perf_counter() - t0)
    rows.append(f"| style cache: loss targets, miss then hit | {timings[0]:.3f} / {timings[1]:.3f} | | "
                f"saves {timings[0] - timings[1]:.3f} s per request with a repeated style |")
    return "\n".join([
        f"One VGG19 forward + input-gradient pass to `relu5_1` at {size}x{size} px, median of {iters}, "
        "under each lever; speed-up against the engine's own pass (NHWC, eager, fp32); random weights.\n",
        "| lever | s / pass | speed-up | note |", "|---|---|---|---|", *rows])


# --- 2. peers ------------------------------------------------------------------------------------

def section_peers(features, device, size: int, seconds: float, label: str, sheet: Path | None) -> str:
    content, style = load(CONTENT, size, device), load(STYLE, size, device)
    yardstick = first_level_objective(features, StylizeOptions(), content, [style])  # the peers' yardstick
    runs: list[tuple[str, torch.Tensor, int]] = []
    result = stylize(content, style, features, StylizeOptions(iterations=10**6, time_budget_s=seconds))
    runs.append(("ours (defaults: L-BFGS, normalized losses)", result.image, result.iterations + 1))
    runs.append(("PyTorch tutorial recipe", *peers.tutorial_recipe(content, style, features, seconds)))
    runs.append(("Gatys et al. recipe (L-BFGS + line search)", *peers.gatys_recipe(content, style, features, seconds)))
    rows = []
    tiles = [(f"content {CONTENT.name}", to_pil(content)), (f"style {STYLE.name}", to_pil(style))]
    with torch.no_grad():
        for name, image, evaluations in runs:
            losses = yardstick.losses(image)
            rows.append(f"| {name} | {evaluations} | {seconds / max(evaluations, 1):.3f} | "
                        f"{losses['total']:.3f} | {losses['content']:.3f} | {losses['style']:.4f} |")
            tiles.append((f"{name}: {evaluations} evaluations in {seconds:g} s, our loss {losses['total']:.3f}",
                          to_pil(image)))
    h, w = content.shape[-2:]
    if sheet is not None:
        sys.path.insert(0, str(ROOT / "scripts"))
        from gallery import contact_sheet

        title = f"Same wall time ({seconds:g} s each, {w}x{h}), {label} weights: ours and two peers' recipes"
        contact_sheet(tiles, columns=len(tiles), title=title, box=(w, h)).save(sheet, optimize=True)
    d = StylizeOptions()
    return "\n".join([
        f"Each for {seconds:g} s of wall time on {CONTENT.name} ({w}x{h}) in the style of {STYLE.name}, "
        f"{label} weights. Loss: our objective at default settings (content `relu4_2`, style "
        f"`relu1_1`..`relu5_1`, weights {d.content_weight:g} / {d.style_weight:g} / {d.tv_weight:g}), lower is "
        "better; the peers optimize their own objectives (the tutorial's stops at `conv3_1`), so this shows how "
        f"far each gets on ours." + (f" The pictures: [{sheet.name}]({sheet.name}).\n" if sheet else "\n"),
        "| recipe | fwd+bwd evaluations | s / evaluation | total loss | content | style |",
        "|---|---|---|---|---|---|", *rows])


# --- 3. time to quality ---------------------------------------------------------------------------

class _Reached(Exception):
    pass


def section_quality(features, device, size: int, iterations: int, levels: int, scaled_steps: int, label_: str) -> str:
    content, style = load(CONTENT, size, device), load(STYLE, size, device)
    full = tuple(content.shape[-2:])

    def timed_run(options: StylizeOptions, target: float | None) -> tuple[float, list[tuple[float, float]]]:
        curve: list[tuple[float, float]] = []  # (seconds, full-size total loss)
        start = time.perf_counter()

        def callback(it: Iterate) -> None:
            sync(device)
            if it.image is not None and tuple(it.image.shape[-2:]) == full and it.iteration > 0:
                curve.append((time.perf_counter() - start, it.losses["total"]))
                if target is not None and it.losses["total"] <= target:
                    raise _Reached

        try:
            stylize(content, style, features, options, callback=callback)
        except _Reached:
            pass
        return time.perf_counter() - start, curve

    ref_time, ref_curve = timed_run(StylizeOptions(iterations=iterations), None)
    target = ref_curve[-1][1]
    lowest = min(loss for _, loss in ref_curve)
    rows = [f"| single scale ({size} px), {iterations} iterations: the target | {ref_time:.1f} | {target:.3f} | 1.00x |"]
    # Our default configuration is single scale (docs/quality.md), so it is the reference run
    # itself: L-BFGS without a line search is not monotone, and the run first reaches its own
    # last loss before its last iteration.
    first_t, first_it = next((t, i + 1) for i, (t, loss) in enumerate(ref_curve) if loss <= target)
    rows.append(f"| the same run, first at the target (iteration {first_it}; its lowest loss was {lowest:.3f}) | "
                f"{first_t:.1f} | {target:.3f} | {ref_time / first_t:.2f}x |")
    sides = tuple(round(max(full) / 2 ** (levels - 1 - i)) for i in range(levels))
    # scaled_steps in all, split evenly across the levels by the engine (the remainder to the
    # finest); the run stops as soon as its full-size loss reaches the target.
    t, curve = timed_run(StylizeOptions(iterations=scaled_steps, scales=sides), target)
    reached = curve and curve[-1][1] <= target
    label = (f"coarse-to-fine, scales {list(sides)}, {scaled_steps} iterations split evenly"
             + (", stopped at the target" if reached else " (target NOT reached)"))
    first_full = f"; its first full-size loss, after upsampling, {curve[0][1]:.2f}" if curve else ""
    rows.append(f"| {label}{first_full} | {t:.1f} | {curve[-1][1] if curve else float('nan'):.3f} | "
                f"{ref_time / t:.2f}x |")
    h, w = full
    marks = [k for k in (50, 100, 150, 200, 300, 400, 500) if k <= len(ref_curve)]
    along = ", ".join(f"{ref_curve[k - 1][1]:.3f} after {k}" for k in marks)
    rows.append(f"| (the reference run's total loss along the way: {along} iterations) | | | |")
    return "\n".join([
        f"Wall time until the total loss at full size ({w}x{h}) reaches that of {iterations} single-scale "
        f"L-BFGS iterations of the default configuration; the coarse levels' time counts. L-BFGS without a "
        f"line search does not lower the loss monotonically, so a run can pass the target before its last "
        f"iteration. {CONTENT.name} in the style of {STYLE.name}, {label_} weights.\n",
        "| run | seconds | total loss reached | speed-up |", "|---|---|---|---|", *rows])


# --- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes and counts; print only")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="floor section, pixels")
    parser.add_argument("--iters", type=int, default=10, help="floor section / memory probe, iterations")
    parser.add_argument("--history", type=int, default=StylizeOptions.lbfgs_history,
                        help="floor section: L-BFGS history filled before the engine is timed, pairs")
    parser.add_argument("--peer-size", type=int, default=256, help="peers section, pixels")
    parser.add_argument("--peer-seconds", type=float, default=60.0, help="peers section, seconds per recipe")
    parser.add_argument("--ttq-size", type=int, default=512, help="time-to-quality section, pixels")
    parser.add_argument("--ttq-steps", type=int, default=500, help="time-to-quality reference iterations")
    parser.add_argument("--ttq-levels", type=int, default=3, help="time-to-quality coarse-to-fine levels")
    parser.add_argument("--ttq-scaled-steps", type=int, default=300,
                        help="time-to-quality: iterations of the coarse-to-fine run, all levels together")
    parser.add_argument("--weights", default="hed", help="real weights of the peers and quality sections (default hed)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--probe-memory", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe-large", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--probe-overhead", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tile", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--budget-mb", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--large-budget-mb", type=int, default=8192, help="large section: the worker's budget, MiB")
    parser.add_argument("--large-sizes", type=int, nargs="+", default=[1024, 2048, 4096],
                        help="large section: sizes, pixels (the first also runs with tiles of half and three "
                             "quarters its side)")
    parser.add_argument("--large-untiled", type=int, nargs="*", default=None,
                        help="large section: sizes also run whole without a budget (default: the first two)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.probe_memory:
        print(json.dumps(memory_probe(args.probe_memory, args.iters, args.checkpointing, device)))
        return 0
    if args.probe_large or args.probe_overhead:
        print(json.dumps(large_probe(args.probe_large, args.tile, args.budget_mb, args.iters, device) if args.probe_large
                         else overhead_probe(args.probe_overhead, args.iters, device)))
        return 0
    large = large_cases(args.large_sizes, args.large_untiled, args.large_budget_mb)
    memory_cases = [(512, False), (1024, False), (1024, True), (2048, False), (2048, True)]
    memory_iters = 3
    if args.quick:
        args.sizes, args.iters, args.peer_size, args.peer_seconds, args.history = [64], 3, 64, 2.0, 3
        args.ttq_size, args.ttq_steps, args.ttq_levels, args.ttq_scaled_steps = 64, 10, 2, 10
        memory_cases, memory_iters = [(64, False), (64, True)], 2
        large = [(96, None, None), (96, 48, None)]  # whole, and in tiles: the overhead row
        os.environ[CALIBRATION_ENV] = "2"  # start-up speed runs of two iterations, here and in the probes
    features = build_vgg19_features(make_random(0).state).to(device)  # speed and memory only
    # Real weights only for the sections about results (fetching HED's takes a few seconds).
    real = resolve(args.weights) if {"peers", "quality"} & set(args.only) else None
    real_features = real.features().to(device) if real is not None else None

    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, {device}"
    if device.type == "cuda":
        machine += f" ({torch.cuda.get_device_name(device)})"
    command = "python benchmarks/bench_engine.py " + " ".join(argv if argv is not None else sys.argv[1:])
    titles = {"floor": "Engine against the floor", "levers": "Levers on the floor pass", "peers": "Peers, same wall time",
              "quality": "Time to quality", "memory": "Peak memory", "large": "Large images",
              "overhead": "Tiling overhead, one process", "curve": "Speed curve"}
    for name in args.only:
        started = time.perf_counter()
        if name == "floor":
            body = section_floor(features, device, args.sizes, args.iters, args.history)
        elif name == "levers":
            body = section_levers(features, device, args.sizes[0], args.iters, compile_=not args.quick)
        elif name == "peers":
            sheet = None if args.quick else ROOT / "benchmarks" / "peers.png"
            assert real is not None
            body = section_peers(real_features, device, args.peer_size, args.peer_seconds, real.label, sheet)
        elif name == "quality":
            assert real is not None
            body = section_quality(real_features, device, args.ttq_size, args.ttq_steps, args.ttq_levels,
                                   args.ttq_scaled_steps, real.label)
        elif name == "memory":
            body = section_memory(device, memory_cases, memory_iters, StylizeOptions().lbfgs_history)
        elif name == "large":
            body = section_large(device, large, 2)
        elif name == "overhead":
            body = section_overhead(device, *((64, 1) if args.quick else (args.large_sizes[0], 3)))
        else:
            body = section_speed_curve(features, device, *(([128, 192], 1) if args.quick else ([512, 1024, 1448], 3)))
        report = (f"\n## {titles[name]} ({dt.date.today().isoformat()})\n\n"
                  f"Machine: {machine}. Command: `{command.strip()}` (section took "
                  f"{time.perf_counter() - started:.0f} s).\n\n{body}\n")
        publish(report, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())

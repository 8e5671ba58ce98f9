"""Engine benchmark: seconds per iteration against the floor, and peak memory.

The floor for one iteration is one forward and one backward pass of VGG19 up to ``relu5_1``
with a gradient for the input image only; everything else an iteration does (loss terms, Gram
matrices, L-BFGS, image handling) is overhead on top of it. Prints a table and appends it, with
the machine and the command, to ``benchmarks/RESULTS.md``.

Usage: ``python benchmarks/bench_engine.py [--quick] [--sizes 256 512] [--iters N] [--device cpu|cuda]``
(``make bench``; ``--quick`` is a seconds-long smoke run that writes nothing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "handler"))

from nst.stylize import StylizeOptions, stylize  # noqa: E402
from nst.vgg import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, FeatureExtractor, build_vgg19_features  # noqa: E402
from nst.weights import make_random  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def floor_seconds(features: torch.nn.Sequential, size: int, iters: int, device: torch.device) -> float:
    """Mean seconds of VGG19 forward + backward (input gradient only) to relu5_1 at size x size."""
    extractor = FeatureExtractor(features, ["relu5_1"])
    image = torch.rand(1, 3, size, size, device=device, requires_grad=True)
    for i in range(iters + 1):  # the first pass warms up
        if i == 1:
            sync(device)
            start = time.perf_counter()
        out = extractor(image)["relu5_1"]
        (grad,) = torch.autograd.grad(out.sum(), image)
    sync(device)
    return (time.perf_counter() - start) / iters


def engine_seconds(features: torch.nn.Sequential, size: int, iters: int, device: torch.device) -> float:
    """Mean seconds per L-BFGS iteration of the engine's default configuration at size x size."""
    gen = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, size, size, generator=gen).to(device)
    style = torch.rand(1, 3, size, size, generator=gen).to(device)
    stamps: list[float] = []

    def callback(it) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    stylize(content, style, features, StylizeOptions(steps=iters + 1), callback=callback)
    # stamps[0] is iteration 0 (after the targets), stamps[-1] the final evaluation (forward only):
    # time the iterations 1..iters between them, each one forward + backward + an L-BFGS update.
    return (stamps[-2] - stamps[1]) / (iters - 1) if iters > 1 else stamps[-2] - stamps[0]


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and counts; print only")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.iters = [64], 3
    device = torch.device(args.device)
    features = build_vgg19_features(make_random(0)[0]).to(device)
    assert DEFAULT_CONTENT_LAYERS and DEFAULT_STYLE_LAYERS

    rows = []
    for size in args.sizes:
        floor = floor_seconds(features, size, args.iters, device)
        ours = engine_seconds(features, size, args.iters, device)
        rows.append((size, floor, ours, ours / floor))
    header = "| size (px) | floor s/iter (VGG19 fwd+bwd to relu5_1) | engine s/iter | ratio |\n|---|---|---|---|"
    lines = [f"| {s} | {f:.3f} | {o:.3f} | {r:.2f}x |" for s, f, o, r in rows]
    table = "\n".join([header, *lines])
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, {device}"
    if device.type == "cuda":
        machine += f" ({torch.cuda.get_device_name(device)})"
    report = (
        f"\n## Engine: seconds per iteration ({dt.date.today().isoformat()})\n\n"
        f"Machine: {machine}. Command: `python benchmarks/bench_engine.py {' '.join(argv or sys.argv[1:])}`"
        f" ({args.iters} iterations per size, random weights, fp32). Peak memory: {peak_memory_mb(device):.0f} MiB.\n\n"
        f"{table}\n"
    )
    print(report)
    if not args.quick:
        with (ROOT / "benchmarks" / "RESULTS.md").open("a") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Section 4 of ``bench_engine.py``: peak memory of a few iterations, each size in a fresh process.

``section_memory`` runs ``bench_engine.py --probe-memory SIZE`` per case, which calls
:func:`memory_probe` and prints its result as JSON.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from nst.stylize import StylizeOptions, stylize
from nst.vgg import build_vgg19_features
from nst.weights import make_random

BENCH_ENGINE = Path(__file__).with_name("bench_engine.py")


def memory_probe(size: int, iters: int, checkpointing: bool, device: torch.device) -> dict:
    """Run in a fresh process: peak memory of ``iters`` iterations at ``size`` x ``size``."""
    features = build_vgg19_features(make_random(0).state).to(device)
    gen = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, size, size, generator=gen).to(device)
    style = torch.rand(1, 3, size, size, generator=gen).to(device)
    start = time.perf_counter()
    stylize(content, style, features, StylizeOptions(iterations=iters, gradient_checkpointing=checkpointing))
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"size": size, "checkpointing": checkpointing, "peak_mib": peak, "seconds": seconds}


def section_memory(device, cases: list[tuple[int, bool]], iters: int, history: int) -> str:
    rows = []
    for size, checkpointing in cases:
        cmd = [sys.executable, str(BENCH_ENGINE), "--probe-memory", str(size), "--iters", str(iters),
               "--device", str(device)] + (["--checkpointing"] if checkpointing else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            rows.append(f"| {size} | {'on' if checkpointing else 'off'} | failed: {proc.stderr.strip().splitlines()[-1:]} | | |")
            continue
        probe = json.loads(proc.stdout.strip().splitlines()[-1])
        lbfgs = 2 * history * 3 * size * size * 4 / 2**20  # (step, gradient change) pairs, fp32
        rows.append(f"| {size} | {'on' if checkpointing else 'off'} | {probe['peak_mib']:.0f} | {lbfgs:.0f} | "
                    f"{(probe['peak_mib'] + lbfgs) / 1024:.1f} | {probe['seconds'] / iters:.1f} |")
    kind = "peak RSS of the process" if device.type == "cpu" else "torch.cuda.max_memory_allocated"
    return "\n".join([
        f"Each size in a fresh process, {iters} iterations (targets included) of the default "
        f"configuration, square random images, random weights. Measured: {kind}. A long run adds "
        f"its full L-BFGS history ({history} pairs of image-sized vectors), computed here.\n",
        "| size (px) | gradient checkpointing | measured peak (MiB) | + L-BFGS history (MiB) | "
        "expected peak of a long run (GiB) | s / iteration (incl. targets) |",
        "|---|---|---|---|---|---|", *rows])

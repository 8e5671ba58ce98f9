"""A 4096 x 4096 request through TorchServe and the SDK on this machine (issue 13).

Starts the real TorchServe (the repository's config.properties on private ports, the archive
that ``make archive WEIGHTS=random`` builds, so the shipped ``handler.limits``: ``max_image_side``
4096 and the memory budget of a third of RAM), asks the SDK for the plan (``client.plan``), then
runs the request (``client.stylize``, coarse to fine, ``--iterations`` iterations split over
``--scales``) and reads the worker's peak resident memory (``VmHWM`` in ``/proc/<pid>/status``).
Prints a Markdown report and, unless ``--quick``, appends it to ``benchmarks/RESULTS.md``.

Usage: ``python benchmarks/large_request.py [--size 4096] [--scales 1024 4096] [--iterations 3]``;
about half an hour on the 2-core CPU machine (most of it the 4096 px level's targets and
iterations). ``--quick`` sends 512 px in seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_server import build_store  # noqa: E402
from nst_client import StyleTransferClient  # noqa: E402
from results import publish  # noqa: E402
from torchserve_server import running_server  # noqa: E402

CONTENT = ROOT / "examples" / "contents" / "tubingen.jpg"
STYLE = ROOT / "examples" / "styles" / "starry_night.jpg"
GIB = 2**30


def worker_peak_bytes(server) -> int:
    """The worker process's peak resident memory (VmHWM), bytes."""
    key = json.loads(server.key_file.read_text())["management"]["key"]
    (model,) = requests.get(f"{server.management_url}/models/nst", timeout=30,
                            headers={"Authorization": f"Bearer {key}"}).json()
    (worker,) = model["workers"]
    status = Path(f"/proc/{worker['pid']}/status").read_text()
    (line,) = [ln for ln in status.splitlines() if ln.startswith("VmHWM:")]
    return int(line.split()[1]) * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="output side, pixels (square content)")
    parser.add_argument("--scales", type=int, nargs="+", default=[1024, 4096], help="levels' long sides, pixels")
    parser.add_argument("--iterations", type=int, default=3, help="iterations in all (the last level gets the remainder)")
    parser.add_argument("--quick", action="store_true", help="512 px, print only")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.scales, args.iterations = 512, [256, 512], 2
    with tempfile.TemporaryDirectory(prefix="nst-large-") as tmp:
        store, workdir = Path(tmp) / "store", Path(tmp) / "server"
        store.mkdir()
        workdir.mkdir()
        build_store(store)
        content = Path(tmp) / f"content_{args.size}.jpg"
        with Image.open(CONTENT) as img:
            img.convert("RGB").resize((args.size, args.size), Image.Resampling.LANCZOS).save(content, quality=90)
        params = {"image_size": args.size, "scales": args.scales, "iterations": args.iterations, "output_format": "jpeg"}
        with running_server(store, workdir) as server, \
                StyleTransferClient(base_url=server.url, key_file=server.key_file, timeout=4 * 3600) as client:
            held = worker_peak_bytes(server)
            plan = client.plan(content, STYLE, **params)
            started = time.perf_counter()
            result = client.stylize(content, STYLE, **params)
            seconds = time.perf_counter() - started
            peak = worker_peak_bytes(server)
    rows = [f"| {lv.side} | {lv.width}x{lv.height} | {lv.iterations} | "
            f"{'whole' if lv.tile is None else f'{lv.tiles} tiles of {lv.tile} px'} | {lv.lbfgs_history} | "
            f"{lv.peak_memory_bytes / GIB:.2f} | {'unknown' if lv.seconds is None else f'{lv.seconds:.0f}'} |"
            for lv in plan.levels]
    budget = "none" if plan.memory_budget_bytes is None else f"{plan.memory_budget_bytes / GIB:.2f} GiB"
    report = "\n".join([
        f"\n## A {args.size} px request through TorchServe and the SDK ({dt.date.today().isoformat()})\n",
        f"Machine: {platform.machine()}, CPU worker, random weights. Command: `python benchmarks/large_request.py "
        f"{' '.join(argv if argv is not None else sys.argv[1:])}`. Memory budget of the worker: {budget} (the "
        f"shipped default: a third of RAM). Worker before the request: {held / GIB:.2f} GiB peak RSS.\n",
        "The plan (`client.plan`, the same request with `params.dry_run`):\n",
        "| level side | size | steps | runs as | L-BFGS history | peak, estimated (GiB) | seconds, estimated |",
        "|---|---|---|---|---|---|---|", *rows,
        f"\nThe run (`client.stylize`): {result.width}x{result.height} px, {result.iterations} iterations "
        f"({result.stopped}), {seconds:.0f} s (estimated {plan.seconds or float('nan'):.0f} s); the worker's peak "
        f"RSS {peak / GIB:.2f} GiB (estimated {plan.peak_memory_bytes / GIB:.2f} GiB for a long run's whole "
        f"L-BFGS history; this run stored {max(0, args.iterations - 1)} pairs at most).\n",
    ])
    publish(report, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())

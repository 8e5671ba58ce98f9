"""Server benchmark: what TorchServe and the SDK add on top of the engine.

1. Start-up: seconds from ``torchserve --start`` until the model's worker is READY (the
   repository's config.properties on private ports, the archive built by ``make archive
   WEIGHTS=random``).
2. Overhead: one request (``--size`` px, ``--iterations`` iterations) through the SDK and TorchServe
   against a direct call of the engine, in this process, with the same parameters, images and
   thread count; the overhead in seconds and as a ratio. Both runs are repeated ``--repeat``
   times and the fastest is kept.
3. Throughput: requests per second with 1, 2 and 4 concurrent SDK clients, each sending
   ``--burst`` small requests (``--small-size`` px, ``--small-steps`` iterations) to the one worker.

Prints Markdown tables and appends them to ``benchmarks/RESULTS.md`` unless ``--quick``.
Usage: ``python benchmarks/bench_server.py [--quick]`` (``make bench`` runs it after the engine
benchmark). Run on a quiet machine: the timings are wall times.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "handler"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from nst.images import to_tensor  # noqa: E402
from nst.stylize import stylize  # noqa: E402
from nst.weights import PROVENANCE_FILE, WEIGHTS_FILE, load_features, read_provenance  # noqa: E402
from nst_client import StyleTransferClient  # noqa: E402
from nst_http.request import parse_request  # noqa: E402
from results import publish  # noqa: E402
from torchserve_server import running_server  # noqa: E402  (the end-to-end tests' server harness)

CONTENT = ROOT / "examples" / "contents" / "tubingen.jpg"
STYLE = ROOT / "examples" / "styles" / "starry_night.jpg"


def build_store(store: Path) -> None:
    subprocess.run(["make", "--no-print-directory", "-s", "archive", "WEIGHTS=random", f"MODEL_STORE={store}"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def direct_seconds(store: Path, params: dict, repeat: int) -> float:
    """Fastest of ``repeat`` engine calls with what the handler would run for ``params``."""
    import base64

    body = {"content": base64.b64encode(CONTENT.read_bytes()).decode(),
            "style": base64.b64encode(STYLE.read_bytes()).decode(), "params": params}
    request = parse_request(json.dumps(body))
    features = load_features(store / WEIGHTS_FILE, read_provenance(store / PROVENANCE_FILE))
    size = request.params["image_size"]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        content = to_tensor(request.content, size)
        styles = [to_tensor(s, size) for s in request.styles]
        stylize(content, styles, features, request.options())
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes; print only")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--small-size", type=int, default=128)
    parser.add_argument("--small-steps", type=int, default=10)
    parser.add_argument("--burst", type=int, default=4, help="requests per client in the throughput test")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.iterations, args.repeat, args.small_size, args.small_steps, args.burst = 64, 5, 1, 32, 2, 1

    with tempfile.TemporaryDirectory(prefix="nst-bench-") as tmp:
        store, workdir = Path(tmp) / "store", Path(tmp) / "server"
        store.mkdir()
        workdir.mkdir()
        build_store(store)
        start = time.perf_counter()
        with running_server(store, workdir) as server:
            ready = time.perf_counter() - start
            params = {"image_size": args.size, "iterations": args.iterations, "seed": 0}
            with StyleTransferClient(base_url=server.url, key_file=server.key_file, max_retries=0,
                                     timeout=3600) as client:
                client.stylize(CONTENT, STYLE, image_size=32, iterations=1)  # warm the worker
                served = float("inf")
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    client.stylize(CONTENT, STYLE, **params)
                    served = min(served, time.perf_counter() - t0)
            # The direct run uses as many threads as the worker (torch_threads 0: all cores).
            direct = direct_seconds(store, params, args.repeat)

            throughput = []
            small = {"image_size": args.small_size, "iterations": args.small_steps, "seed": 0}
            for clients in (1, 2, 4):
                def burst(_: int) -> None:
                    with StyleTransferClient(base_url=server.url, key_file=server.key_file, max_retries=0,
                                             timeout=3600) as c:
                        for _ in range(args.burst):
                            c.stylize(CONTENT, STYLE, **small)

                t0 = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    list(pool.map(burst, range(clients)))
                elapsed = time.perf_counter() - t0
                throughput.append((clients, clients * args.burst, elapsed))

    overhead = served - direct
    allowed = 0.05 * direct + 0.3
    machine = (f"{platform.machine()}, {torch.get_num_threads()} torch threads in the direct run, torch "
               f"{torch.__version__}, worker on {'cuda' if torch.cuda.is_available() else 'cpu'}")
    command = "python benchmarks/bench_server.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows = "\n".join(f"| {c} | {n} | {e:.1f} | {n / e:.3f} |" for c, n, e in throughput)
    report = (
        f"\n## Server: start-up, overhead, throughput ({dt.date.today().isoformat()})\n\n"
        f"Machine: {machine}. Command: `{command.strip()}`. One worker (a CPU host), random weights.\n\n"
        f"| measure | value |\n|---|---|\n"
        f"| `torchserve --start` to worker READY | {ready:.1f} s |\n"
        f"| direct engine call, {args.size} px, {args.iterations} iterations (fastest of {args.repeat}) | {direct:.2f} s |\n"
        f"| same through the SDK and TorchServe (fastest of {args.repeat}) | {served:.2f} s |\n"
        f"| overhead | {overhead:+.2f} s = {overhead / direct:+.1%} (target: under 5% + 0.3 s = {allowed:.2f} s) |\n\n"
        f"Throughput, {args.small_size} px, {args.small_steps} iterations per request, each client sending "
        f"{args.burst} requests one after another:\n\n"
        f"| concurrent clients | requests | seconds | requests / s |\n|---|---|---|---|\n{rows}\n"
    )
    publish(report, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The GPU check (issue 23): does the GPU path work, agree with the CPU, and how fast is it.

Runs on a machine with an NVIDIA GPU and its own PyTorch (no TorchServe, Java, network or
project virtualenv): the engine and the handler come from this checkout, TorchServe's Python
package from ``.gpu-deps/`` (``make gpu-deps`` here; it travels with the checkout). Parts, each
timed; a failing part records its error and the rest still run:

1. ``device``: the device, the versions of torch, torchvision, CUDA and cuDNN, the TF32 flags.
2. ``agreement``: the engine's objective (:func:`nst.objective.first_level_objective`), seeded random VGG19
   weights and images, in fp32 on the CPU against each precision on the device: the relative
   error of each loss term and of the gradient (largest element), and its cosine.
3. ``speed``: seconds per iteration of the floor (one VGG19 forward and input-gradient pass to
   ``relu5_1``) and of the engine (default options; history + N iterations, the last N timed,
   so the L-BFGS history is full), per size and precision; CUDA events on a GPU.
4. ``long_run``: the wall time of 500 L-BFGS iterations at 512 px (default options).
5. ``host_reads``: reads back to the host per iteration (:class:`nst.host.HostReads`).
6. ``handler``: a plain, a streamed, a dry-run and a job request through ``NSTHandler`` on
   ``cuda:0`` (:mod:`gpu_handler`).
7. ``memory``: :mod:`nst.memory`'s estimate against ``torch.cuda.max_memory_allocated`` at 1024
   and 2048 px (:func:`large.large_probe`), and what the caching allocator reserves beyond.

Writes ``DIR/gpu_check.json`` after every part (a run cut short keeps what it measured), prints
a summary, exits 1 when a part failed. ``--device cpu --quick``: the smoke run (toy sizes, the
CPU against itself). Usage: ``python benchmarks/gpu_check.py [--device cuda|cpu] [--quick]
[--out DIR] [--only PART...]``, or ``--gather-deps DIR`` (``make gpu-deps``)."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import shutil
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: What ``make gpu-deps`` gathers: the packages the handler path needs beyond a bare PyTorch
#: machine's (TorchServe's Python side; ``packaging``, which its base handler imports).
DEPS_DIR = ROOT / ".gpu-deps"
DEPS = ("ts", "packaging")
#: Left out of the gathered copy: TorchServe's Java frontend (a 44 MB jar), its tests, bytecode.
DEPS_LEFT_OUT = ("frontend", "unit_tests", "__pycache__", "*.pyc")
sys.path[:0] = [str(ROOT / "handler"), str(ROOT / "benchmarks")]
if DEPS_DIR.is_dir():
    sys.path.append(str(DEPS_DIR))  # last: a machine's own packages win

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from bench_engine import sync  # noqa: E402
from gpu_handler import handler_requests  # noqa: E402
from large import CALIBRATION_ENV, large_probe  # noqa: E402
from nst import weights  # noqa: E402
from nst.host import HostReads  # noqa: E402
from nst.objective import first_level_objective  # noqa: E402
from nst.options import StylizeOptions  # noqa: E402
from nst.precision import PRECISIONS, numerics  # noqa: E402
from nst.records import TERMS, Iterate  # noqa: E402
from nst.stylize import stylize  # noqa: E402
from nst.vgg import FeatureExtractor, VGGFeatures, build_vgg19_features  # noqa: E402

PARTS = ("device", "agreement", "speed", "long_run", "host_reads", "handler", "memory")
REQUESTS = ("plain", "streamed", "dry_run", "job")  # the handler part's


@dataclass(frozen=True)
class Settings:
    """Sizes (pixels) and counts (iterations) of one run."""

    agreement_size: int = 256
    speed_sizes: tuple[int, ...] = (256, 512, 1024)
    history: int = StylizeOptions().lbfgs_history  # pairs filled before timing
    timed: int = 20  # iterations timed after the history is filled (and floor passes)
    long_size: int = 512
    long_steps: int = 500
    reads_size: int = 256
    reads_steps: tuple[int, int] = (10, 30)  # two runs: the difference is what one iteration adds
    handler_size: int = 256
    handler_steps: int = 50
    memory_sizes: tuple[int, ...] = (1024, 2048)
    memory_iters: int = 3  # large_probe needs 2 or more


QUICK = Settings(64, (64,), 3, 3, 64, 20, 64, (3, 6), 64, 3, (96,), 2)  # the fields in order


@cache
def network(device: str) -> VGGFeatures:
    """Seeded random VGG19 ``features`` (``make_random(0)``) on ``device``, built once."""
    return build_vgg19_features(weights.make_random(0).state).to(device)


def random_images(size: int, device: torch.device, count: int = 2) -> list[torch.Tensor]:
    """``count`` seeded ``(1, 3, size, size)`` images in ``[0, 1]`` (the same on every device)."""
    gen = torch.Generator().manual_seed(0)
    return [torch.rand(1, 3, size, size, generator=gen).to(device) for _ in range(count)]


class Stopwatch:
    """Marks on a device's timeline: CUDA events on a GPU (no host wait between marks), or
    ``time.perf_counter`` on the CPU; :meth:`seconds` from the first mark to the last."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.marks: list[Any] = []  # torch.cuda.Event or float

    def mark(self) -> None:
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def seconds(self) -> float:
        first, last = self.marks[0], self.marks[-1]
        if self.device.type == "cuda":
            last.synchronize()
            return first.elapsed_time(last) / 1e3
        return last - first


def numerics_flags() -> dict[str, Any]:
    """The process-wide switches of float32 arithmetic. torch >= 2.9 raises on some reads once
    its legacy (``allow_tf32``) and new (``set_float32_matmul_precision``) APIs were mixed:
    such a read records its error."""
    reads: dict[str, Callable[[], Any]] = {
        "cudnn.allow_tf32": lambda: torch.backends.cudnn.allow_tf32,
        "cuda.matmul.allow_tf32": lambda: torch.backends.cuda.matmul.allow_tf32,
        "cuda.matmul.fp32_precision": lambda: torch.backends.cuda.matmul.fp32_precision,
        "float32_matmul_precision": torch.get_float32_matmul_precision,
        "cudnn.benchmark": lambda: torch.backends.cudnn.benchmark,
    }
    flags = {}
    for name, read in reads.items():
        try:
            flags[name] = read()
        except Exception as exc:
            flags[name] = f"{type(exc).__name__}: {str(exc)[:160]}"
    return flags


# --- 1. device ----------------------------------------------------------------------------------

def device_info(device: torch.device) -> dict[str, Any]:
    """The device, the library versions and the arithmetic switches in force at start."""
    info: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "torch_threads": torch.get_num_threads(),
        "numerics": numerics_flags(), "gpu_deps": str(DEPS_DIR) if str(DEPS_DIR) in sys.path else None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        free, total = torch.cuda.mem_get_info(device)
        info |= {"name": props.name, "capability": f"{props.major}.{props.minor}", "gpus": torch.cuda.device_count(),
                 "memory_gib": total / 2**30, "free_gib": free / 2**30}
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


# --- 2. agreement -------------------------------------------------------------------------------

def evaluation(precision: str, images: list[torch.Tensor]) -> tuple[dict[str, float], torch.Tensor]:
    """The default objective's terms and gradient at ``images[2]`` (content, style, image) under
    ``precision``, as the engine runs a level (its targets and evaluation under
    :func:`nst.precision.numerics`). The gradient comes back in float64 on the CPU."""
    content, style, start = images
    with numerics(precision):
        targets = first_level_objective(network(str(content.device)), StylizeOptions(precision=precision), content, [style])
        image = start.clone().requires_grad_(True)
        out = targets.evaluate(image)
    # evaluate returns the terms (a TERMS-ordered tensor), (total, terms), or (total, {term: value}).
    terms = out[1] if isinstance(out, tuple) else out
    values = dict(zip(TERMS, terms.tolist())) if isinstance(terms, torch.Tensor) else dict(terms)
    assert image.grad is not None
    return {k: float(v) for k, v in values.items()}, image.grad.detach().to("cpu", torch.float64)


def compare(terms: dict[str, float], grad: torch.Tensor, ref_terms: dict[str, float], ref_grad: torch.Tensor) -> dict:
    """Relative errors of the terms, the gradient's largest error over its largest element, its cosine."""
    return {"terms_rel_error": {k: abs(terms[k] - r) / abs(r) if r else abs(terms[k]) for k, r in ref_terms.items()},
            "grad_rel_max_error": float((grad - ref_grad).abs().max() / ref_grad.abs().max()),
            "grad_cosine": float(F.cosine_similarity(grad.flatten(), ref_grad.flatten(), dim=0))}


def agreement(device: torch.device, size: int) -> dict[str, Any]:
    """Each precision on ``device`` against fp32 on the CPU, and against fp32 on ``device``."""
    cpu = torch.device("cpu")
    ref_terms, ref_grad = evaluation("fp32", random_images(size, cpu, 3))
    images = random_images(size, device, 3)
    rows, own = {}, None
    for precision in PRECISIONS:
        terms, grad = evaluation(precision, images)
        own = own or (terms, grad)  # PRECISIONS starts with fp32
        rows[precision] = {"terms": terms, **compare(terms, grad, ref_terms, ref_grad),
                           "vs_device_fp32": compare(terms, grad, *own), "numerics_after": numerics_flags()}
    return {"size": size, "reference": "cpu fp32", "reference_terms": ref_terms, "precisions": rows}


# --- 3. speed -----------------------------------------------------------------------------------

def floor_seconds(device: torch.device, size: int, precision: str, passes: int) -> float:
    """Seconds of one VGG19 forward and input-gradient pass to ``relu5_1`` (the floor of
    ``bench_engine.floor_seconds``) under ``precision``, the mean of ``passes`` after two warm-ups."""
    with numerics(precision, fixed_shapes=True):
        extractor = FeatureExtractor(network(str(device)), ["relu5_1"], precision=precision)
        image = torch.rand(1, 3, size, size, device=device, requires_grad=True)
        watch = Stopwatch(device)
        for i in range(passes + 2):
            if i == 2:
                watch.mark()
            torch.autograd.grad(extractor(image)["relu5_1"].sum(), image)
        watch.mark()
        return watch.seconds() / passes


def engine_seconds(device: torch.device, size: int, precision: str, history: int, timed: int) -> float:
    """Seconds per iteration of :func:`nst.stylize.stylize` (default options but ``precision``
    and ``lbfgs_history``): ``history + timed + 1`` iterations, the ``timed`` after the history is
    full measured between two progress reports."""
    content, style = random_images(size, device)
    watch = Stopwatch(device)

    def callback(it: Iterate) -> None:
        if it.iteration in (history, history + timed):
            watch.mark()

    options = StylizeOptions(iterations=history + timed + 1, lbfgs_history=history, precision=precision)
    stylize(content, style, network(str(device)), options, callback=callback)
    return watch.seconds() / timed


def speed(device: torch.device, s: Settings) -> dict[str, Any]:
    """Floor and engine seconds per iteration for every size and precision."""
    rows = []
    for size in s.speed_sizes:
        for precision in PRECISIONS:
            floor = floor_seconds(device, size, precision, s.timed)
            ours = engine_seconds(device, size, precision, s.history, s.timed)
            rows.append({"size": size, "precision": precision, "floor_s": floor, "engine_s": ours,
                         "ratio": ours / floor})
    return {"clock": "cuda events" if device.type == "cuda" else "perf_counter", "history": s.history,
            "timed_iterations": s.timed, "default_precision": StylizeOptions().precision, "rows": rows}


# --- 4. long run, 5. host reads -----------------------------------------------------------------

def long_run(device: torch.device, size: int, iterations: int) -> dict[str, Any]:
    """Wall seconds of one ``iterations``-iteration run at ``size`` px, default options, targets included."""
    content, style = random_images(size, device)
    sync(device)
    start = time.perf_counter()
    result = stylize(content, style, network(str(device)), StylizeOptions(iterations=iterations))
    sync(device)
    seconds = time.perf_counter() - start
    return {"size": size, "iterations": result.iterations, "seconds": seconds,
            "s_per_iteration": seconds / iterations, "losses": result.losses}


def host_reads(device: torch.device, size: int, steps: tuple[int, int]) -> dict[str, Any]:
    """Host reads of two whole runs (``iterations`` iterations each, default options): per iteration,
    and what one more iteration adds (the difference, without the set-up's reads)."""
    content, style = random_images(size, device)
    counts, ops = [], {}
    for n in steps:
        with HostReads() as reads:
            stylize(content, style, network(str(device)), StylizeOptions(iterations=n))
        counts.append(reads.count)
        ops = dict(Counter(reads.ops))  # the longer run's
    return {"size": size, "iterations": list(steps), "reads": counts, "per_iteration": counts[-1] / steps[-1],
            "added_per_iteration": (counts[1] - counts[0]) / (steps[1] - steps[0]), "ops": ops,
            "lbfgs_history": StylizeOptions().lbfgs_history}


# --- 7. memory ----------------------------------------------------------------------------------

def memory(device: torch.device, sizes: tuple[int, ...], iters: int) -> dict[str, Any]:
    """:func:`large.large_probe` (whole images, no budget) per size; on a GPU also the caching
    allocator's reserve over the allocated peak, and what the driver holds beyond (context, libraries)."""
    rows = []
    for size in sizes:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        row = large_probe(size, None, None, iters, device)
        if device.type == "cuda":
            free, total = torch.cuda.mem_get_info(device)
            peak, reserved = torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)
            row |= {"peak_reserved_gib": reserved / 2**30, "reserved_over_allocated_gib": (reserved - peak) / 2**30,
                    "driver_over_reserved_gib": (total - free - torch.cuda.memory_reserved(device)) / 2**30}
        rows.append(row)
    kind = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "peak RSS of the process"
    return {"measured": kind, "iterations": iters, "rows": rows}


# --- the run ------------------------------------------------------------------------------------

def summary(name: str, r: dict[str, Any]) -> str:
    """One or a few lines of a part's result."""
    if name == "device":
        return f"{r['name']}, torch {r['torch']}, CUDA {r['cuda']}, cuDNN {r['cudnn']}; {r['numerics']}"
    if name == "agreement":
        return "; ".join(f"{p}: grad rel err {v['grad_rel_max_error']:.2e}, cos {v['grad_cosine']:.6f}, total rel err "
                         f"{v['terms_rel_error']['total']:.2e}" for p, v in r["precisions"].items())
    if name == "speed":
        return "\n".join(f"  {x['size']} px {x['precision']}: floor {x['floor_s'] * 1e3:.2f} ms, engine "
                         f"{x['engine_s'] * 1e3:.2f} ms, {x['ratio']:.2f}x" for x in r["rows"])
    if name == "long_run":
        return f"{r['iterations']} iterations at {r['size']} px: {r['seconds']:.2f} s"
    if name == "host_reads":
        return f"{r['per_iteration']:.2f} reads per iteration ({r['added_per_iteration']:.2f} per added iteration)"
    if name == "handler":
        return f"on {r['device']}: " + "; ".join(f"{k} {r[k]['status']} in {r[k]['seconds']:.2f} s" for k in REQUESTS)
    return "; ".join(f"{x['size']} px: peak {x['peak_gib']:.2f} GiB, model {x['peak_estimate_gib']:.2f} GiB"
                     for x in r["rows"])


def run_part(name: str, work: Callable[[], dict[str, Any]], report: dict[str, Any], device: torch.device) -> None:
    """Run one part into ``report["parts"][name]``: its result, or its error, and its seconds."""
    start, result = time.perf_counter(), None
    try:
        result = work()
        print(f"[ok]     {name} ({time.perf_counter() - start:.0f} s): {summary(name, result)}", flush=True)
        entry: dict[str, Any] = {"ok": True, "result": result}
    except Exception as exc:
        entry = {"ok": False, "result": result, "error": {"type": type(exc).__name__, "message": str(exc),
                                                          "traceback": traceback.format_exc().splitlines()[-12:]}}
        report["failed"].append(name)
        print(f"[FAILED] {name} ({time.perf_counter() - start:.0f} s): {type(exc).__name__}: {str(exc)[:300]}",
              flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report["parts"][name] = {"seconds": time.perf_counter() - start, **entry}


def gather_deps(dest: Path) -> int:
    """Copy :data:`DEPS` (less :data:`DEPS_LEFT_OUT`) from this Python's packages into ``dest``;
    returns the bytes copied."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in DEPS:
        source = Path(str(__import__(name).__file__)).parent
        shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns(*DEPS_LEFT_OUT), dirs_exist_ok=True)
    return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="the smoke run: toy sizes and counts")
    parser.add_argument("--out", type=Path, default=Path("gpu-check-out"), help="folder of gpu_check.json")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--gather-deps", type=Path, metavar="DIR", help="copy the packages it needs into DIR, exit")
    args = parser.parse_args(argv)
    if args.gather_deps:
        print(f"gathered {', '.join(DEPS)} into {args.gather_deps}: {gather_deps(args.gather_deps) / 2**20:.1f} MiB")
        return 0
    device, s = torch.device(args.device), QUICK if args.quick else Settings()
    if args.quick:  # toy tensors: one thread is as fast, and on a busy 2-core machine many times faster
        torch.set_num_threads(1)
        os.environ[CALIBRATION_ENV] = "2"  # the memory part's start-up speed run: two iterations
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"command": " ".join(["benchmarks/gpu_check.py", *(argv or sys.argv[1:])]),
                              "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "device": str(device), "quick": args.quick, "settings": asdict(s), "failed": [],
                              "parts": {}}
    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "device": lambda: device_info(device),
        "agreement": lambda: agreement(device, s.agreement_size),
        "speed": lambda: speed(device, s),
        "long_run": lambda: long_run(device, s.long_size, s.long_steps),
        "host_reads": lambda: host_reads(device, s.reads_size, s.reads_steps),
        "handler": lambda: handler_requests(device, s.handler_size, s.handler_steps) | {
            "numerics_after": numerics_flags()},  # ts's base handler sets matmul precision on import (sm80+)
        "memory": lambda: memory(device, s.memory_sizes, s.memory_iters),
    }
    start = time.perf_counter()
    for name in (p for p in PARTS if p in args.only):
        run_part(name, parts[name], report, device)
        report["seconds"] = time.perf_counter() - start
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"{len(report['parts']) - len(report['failed'])} of {len(report['parts'])} parts ok in "
          f"{report['seconds']:.0f} s; wrote {args.out / 'gpu_check.json'}")
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

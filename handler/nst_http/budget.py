"""The worker's memory budget: what one optimization may use on its device (issues 13, 23).

``handler.limits.memory_budget_mb`` sets the worker's peak (the process's resident memory on
the CPU, the device's allocated memory on CUDA). Without it: a third of the machine's RAM on
the CPU; on CUDA, what the worker holds plus what its own GPU has free once the worker is
loaded (``torch.cuda.mem_get_info`` of its device, and its allocator's unused cached blocks),
less :data:`CUDA_RESERVE_BYTES` and :data:`CUDA_RESERVE_SHARE` for what the memory model
leaves out. The optimization's share is that peak less what the worker already holds once
loaded (the runtime, the weights), measured at start-up; :func:`nst.memory.plan_memory` plans
each level within it.
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import time
from dataclasses import dataclass

import torch
from nst.options import StylizeOptions
from nst.plan import Level, Plan, make_plan
from nst.records import Iterate
from nst.stylize import stylize
from nst.vgg import VGGFeatures

#: Share of the machine's RAM a CPU worker plans for, without ``memory_budget_mb``.
CPU_SHARE = 1 / 3
#: What a CUDA worker keeps back, without ``memory_budget_mb``, from the memory its GPU has free
#: at start-up, for what :mod:`nst.memory` does not model on CUDA: bytes, plus a share of that
#: free memory. The bytes cover what the first convolution and matrix product create after the
#: budget is measured (cuDNN's and cuBLAS's handles and workspaces, kernels loaded lazily); the
#: share covers what grows with the activations (the workspaces cuDNN's convolution algorithms
#: ask for, and the caching allocator's fragmentation: memory it reserves beyond the peak it
#: hands out, which is the peak the model predicts). A conservative figure, not yet measured on
#: a GPU (no GPU was lent while it was set): ``make gpu-check`` (``benchmarks/gpu_check.py``)
#: measures the model against ``torch.cuda.max_memory_allocated`` at 1024 and 2048 px; set
#: these from its figures.
CUDA_RESERVE_BYTES, CUDA_RESERVE_SHARE = 2**30, 0.10
#: Side of the images of the start-up run that measures a worker's speed, pixels, after an
#: untimed warm-up run at half that (a process's first run pays for allocations and kernel
#: choices); smaller images measure mostly per-call overheads.
CALIBRATION_SIDE = 256
#: Iterations of the start-up run (the first evaluation is not timed): about 4 s on a 2-core
#: CPU; several, because one evaluation's time varies by 20% on a shared machine, and the
#: median one is taken, because another process can slow one by half or more.
CALIBRATION_STEPS = 5
#: How a CPU's seconds per pixel-iteration grow with the pixels one pass of the network runs on
#: (their feature maps fall out of the caches): ``(pixels / CALIBRATION_SIDE²) ** exponent`` up
#: to ``hold`` x the start-up run's pixels (2048² px), flat beyond. Fitted on a 2-core x86 CPU to
#: whole images of 512, 1024 and 1448 px measured in one process with the start-up runs
#: (``python benchmarks/bench_engine.py --only curve``, ``benchmarks/RESULTS.md``, "Speed curve"): 1.15x the
#: start-up run's time per pixel at 512 px, 1.20x at 1024 px, 1.35x at 1448 px, best fitted by
#: 0.081 (0.072 in an earlier run of the same measurement). The exponent was 0.15 before, fitted
#: to separate processes' runs, and overestimated 1024 px images by 15-28%. A GPU's
#: curve is unmeasured (no GPU was lent): it is taken as flat, though a GPU runs large images
#: faster per pixel, so its large runs come out overestimated.
CPU_SPEED_EXPONENT, CPU_SPEED_HOLD = 0.075, 64


@dataclass(frozen=True)
class Budget:
    """Bytes: the worker's peak allowed, what it holds before any request, and the difference,
    which the optimization may use."""

    total: int
    baseline: int

    @property
    def working(self) -> int:
        """What one optimization may use, bytes (at least 0)."""
        return max(0, self.total - self.baseline)


def peak_rss() -> int:
    """This process's peak resident memory so far, bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if os.uname().sysname == "Darwin" else peak * 1024)


def measure_budget(memory_budget_mb: int | None, device: torch.device) -> Budget:
    """The budget of a worker on ``device`` once its model is loaded (see the module).

    Args:
        memory_budget_mb: the worker's peak, MiB; ``None``: the device's share
            (:func:`cuda_peak` on CUDA, :data:`CPU_SHARE` of the RAM on the CPU).
    """
    if device.type == "cuda":
        baseline = torch.cuda.memory_allocated(device)
        default = cuda_peak(device)
    else:
        baseline = peak_rss()
        default = int(CPU_SHARE * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    total = default if memory_budget_mb is None else memory_budget_mb * 2**20
    return Budget(total=total, baseline=baseline)


def cuda_peak(device: torch.device) -> int:
    """The peak a worker on CUDA ``device`` may reach, bytes of allocated memory: what it holds
    (``torch.cuda.memory_allocated``) plus what it could still allocate (what the GPU has free,
    ``torch.cuda.mem_get_info``, and the allocator's cached blocks it holds unused), less the
    reserve (:data:`CUDA_RESERVE_BYTES` + :data:`CUDA_RESERVE_SHARE` of that). Memory other
    processes hold (other workers, other programs) is not free, so it is left to them; measure
    it once the worker's weights are on the device."""
    held = torch.cuda.memory_allocated(device)
    free, _ = torch.cuda.mem_get_info(device)
    available = free + max(0, torch.cuda.memory_reserved(device) - held)
    reserve = CUDA_RESERVE_BYTES + CUDA_RESERVE_SHARE * available
    return held + max(0, int(available - reserve))


def release_cached_memory() -> None:
    """Hand the CUDA caching allocator's unused blocks back to the GPU, after the objects of a
    failed run are collected: after an out-of-memory error, so that the next request starts
    from what the worker holds. The cache is emptied only where CUDA is available."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class SpeedCurve:
    """How a worker's seconds per pixel-iteration change with the pixels one pass of the network
    runs on (:attr:`nst.plan.Level.pass_pixels`): a power law ``(p / reference) ** exponent``,
    held outside ``[reference, hold]`` (see :data:`CPU_SPEED_EXPONENT`). The worker's running
    mean of seconds per pixel-iteration (:class:`nst_http.desk.JobDesk`) is at ``reference``
    pixels; this scales it to each level."""

    reference: int = 1
    exponent: float = 0.0
    hold: int = 1

    def weight(self, level: Level) -> float:
        """Seconds per pixel-iteration of ``level`` over those at ``reference`` pixels."""
        pixels = level.pass_pixels or level.size[0] * level.size[1]
        return (min(max(pixels, self.reference), self.hold) / self.reference) ** self.exponent

    def work(self, plan: Plan, iterations: int | None = None) -> float:
        """The pixel-iterations of ``plan``'s first ``iterations`` (all: ``None``), each level's
        weighted by :meth:`weight`: seconds at ``reference`` pixels' speed."""
        return plan.work_done(plan.iterations if iterations is None else iterations, self.weight)


#: No dependence on size (a worker that has not measured one).
FLAT = SpeedCurve()


class LoopClock:
    """Times a run's optimization loop: the seconds and pixel-iterations
    (:meth:`SpeedCurve.work`) from its first evaluation to its last, which is what a worker's
    speed is measured in (the targets, decoding, encoding and the result's final loss report
    are left out). Call :meth:`tick` from the run's progress callback."""

    def __init__(self, plan: Plan, curve: SpeedCurve = FLAT) -> None:
        self.plan, self.curve = plan, curve
        self.iterations = plan.iterations
        self._first: tuple[float, float] | None = None
        self._last: tuple[float, float] | None = None

    def tick(self, it: Iterate) -> None:
        """Note an evaluation of the run (the report of the finished image, at ``iterations``, is not one)."""
        if it.iteration >= self.iterations:
            return
        mark = (time.perf_counter(), self.curve.work(self.plan, it.iteration))
        self._first = self._first or mark
        self._last = mark

    def measured(self) -> tuple[float, float]:
        """``(seconds, work)`` between the first and the last tick; ``(0, 0)`` before two."""
        if self._first is None or self._last is None:
            return 0.0, 0.0
        return self._last[0] - self._first[0], self._last[1] - self._first[1]


def measure_speed(features: VGGFeatures, device: torch.device,
                  iterations: int = CALIBRATION_STEPS) -> tuple[SpeedCurve, float, float]:
    """Time ``iterations`` (:data:`CALIBRATION_STEPS`; fewer only in benchmarks' smoke runs)
    iterations of the default configuration on random ``CALIBRATION_SIDE`` px images, so that a
    worker's first estimates have a figure (its real runs then refine it).

    Returns:
        ``(curve, seconds, work)``: the device's :class:`SpeedCurve` from the start-up run's
        pixels, and the run's seconds and pixel-iterations (its speed at the curve's reference).
    """
    _timed_run(features, device, CALIBRATION_SIDE // 2, 1)
    seconds, work = _timed_run(features, device, CALIBRATION_SIDE, iterations)
    pixels = CALIBRATION_SIDE**2
    curve = SpeedCurve(pixels, CPU_SPEED_EXPONENT, CPU_SPEED_HOLD * pixels) if device.type == "cpu" else FLAT
    return curve, seconds, work


def _timed_run(features: VGGFeatures, device: torch.device, side: int, iterations: int) -> tuple[float, float]:
    """``(seconds, pixel-iterations)`` of the loop of one start-up run on ``side`` px images:
    the median iteration's seconds times the iterations, so that one iteration slowed by
    another process (on a shared machine, by half or more) does not set a worker's speed."""
    images = torch.rand(2, 1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
    plan = make_plan((side, side), [(side, side)], StylizeOptions(iterations=iterations))
    stamps: list[float] = []

    def tick(it: Iterate) -> None:
        if it.iteration < iterations:  # an evaluation (the report of the finished image is not one)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            stamps.append(time.perf_counter())

    stylize(images[0], images[1], features, plan.options, plan=plan, callback=tick)
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    if not intervals:
        return 0.0, 0.0
    return statistics.median(intervals) * len(intervals), len(intervals) * plan.levels[0].iteration_work

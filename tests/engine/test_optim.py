"""The optimizers of the loop (issue 23): torch's L-BFGS iterates, one host read per iteration."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from engine.objective_helpers import level_objective
from nst.host import HostReads, to_host
from nst.objective import WholeImage
from nst.optim import LBFGS, MAX_STEP
from nst.options import StylizeOptions
from nst.stylize import stylize
from nst.vgg import VGGFeatures

SHALLOW: dict[str, Any] = {"style_layers": ("relu1_1", "relu2_1"), "content_layers": ("relu2_2",)}


def rand(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def torch_lbfgs(image: torch.Tensor, history: int) -> torch.optim.LBFGS:
    """torch's L-BFGS as the engine ran it before issue 23."""
    return torch.optim.LBFGS([image], lr=1.0, max_iter=1, history_size=history, tolerance_grad=-1.0,
                             tolerance_change=-1.0)


def compare(objective, start: torch.Tensor, history: int, iterations: int) -> tuple[float, int]:
    """Step torch's L-BFGS and ours from ``start`` side by side on ``objective`` (a function of
    the image returning a 0-dim loss): the largest relative distance between the iterates, and
    how many pairs ours kept at the end."""
    a, b = start.clone().requires_grad_(True), start.clone().requires_grad_(True)
    theirs, ours = torch_lbfgs(a, history), LBFGS(b, history_size=history)

    def closure() -> torch.Tensor:
        theirs.zero_grad()
        loss = objective(a)
        loss.backward()
        return loss

    def evaluate() -> torch.Tensor:
        b.grad = None
        loss = objective(b)
        loss.backward()
        return loss.detach().reshape(1)

    worst = 0.0
    for _ in range(iterations):
        theirs.step(closure)
        ours.step(evaluate, lambda values: None)
        worst = max(worst, float((a - b).detach().norm() / a.detach().norm()))
    return worst, len(ours.pairs)


def test_the_iterates_are_torch_s_on_the_stylization_objective(features: VGGFeatures) -> None:
    """30 iterations in float64 on the engine's own objective, with a history of 5 pairs so
    that old pairs are dropped: within 1e-5 relative at every iteration (measured: ~1e-13)."""
    double = copy.deepcopy(features).double()
    opts = StylizeOptions(**SHALLOW, tv_weight=1.0).effective()
    content, style = rand(1, 3, 32, 32, seed=1, dtype=torch.float64), rand(1, 3, 32, 32, seed=2, dtype=torch.float64)
    targets = level_objective(double, opts, content, [style])
    assert isinstance(targets, WholeImage)
    worst, kept = compare(lambda x: targets.forward(x)[0], rand(1, 3, 32, 32, seed=3, dtype=torch.float64), 5, 30)
    assert kept == 5
    assert worst < 1e-5


def test_pairs_without_curvature_are_skipped_as_torch_skips_them() -> None:
    """A non-convex function on which a step has ``y . s <= 1e-10`` (torch keeps no pair for
    it): still torch's iterates (measured: 2e-18). On rougher functions L-BFGS without a line
    search is chaotic (rounding grows 5-10x per step), so the comparison needs a tame one."""
    torch.manual_seed(3)
    matrix = torch.randn(40, 40, dtype=torch.float64) / 40**0.5

    def objective(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(matrix @ x).sum() - 0.02 * x.square().sum() + 1e-3 * x.pow(4).sum()

    worst, kept = compare(objective, torch.randn(40, dtype=torch.float64), 100, 30)
    assert kept < 29  # 29 pairs were made, and fewer kept
    assert worst < 1e-5


def test_a_content_image_with_other_strides_is_optimized(features: VGGFeatures) -> None:
    """A ``(1, 3, H, W)`` content image made by ``permute`` (not contiguous) starts the run
    (``init="content"``): the optimizers work on a contiguous copy (torch's L-BFGS failed on
    its gradient's ``view(-1)``)."""
    content = rand(1, 32, 32, 3, seed=0).permute(0, 3, 1, 2)
    assert not content.is_contiguous()
    result = stylize(content, rand(1, 3, 32, 32, seed=1), features, StylizeOptions(**SHALLOW, iterations=2))
    assert result.iterations == 2 and result.image.shape == (1, 3, 32, 32)


@pytest.mark.parametrize(("optimizer", "history", "tile"), [
    ("lbfgs", 1, None), ("lbfgs", 100, None), ("lbfgs", 100, 32), ("adam", 100, None),
])
def test_an_iteration_reads_the_host_at_most_twice(features: VGGFeatures, optimizer: str, history: int,
                                                   tile: int | None) -> None:
    """Counted between progress reports over 105 iterations, past a full history of 100 pairs:
    L-BFGS reads once (the loss terms with its curvature test), Adam twice (the loss terms, and
    its step count, which torch keeps on the CPU). torch's own L-BFGS read 2 x history + 8."""
    content, style = rand(1, 3, 48, 40, seed=1), rand(1, 3, 40, 40, seed=2)
    marks: list[int] = []
    with HostReads() as reads:
        result = stylize(content, style, features, StylizeOptions(
            **SHALLOW, iterations=105, optimizer=optimizer, lbfgs_history=history, tile_size=tile),
            callback=lambda it: marks.append(reads.count))
    assert result.iterations == 105 and len(marks) == 106  # the start, then every iteration
    per_iteration = [b - a for a, b in zip(marks, marks[1:])]
    assert max(per_iteration) <= (1 if optimizer == "lbfgs" else 2), per_iteration
    assert min(per_iteration) >= 1  # the losses are read: the counter sees reads


def test_to_host_reads_once_however_many_values() -> None:
    with HostReads() as reads:
        values = to_host(torch.tensor([1.0, 2.0, math.pi]))
    assert values == pytest.approx([1.0, 2.0, math.pi]) and reads.count == 1


def _run(optimizer: LBFGS, x: torch.Tensor, f: Any, steps: int) -> list[float]:
    """``steps`` steps of ``optimizer`` on ``f(x)``; the totals evaluated, in order."""
    totals: list[float] = []

    def evaluate() -> torch.Tensor:
        loss = f(x)
        loss.backward()
        return loss.detach().reshape(1)

    for _ in range(steps):
        optimizer.step(evaluate, lambda values: totals.append(values[-1]))
    return totals


def test_bounded_lbfgs_reaches_the_box_constrained_minimum_and_never_leaves_the_box() -> None:
    """An ill-conditioned quadratic whose unconstrained minimum lies outside ``[0, 1]`` in half
    its coordinates: the bounded iterates stay in the box and end at the projected minimum."""
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(64, generator=gen) * 3 - 1  # in [-1, 2]
    scales = torch.logspace(0, 3, 64)  # curvatures 1 to 1000

    def f(x: torch.Tensor) -> torch.Tensor:
        return (scales * (x - target).square()).sum()

    x = torch.full((64,), 0.5, requires_grad=True)
    inside: list[bool] = []
    optimizer = LBFGS(x, history_size=10, bounds=(0.0, 1.0))
    for _ in range(200):
        _run(optimizer, x, f, 1)
        inside.append(bool(((x >= 0) & (x <= 1)).all()))
    assert all(inside)
    assert torch.allclose(x.detach(), target.clamp(0, 1), atol=1e-4)


def test_a_bounded_step_is_scaled_as_a_whole_to_the_box_s_width() -> None:
    """An overshooting step (the target of half the coordinates is 100, far outside the box) is
    scaled as a whole so that no coordinate would move more than MAX_STEP of the box, rather than
    clamped coordinate by coordinate: the other half (target 0.6, a step of 0.1 away) then moves
    by a hundredth of that, where a clamp alone would have let them jump there."""
    target = torch.tensor([100.0] * 8 + [0.6] * 8)
    x = torch.full((16,), 0.5, requires_grad=True)
    optimizer = LBFGS(x, history_size=10, bounds=(0.0, 1.0))
    _run(optimizer, x, lambda v: (v - target).square().sum(), 2)  # the tiny first step, then the overshoot
    moved = (x.detach() - 0.5).abs()
    assert float(moved[:8].max()) <= MAX_STEP + 1e-6
    assert float(moved[8:].max()) < 0.01 * MAX_STEP

"""The optimizers of the stylization loop, each reading the host once per iteration.

:class:`LBFGS` is ``torch.optim.LBFGS`` as the engine runs it (``lr=1``, ``max_iter=1`` per
step, no line search, tolerances off, so that exactly the planned iterations run), rewritten so
that its state stays on the image's device: the same history, directions and steps (the two-loop
recursion of Nocedal & Wright, "Numerical Optimization", 2nd ed., algorithm 7.4, in torch's
order), but the scalars of the recursion are 0-dim tensors instead of Python numbers. torch's
own reads one value per stored pair in each loop (``alpha=-al[i]``), about ``2 x history + 8``
per iteration: on a GPU each read waits for the device to drain (:mod:`nst.host`).

The one value the host must know, whether the new pair is kept in the history (torch's
``ys > 1e-10``, curvature along the step), is read together with the evaluation's loss terms,
which the progress record needs anyway: one read per iteration. Whether the step is taken
(torch skips it when the direction is not one of descent, ``gtd > -tolerance_change``) is
decided on the device.

:class:`Adam` wraps ``torch.optim.Adam`` (whose step count lives on the CPU, so its reads of
it do not wait for a GPU) with the same interface, and clamps the image to ``[0, 1]`` after
each step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

import torch

from . import host

#: With bounds, the most a coordinate moves in one step, as a fraction of the box's width: a
#: longer step is overshoot. L-BFGS without a line search overshoots on its second step (one
#: pair's curvature, from a tiny first step): unbounded it recovers, the overshoot teaching it the
#: curvature, but projected onto the box the overshoot saturates the image and the held pixels
#: stay held (chelsea + the_scream at 256 px on HED's VGG16: total loss 4.6 -> 1e4, never back).
#: Measured at 256 px, total loss returned after 60 iterations, astronaut + great_wave / chelsea +
#: the_scream: cap 0.1, 0.771 / 0.901; 0.3, 0.673 / 0.948; 1.0, 0.674 / 0.926; unbounded, 0.731 /
#: 0.952 once clamped (its lowest, unclamped, 0.681 / 0.898).
MAX_STEP = 1.0
#: torch.optim.LBFGS keeps a pair only when its curvature ``y . s`` exceeds this.
CURVATURE_MIN = 1e-10
#: Evaluations put the gradient into the image's ``.grad`` (which the optimizer clears before)
#: and return the values to report as a 1-D tensor; the optimizer reads them.
Evaluate = Callable[[], torch.Tensor]
#: Receives those values once read, before the image is updated.
Report = Callable[[list[float]], None]


class Optimizer(Protocol):
    """What the stylization loop needs of an optimizer."""

    def step(self, evaluate: Evaluate, report: Report) -> None:
        """Clear the image's gradient and evaluate the objective once (``evaluate`` puts the
        gradient into the image's ``.grad`` and returns a 1-D tensor of the values to report),
        pass those values, read to the host, to ``report`` while the image is still the one
        evaluated, then update the image once."""
        ...


class LBFGS:
    """L-BFGS on one tensor, equal to ``torch.optim.LBFGS([image], lr=lr, max_iter=1,
    history_size=history_size, tolerance_grad=-1, tolerance_change=-1)`` stepped once per
    call, with one host read per step (see the module).

    Args:
        image: the leaf being optimized (any shape and device), updated in place.
        history_size: pairs ``(s, y)`` kept, each two image-sized vectors (memory).
        lr: step length after the first iteration (the first is ``min(1, 1 / |g|_1) * lr``,
            as torch's).
        bounds: ``(low, high)``: keep every coordinate in the box, as L-BFGS-B's projections do
            (Byrd et al. 1995): the direction from the projected gradient (:meth:`_projected`)
            and zero on the coordinates held at a bound (steepest descent where that is not a
            descent direction), no coordinate moved more than :data:`MAX_STEP` of the box's width, each
            step clamped into the box, and the pair's ``s`` the step taken (``y`` from the whole
            gradients). The image must start in the box. ``None``: unbounded, exactly torch's steps.
    """

    def __init__(self, image: torch.Tensor, *, history_size: int = 100, lr: float = 1.0,
                 bounds: tuple[float, float] | None = None) -> None:
        if history_size < 1:
            raise ValueError(f"history_size must be at least 1, got {history_size}")
        self.image, self.lr, self.bounds = image, lr, bounds
        self.pairs: deque[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = deque(maxlen=history_size)
        """``(s, y, 1 / (y . s))`` of the kept pairs, oldest first (flat vectors, 0-dim)."""
        self._d: torch.Tensor | None = None  # the last direction (flat)
        self._s: torch.Tensor | None = None  # with bounds: the last step taken, after projection (flat)
        self._t: torch.Tensor | float = lr  # the last step length
        self._g: torch.Tensor | None = None  # the last gradient (flat)
        self._h: torch.Tensor | float = 1.0  # scale of the initial inverse Hessian, y.s / y.y

    def step(self, evaluate: Evaluate, report: Report) -> None:
        """One evaluation, its report and one update (see :class:`Optimizer`); one host read."""
        self.image.grad = None  # a fresh gradient tensor: the last one is kept as _g, not copied
        with torch.enable_grad():
            values = evaluate().detach().reshape(-1)
        with torch.no_grad():
            if self.image.grad is None:
                raise ValueError("evaluate() left no gradient in the image")
            g = self.image.grad.reshape(-1)
            # With bounds the direction comes from the projected gradient; the pairs, from the
            # whole gradient (the curvature along the step taken).
            free, p = None, g
            if self.bounds is not None:
                p, free = self._projected(g)
            t: torch.Tensor | float
            if self._d is None or self._g is None:
                read = host.to_host(values)
                d, t = p.neg(), torch.clamp(1.0 / p.abs().sum(), max=1.0) * self.lr
            else:
                y = g - self._g
                s = self._d * self._t if self._s is None else self._s
                ys = y.dot(s)
                read = host.to_host(torch.cat([values.to(ys.dtype), (ys > CURVATURE_MIN).to(ys.dtype).reshape(1)]))
                if read.pop():
                    self.pairs.append((s, y, 1.0 / ys))
                    self._h = ys / y.dot(y)
                d, t = self._direction(p), self.lr
            self._g = g
            if free is not None:
                d = d * free  # the coordinates held at a bound stay there
                # Not a descent direction once projected: the steepest descent within the box.
                d = torch.where(p.dot(d) < 0, d, p.neg())
            report(read)
            # torch takes no step along a direction that is not one of descent (g . d > 1 with
            # tolerance_change -1); its state keeps d and t all the same.
            take = (p.dot(d) <= 1.0).to(g.dtype)
            if self.bounds is None:
                self.image.add_((d * (take * t)).view_as(self.image))
            else:  # the step projected onto the box; the pair's s is the step taken
                # No coordinate moves more than MAX_STEP of the box's width in one step.
                width = self.bounds[1] - self.bounds[0]
                t = t * torch.clamp(MAX_STEP * width / (d.abs().amax() * t + 1e-30), max=1.0)
                before = self.image.detach().reshape(-1).clone()
                self.image.add_((d * (take * t)).view_as(self.image)).clamp_(*self.bounds)
                self._s = self.image.detach().reshape(-1) - before
            self._d, self._t = d, t

    def _projected(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The projected gradient of L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995, sec. 2): ``g``
        with the coordinates at a bound whose gradient points out of the box zeroed, and the
        ``0``/``1`` mask of the free coordinates (flat, like ``g``)."""
        assert self.bounds is not None
        x = self.image.detach().reshape(-1)
        low, high = self.bounds
        held = ((x <= low) & (g > 0)) | ((x >= high) & (g < 0))
        free = (~held).to(g.dtype)
        return g * free, free

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        """``-H g`` for the L-BFGS inverse Hessian ``H`` of the kept pairs (two-loop recursion)."""
        q = g.neg()
        al: list[torch.Tensor] = []
        for s, y, rho in reversed(self.pairs):  # newest first
            a = s.dot(q) * rho
            q.addcmul_(y, a, value=-1)
            al.append(a)
        r = q * self._h
        for (s, y, rho), a in zip(self.pairs, reversed(al)):  # oldest first
            r.addcmul_(s, a - y.dot(r) * rho)
        return r


class Adam:
    """``torch.optim.Adam`` on the image with the :class:`Optimizer` interface, clamping the
    image to ``[0, 1]`` after each step (Adam's steps do not shrink near a bound as L-BFGS's
    curvature does).

    Args:
        image: the leaf being optimized, updated in place.
        lr: learning rate, in pixel values per step at most (Adam's step is about ``lr``).
    """

    def __init__(self, image: torch.Tensor, *, lr: float) -> None:
        self.image = image
        self.optimizer = torch.optim.Adam([image], lr=lr)

    def step(self, evaluate: Evaluate, report: Report) -> None:
        """One evaluation, its report and one update (see :class:`Optimizer`); one host read."""
        self.image.grad = None
        with torch.enable_grad():
            values = evaluate().detach()
        report(host.to_host(values))
        self.optimizer.step()
        with torch.no_grad():
            self.image.clamp_(0.0, 1.0)

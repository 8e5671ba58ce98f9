"""What a stylization reports: one :class:`Iterate` per evaluation, the :class:`Stylized` result, and
the :class:`Recorder` that keeps the history and calls the progress callback; and when a run
stops early (:class:`Stopping`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch

from .plan import Level, Plan

#: The loss terms a run reports, in the order the objective returns them as a tensor: the
#: normalized terms before weighting, and the weighted sum minimized.
TERMS: tuple[str, ...] = ("content", "style", "tv", "total")


def named_terms(values: Sequence[float]) -> dict[str, float]:
    """``{term: value}`` of the values of :data:`TERMS`, in that order (as read to the host)."""
    if len(values) != len(TERMS):
        raise ValueError(f"expected {len(TERMS)} loss terms {TERMS}, got {len(values)}")
    return dict(zip(TERMS, values))


@dataclass(frozen=True)
class Iterate:
    """One evaluation of the objective, as passed to the progress callback.

    ``iteration`` counts the updates applied before this evaluation, across all levels: 0 is
    the initial image and ``iterations`` the returned one. ``losses`` holds the normalized terms
    before weighting (``content``, ``style``, ``tv``) and ``total``, the weighted sum minimized.
    ``level`` (0-based) of ``levels`` is the coarse-to-fine level being optimized.
    """

    iteration: int
    iterations: int
    losses: Mapping[str, float]
    level: int = 0
    levels: int = 1
    image: torch.Tensor | None = field(default=None, repr=False, compare=False)
    """The ``(1, 3, h, w)`` image this evaluation scored (the current level's size; with
    luminance-only colour control, its grey luminance). Passed to the callback for previews;
    not kept in the history. Read-only, and only during the callback: the optimizer updates it
    in place once the callback returns."""


@dataclass
class Stylized:
    """Result of :func:`stylize`."""

    image: torch.Tensor
    """``(1, 3, H, W)``, values in ``[0, 1]``, on the device the inputs were on."""
    iterations: int
    """Iterations run, all levels together."""
    losses: dict[str, float]
    """Loss terms of the returned image (see :class:`Iterate`); with luminance-only colour
    control, of its luminance, which is what was optimized."""
    history: list[Iterate] = field(default_factory=list)
    """One entry per iteration (1 to ``iterations``): the losses after that many updates; the
    last equals :attr:`losses`."""
    sizes: list[tuple[int, int]] = field(default_factory=list)
    """``(height, width)`` of each level run, coarse to fine."""
    stopped: str = "iterations"
    """Why the run ended: ``"iterations"`` (all iterations ran), ``"time_budget"``, ``"cancelled"``
    or ``"diverged"`` (a loss became NaN or infinite; the image is the best one before)."""
    cache_hits: int = 0
    cache_misses: int = 0
    """Style-cache lookups of this run (one per style image and level built), as its
    :class:`nst.cache.StyleTargets` counted them; 0 without one."""

    @property
    def cache(self) -> str | None:
        """``"hit"`` when every style target came from the cache, ``"miss"`` when any was
        computed, ``None`` when no cache was used."""
        if not (self.cache_hits or self.cache_misses):
            return None
        return "miss" if self.cache_misses else "hit"


class Recorder:
    """The history of a run (one :class:`Iterate` per iteration) and its progress callback."""

    def __init__(self, plan: Plan, callback: Callable[[Iterate], None] | None) -> None:
        self.iterations, self.levels, self.callback = plan.options.iterations, len(plan.levels), callback
        self.history: list[Iterate] = []
        self.done = 0
        """Iterations completed by the levels before the current one."""

    def report(self, k: int, losses: dict[str, float], scored: torch.Tensor, level: Level) -> None:
        """Losses after ``k`` updates of ``level``; ``k = 0`` (the level's start) goes only to
        the callback, and only at the first level (the run's initial image)."""
        it = Iterate(iteration=self.done + k, iterations=self.iterations, losses=losses, level=level.index, levels=self.levels)
        if k > 0:
            self.history.append(it)
        if self.callback is not None and (k > 0 or level.index == 0):
            self.callback(replace(it, image=scored.detach()))

    def restate_last(self, losses: dict[str, float]) -> None:
        """Replace the last entry by the losses of the returned (full-size) image (add it to
        a history still empty: a run that diverged at its first evaluation)."""
        last = Iterate(iteration=self.done, iterations=self.iterations, losses=losses, level=self.levels - 1,
                       levels=self.levels)
        if self.history:
            self.history[-1] = last
        else:
            self.history.append(last)


@dataclass
class Stopping:
    """When a run ends early: once its ``cancel`` event is set (from any thread), or at its
    deadline, before an iteration that would likely end after it (estimated from the level's
    iterations so far). A caller that may cancel a run makes one with its event and hands it
    to :func:`nst.stylize.stylize`, which starts its clock; one per run. ``reason`` is what
    :attr:`Stylized.stopped` reports (the loop sets ``"diverged"`` itself)."""

    cancel: threading.Event | None = None
    deadline: float | None = None
    """A ``time.monotonic()`` time, seconds; set by :meth:`start`."""
    reason: str = "iterations"

    def start(self, time_budget_s: float | None) -> None:
        """Start the clock of a run that may take ``time_budget_s`` seconds (``None``: no limit)."""
        self.deadline = None if time_budget_s is None else time.monotonic() + time_budget_s

    def now(self, started: float, completed: int) -> bool:
        """Whether to stop before the next iteration of a level that began at ``started``
        (``time.monotonic()``, seconds) and has completed ``completed`` iterations."""
        if self.cancel is not None and self.cancel.is_set():
            self.reason = "cancelled"
        elif self.deadline is not None:
            now = time.monotonic()
            per_iteration = (now - started) / completed if completed else 0.0
            if now + per_iteration > self.deadline:
                self.reason = "time_budget"
        return self.reason != "iterations"

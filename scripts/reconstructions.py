"""What the features keep, in the manner of Gatys et al. (2016), fig. 1: reconstructions from noise.

The first row: the content image reconstructed from one content layer each, ``relu1_2`` to
``relu5_2`` (``mode="reconstruct_content"``: coarse to fine from 32 px, total variation, pixels
bounded), with each one's PSNR against the photograph. The second row: the style image's
texture reconstructed from the Gram matrices of ``relu1_1``, then ``relu1_1..relu2_1``, up to
``relu1_1..relu5_1`` (``mode="reconstruct_style"``, one level). HED's trained VGG16
(``WEIGHTS=hed``); writes ``docs/quality/reconstructions.png`` and the PSNRs to
``docs/quality/reconstructions.json``.

    python scripts/reconstructions.py [--image-size 256] [--iterations 300]

About 6 minutes for the content row and 8 for the style row at 256 px on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "handler"))
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402
from gallery import contact_sheet, load  # noqa: E402
from nst.images import to_pil  # noqa: E402
from nst.stylize import StylizeOptions, stylize  # noqa: E402
from nst.weights import load_hed  # noqa: E402
from quality_study import EXAMPLES  # noqa: E402

CONTENT_LAYERS = ("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2")
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio, in dB, of two images with values in ``[0, 1]``."""
    return float(10 * torch.log10(1.0 / torch.mean((a - b) ** 2)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=256, help="long side, pixels")
    parser.add_argument("--iterations", type=int, default=300, help="L-BFGS iterations per reconstruction")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs/quality")
    args = parser.parse_args(argv)
    weights = load_hed()
    features = weights.features()
    content = load(EXAMPLES / "contents/tubingen.jpg", args.image_size)
    style = load(EXAMPLES / "styles/starry_night.jpg", args.image_size)
    tiles = [("content image: tubingen", to_pil(content))]
    figures: dict[str, dict[str, float]] = {"content": {}, "style": {}}
    for layer in CONTENT_LAYERS:
        start = time.perf_counter()
        options = StylizeOptions(mode="reconstruct_content", content_layers=(layer,), iterations=args.iterations)
        result = stylize(content, style, features, options)
        figures["content"][layer] = round(psnr(result.image, content), 2)
        tiles.append((f"content from {layer} | {figures['content'][layer]:.1f} dB PSNR | "
                      f"{time.perf_counter() - start:.0f} s", to_pil(result.image)))
        print(tiles[-1][0], flush=True)
    tiles.append(("style image: starry_night", to_pil(style)))
    for i in range(len(STYLE_LAYERS)):
        layers = STYLE_LAYERS[: i + 1]
        start = time.perf_counter()
        options = StylizeOptions(mode="reconstruct_style", style_layers=layers, iterations=args.iterations)
        result = stylize(content, style, features, options)
        name = layers[0] if len(layers) == 1 else f"{layers[0]}..{layers[-1]}"
        figures["style"][name] = round(result.losses["style"], 5)
        tiles.append((f"style from {name} | style loss {result.losses['style']:.4f} | "
                      f"{time.perf_counter() - start:.0f} s", to_pil(result.image)))
        print(tiles[-1][0], flush=True)
    title = (f"Reconstructions from noise (Gatys et al. 2016, fig. 1): {weights.label} weights, {args.image_size} px, "
             f"{args.iterations} L-BFGS iterations each; content coarse to fine from 32 px, total variation, pixels bounded")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet(tiles, columns=len(CONTENT_LAYERS) + 1, title=title, box=(args.image_size, args.image_size))
    sheet.save(args.out_dir / "reconstructions.png", optimize=True)
    (args.out_dir / "reconstructions.json").write_text(json.dumps(
        {"weights": weights.label, "image_size": args.image_size, "iterations": args.iterations,
         "content_psnr_db": figures["content"], "style_loss": figures["style"]}, indent=1) + "\n")
    print(f"wrote {args.out_dir / 'reconstructions.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

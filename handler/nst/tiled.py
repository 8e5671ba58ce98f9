"""The exact tiled objective: the full image's loss and gradient, computed tile by tile.

Memory is bounded by one tile's crop, not the image (:mod:`nst.tiling` says which crop makes a
tile's features exact). An evaluation makes two passes over the tiles:

1. Without gradients, each tile's interior features add their share to every style layer's
   Gram matrix (a Gram matrix is a mean over positions: Gatys et al. 2016, eq. 3). The style
   loss of the finished Grams, and its gradient with respect to them, ``dL/dG``, follow on
   ``(C, C)`` tensors.
2. With gradients, each tile's crop runs forward again; its interior features get the content
   term's share and the style term's ``dL/dF = (D + D^T) F / N`` for the now fixed
   ``D = dL/dG``, and one backward pass puts them into the crop's pixels.

The last tile of pass 1 runs with gradients and keeps its graph, so pass 2 starts with its
backward pass instead of running it forward again: one crop's forward pass fewer per
evaluation, and no more memory (pass 2 holds one crop's graph at a time anyway, and frees the
kept one before it computes the next). Without a gradient to compute (the losses alone), pass 1
takes the content term too and is the only pass.

The total-variation term is computed on the whole image (it is three channels deep). The sum
over tiles equals the untiled objective up to floating-point rounding (tests/engine/
test_tiled.py holds it to a relative error of 1e-4).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch

from .losses import ContentLoss, GramLoss, gram_share, guided_gram_share, region_weights, tv_loss
from .masks import resize_regions
from .tiling import Tile
from .vgg import FeatureExtractor, feature_size


def crop_features(extractor: FeatureExtractor, image: torch.Tensor, tile: Tile) -> dict[str, torch.Tensor]:
    """``{layer: (1, C, h, w)}``, the features of ``tile``'s interior: the forward pass of its
    crop of the ``(1, 3, H, W)`` ``image`` (values in ``[0, 1]``), trimmed; with an autograd
    graph where gradients are being recorded."""
    size = (image.shape[-2], image.shape[-1])
    rows, cols = tile.crop_slices()
    feats = extractor(image[..., rows, cols])
    return {name: f[(..., *tile.interior_of(name, size))] for name, f in feats.items()}


def tile_features(extractor: FeatureExtractor, image: torch.Tensor,
                  tiles: Sequence[Tile]) -> Iterator[tuple[Tile, dict[str, torch.Tensor]]]:
    """Each tile with its :func:`crop_features`, one tile at a time."""
    for tile in tiles:
        yield tile, crop_features(extractor, image, tile)


def assembled_features(extractor: FeatureExtractor, image: torch.Tensor,
                       tiles: Sequence[Tile] | None) -> dict[str, torch.Tensor]:
    """``{layer: (1, C, h, w)}`` features of the whole ``(1, 3, H, W)`` image, without
    gradients: one forward pass, or with ``tiles`` the tiles' interiors put together (peak
    memory one crop's activations plus the assembled layers)."""
    with torch.no_grad():
        if tiles is None:
            return extractor(image)
        size = (image.shape[-2], image.shape[-1])
        out: dict[str, torch.Tensor] = {}
        for tile, feats in tile_features(extractor, image, tiles):
            for name, f in feats.items():
                if name not in out:
                    out[name] = f.new_zeros((1, f.shape[1], *feature_size(size, name)))
                rows, cols = tile.owned(name, size)
                out[name][..., rows, cols] = f
        return out


def add_gram_shares(grams: dict[str, torch.Tensor], style: Mapping[str, GramLoss], tile: Tile,
                    feats: Mapping[str, torch.Tensor], size: tuple[int, int]) -> None:
    """Add ``tile``'s share of each style layer's whole-image Gram matrix (plain ``(1, C, C)`` or
    region-guided ``(R, C, C)``, as the layer's loss in ``style`` defines it) to ``grams``, in
    place and without gradients; ``feats`` are the tile's :func:`crop_features` of an image of
    ``size = (H, W)`` pixels."""
    with torch.no_grad():
        for name, loss in style.items():
            share = loss.partial_gram(feats[name], tile.owned(name, size), feature_size(size, name))
            grams[name] = share if name not in grams else grams[name].add_(share)


def evaluate_tiled(image: torch.Tensor, tiles: Sequence[Tile], *, style_extractor: FeatureExtractor,
                   extractor: FeatureExtractor, content: Mapping[str, ContentLoss], style: Mapping[str, GramLoss],
                   layer_weights: Mapping[str, float], weights: tuple[float, float, float],
                   backward: bool) -> tuple[torch.Tensor, dict[str, float]]:
    """The objective of :class:`nst.stylize._Targets` on ``image``, tile by tile (see the module).

    Args:
        image: ``(1, 3, H, W)``, values in ``[0, 1]``; a leaf that requires a gradient when
            ``backward`` (its ``.grad`` then receives the gradient, added to what is there).
        tiles: a partition of the image from :func:`nst.tiling.tile_grid` for every layer used.
        style_extractor: the style layers only (pass 1 stops at the deepest of them).
        extractor: the content and style layers (pass 2, the kept tile, the losses alone).
        content, style: each layer's loss module (targets at the whole image's size).
        layer_weights: each style layer's weight (summing to 1).
        weights: ``(content_weight, style_weight, tv_weight)``.
        backward: whether to compute the gradient (both passes) or only the losses (pass 1).

    Returns:
        The total loss (a 0-dim tensor, detached) and the terms as floats, as ``_Targets`` gives them.
    """
    cw, sw, tw = weights
    size = (image.shape[-2], image.shape[-1])

    def content_part(tile: Tile, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([loss.part(feats[n], tile.owned(n, size)) for n, loss in content.items()]).mean()

    # Pass 1. Without a gradient to compute, it also takes the content term, and is the only pass.
    grams: dict[str, torch.Tensor] = {}
    content_term = image.new_zeros(())
    kept: dict[str, torch.Tensor] | None = None  # the last tile's features, graph kept for pass 2
    for i, tile in enumerate(tiles):
        keep = backward and i == len(tiles) - 1
        with torch.set_grad_enabled(keep):
            feats = crop_features(style_extractor if backward and not keep else extractor, image, tile)
        add_gram_shares(grams, style, tile, feats, size)
        if not backward:
            content_term = content_term + content_part(tile, feats)
        kept = feats if keep else None
        del feats
    style_term = image.new_zeros(())
    d_grams: dict[str, torch.Tensor] = {}
    for name, loss in style.items():
        with torch.enable_grad():
            gram = grams[name].requires_grad_(True)
            term = layer_weights[name] * loss.of_gram(gram)
            if backward:
                (d_grams[name],) = torch.autograd.grad(term * sw, gram)
        style_term = style_term + term.detach()
    # Pass 2, the kept tile first (so that its graph is freed before another crop's is built).
    for tile in ([tiles[-1], *tiles[:-1]] if backward else []):
        if kept is None:
            feats = crop_features(extractor, image, tile)
        else:
            feats, kept = kept, None
        local = content_part(tile, feats)
        content_term = content_term + local.detach()
        outputs: list[torch.Tensor] = [local * cw]
        grads: list[torch.Tensor | None] = [None]
        for name, loss in style.items():
            owned, layer_size = tile.owned(name, size), feature_size(size, name)
            outputs.append(feats[name])
            grads.append(loss.partial_grad(feats[name].detach(), owned, layer_size, d_grams[name]))
        torch.autograd.backward(outputs, grads)
        del feats, local, outputs, grads  # before the next crop's forward pass
    with torch.set_grad_enabled(backward):
        tv_term = tv_loss(image)
        if backward:
            (tv_term * tw).backward()
    tv_term = tv_term.detach()
    total = cw * content_term + sw * style_term + tw * tv_term
    terms = {"content": content_term, "style": style_term, "tv": tv_term, "total": total}
    return total, {k: float(v) for k, v in terms.items()}


def image_grams(extractor: FeatureExtractor, image: torch.Tensor, tiles: Sequence[Tile],
                regions: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """``{layer: Gram}`` of a (style) image, from its tiles' shares without gradients: plain
    ``(1, C, C)`` (:func:`nst.losses.gram_matrix`), or with ``(R, 1, H, W)`` ``regions`` the
    region-guided ``(R, C, C)`` (:func:`nst.losses.guided_gram_matrix` with the regions
    resized to each layer), as the untiled computation gives them."""
    size = (image.shape[-2], image.shape[-1])
    masks = {} if regions is None else {n: resize_regions(regions, feature_size(size, n)) for n in extractor.layers}
    grams: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for tile, feats in tile_features(extractor, image, tiles):
            for name, f in feats.items():
                if regions is None:
                    share = gram_share(f, feature_size(size, name))
                else:
                    rows, cols = tile.owned(name, size)
                    share = guided_gram_share(f, masks[name][..., rows, cols], region_weights(masks[name]))
                grams[name] = share if name not in grams else grams[name].add_(share)
    return grams

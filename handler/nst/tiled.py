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

Where memory allows (:func:`nst.memory.plan_memory` counts it), the first ``kept_tails`` tiles of
pass 1 also keep a graph: the part of the network after :data:`TAIL_AFTER` runs with gradients
on the head's output, and pass 2 backpropagates through that kept tail into its input before
it runs only the head again, with gradients, and pushes that gradient on into the pixels. In
VGG19 up to ``relu5_1`` the tail is 74% of a forward pass's multiply-adds (62% of its time on
this project's CPU, 1024 x 592 px crop) and 34% of its activations, so each kept tail saves
most of a crop's second forward pass for a third of its memory.

Pass 2 gives autograd each layer's gradient as a whole crop's, zero outside the interior, in
the features' own memory format (``channels_last``), rather than backpropagating through the
interior's slice, whose backward makes a contiguous tensor that the next layer's gradient is
added to and the convolutions convert.

The total-variation term is computed on the whole image (it is three channels deep). The sum
over tiles equals the untiled objective up to floating-point rounding (tests/engine/
test_tiled.py holds it to a relative error of 1e-4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import torch

from .losses import ContentLoss, LossTerms, StyleTerm, gram_share, guided_gram_share, region_weights, tv_loss
from .masks import resize_regions
from .tiling import Tile
from .vgg import FeatureExtractor, feature_size, splits

#: The layer after which a kept tile's graph starts (blocks 3 to 5 of VGG: most of the
#: multiply-adds, at a quarter of the input's resolution and less).
TAIL_AFTER = "pool2"


def crop_features(extractor: FeatureExtractor, image: torch.Tensor, tile: Tile) -> dict[str, torch.Tensor]:
    """``{layer: (1, C, h, w)}``, the features of ``tile``'s interior: the forward pass of its
    crop of the ``(1, 3, H, W)`` ``image`` (values in ``[0, 1]``), trimmed; with an autograd
    graph where gradients are being recorded."""
    return _interiors(tile, _crop_forward(extractor, image, tile), (image.shape[-2], image.shape[-1]))


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


def add_statistics_shares(stats: dict[str, torch.Tensor], style: Mapping[str, StyleTerm], tile: Tile,
                          feats: Mapping[str, torch.Tensor], size: tuple[int, int]) -> None:
    """Add ``tile``'s share of each style layer's whole-image statistics (for the Gram losses,
    a plain ``(1, C, C)`` or region-guided ``(R, C, C)`` Gram matrix, as the layer's term in
    ``style`` defines it) to ``stats``, in place and without gradients; ``feats`` are the tile's
    :func:`crop_features` of an image of ``size = (H, W)`` pixels."""
    with torch.no_grad():
        for name, loss in style.items():
            share = loss.partial_statistics(feats[name], tile.owned(name, size), feature_size(size, name))
            stats[name] = share if name not in stats else stats[name].add_(share)


def evaluate_tiled(image: torch.Tensor, tiles: Sequence[Tile], terms: LossTerms, *, style_extractor: FeatureExtractor,
                   extractor: FeatureExtractor, backward: bool, kept_tails: int = 0) -> torch.Tensor:
    """The loss ``terms`` of ``image``, tile by tile (see the module): what
    :class:`nst.objective.Tiled` evaluates.

    Args:
        image: ``(1, 3, H, W)``, values in ``[0, 1]``; a leaf that requires a gradient when
            ``backward`` (its ``.grad`` then receives the gradient, added to what is there).
        tiles: a partition of the image from :func:`nst.tiling.tile_grid` for every layer used.
        style_extractor: the style layers only (pass 1 stops at the deepest of them).
        extractor: the content and style layers (pass 2, the kept tiles, the losses alone).
        terms: each layer's loss (targets at the whole image's size) and their weights.
        backward: whether to compute the gradient (both passes) or only the losses (pass 1).
        kept_tails: how many of the first tiles keep their graph after :data:`TAIL_AFTER`
            from pass 1 to pass 2 (at most ``len(tiles) - 1``; ignored where ``extractor``'s
            deepest layer is not after it): each saves that part's forward pass, and holds its
            activations until pass 2 reaches the tile (:func:`nst.memory.level_bytes`).

    Returns:
        The loss terms, a detached ``(4,)`` tensor on the image's device in the order of
        :data:`nst.records.TERMS` (the total last), as :meth:`nst.losses.LossTerms.combine`
        gives them (nothing is read back to the host).
    """
    content, style, layer_weights = terms.content, terms.style, terms.layer_weights
    cw, sw, tw = terms.weights
    size = (image.shape[-2], image.shape[-1])
    if not backward or not splits(extractor.net_layers, TAIL_AFTER):
        kept_tails = 0

    # Pass 1. Without a gradient to compute, it also takes the content term, and is the only pass.
    grams: dict[str, torch.Tensor] = {}
    content_term = image.new_zeros(())
    # Graphs kept for pass 2, of whole crops' features (untrimmed): the last tile's, and the
    # tails' with their inputs.
    last: dict[str, torch.Tensor] = {}
    tails: dict[int, tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}
    for i, tile in enumerate(tiles):
        if not backward:
            with torch.no_grad():
                feats = crop_features(extractor, image, tile)
            content_term = content_term + _content_part(content, tile, feats, size)
        elif i == len(tiles) - 1:
            with torch.enable_grad():
                last = _crop_forward(extractor, image, tile)
            feats = _interiors(tile, last, size)
        elif i < kept_tails:
            head, x, tail = _split_crop_forward(extractor, image, tile)
            tails[i] = (x, tail)
            feats = _interiors(tile, {**head, **tail}, size)
            del head
        else:
            with torch.no_grad():
                feats = crop_features(style_extractor, image, tile)
        add_statistics_shares(grams, style, tile, feats, size)
        del feats
    style_term = image.new_zeros(())
    d_grams: dict[str, torch.Tensor] = {}
    for name, loss in style.items():
        with torch.enable_grad():
            gram = grams[name].requires_grad_(True)
            term = layer_weights[name] * loss.of_statistics(gram)
            if backward:
                (d_grams[name],) = torch.autograd.grad(term * sw, gram)
        style_term = style_term + term.detach()

    def push(tile: Tile, crop: Mapping[str, torch.Tensor], *into: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Backpropagate, from the ``crop``'s features, the content term's share and the
        style term's for the fixed ``dL/dG`` at the tile's interior (and each further
        ``(output, its gradient)``); the content share, detached. Each layer's gradient is
        written into a zero tensor of its crop's shape and memory format (``channels_last``)
        rather than through a slice, whose backward would give autograd a contiguous one to
        add to the next layer's and convert for the convolutions (measured: 1.9 s of copies in
        a 24 s iteration at 1024 px)."""
        outputs, grads = [o for o, _ in into], [g for _, g in into]
        interiors = _interiors(tile, {name: f.detach() for name, f in crop.items()}, size)
        for name, f in crop.items():
            inside, owned = (..., *tile.interior_of(name, size)), tile.owned(name, size)
            grad = torch.zeros_like(f)
            if name in style:
                grad[inside] = style[name].partial_grad(interiors[name], owned, feature_size(size, name), d_grams[name])
            if name in content:
                grad[inside] += content[name].part_grad(interiors[name], owned) * (cw / len(content))
            outputs.append(f)
            grads.append(grad)
        torch.autograd.backward(outputs, grads)
        return _content_part(content, tile, interiors, size)

    # Pass 2: the last tile first, then the tiles with kept tails, each freed before another
    # crop's graph is built.
    for i in ([len(tiles) - 1, *range(len(tiles) - 1)] if backward else []):
        tile = tiles[i]
        if i == len(tiles) - 1:
            crop, last = last, {}
            content_term = content_term + push(tile, crop)
        elif i in tails:
            x, crop = tails.pop(i)
            content_term = content_term + push(tile, crop)  # into the tail's input, x.grad
            del crop
            rows, cols = tile.crop_slices()
            with torch.enable_grad():
                crop, out = extractor.head(image[..., rows, cols], TAIL_AFTER)
            assert x.grad is not None
            content_term = content_term + push(tile, crop, (out, x.grad))
            del out, x
        else:
            with torch.enable_grad():
                crop = _crop_forward(extractor, image, tile)
            content_term = content_term + push(tile, crop)
        del crop
    with torch.set_grad_enabled(backward):
        tv_term = tv_loss(image)
        if backward:
            (tv_term * tw).backward()
    return terms.combine(content_term, style_term, tv_term.detach())[1]


def _content_part(content: Mapping[str, ContentLoss], tile: Tile, feats: Mapping[str, torch.Tensor],
                  size: tuple[int, int]) -> torch.Tensor:
    """``tile``'s share of the content term (the mean of the content layers' losses) from its
    trimmed ``feats``: the share of the content layers among them (a kept tail's head and tail
    each hold some), a 0-dim tensor."""
    parts = [loss.part(feats[n], tile.owned(n, size)) for n, loss in content.items() if n in feats]
    if not parts:
        return next(iter(feats.values())).new_zeros(())
    return torch.stack(parts).sum() / len(content)


def _interiors(tile: Tile, feats: Mapping[str, torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """``feats`` of ``tile``'s crop trimmed to its interior (:meth:`nst.tiling.Tile.interior_of`)."""
    return {name: f[(..., *tile.interior_of(name, size))] for name, f in feats.items()}


def _crop_forward(extractor: FeatureExtractor, image: torch.Tensor, tile: Tile) -> dict[str, torch.Tensor]:
    """``{layer: (1, C, h, w)}`` of ``tile``'s whole crop (untrimmed)."""
    rows, cols = tile.crop_slices()
    return extractor(image[..., rows, cols])


def _split_crop_forward(extractor: FeatureExtractor, image: torch.Tensor, tile: Tile
                        ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`_crop_forward` up to :data:`TAIL_AFTER` without gradients and after it with a
    graph: the head's features, the tail's input (a leaf requiring a gradient) and the tail's
    features."""
    rows, cols = tile.crop_slices()
    with torch.no_grad():
        head, x = extractor.head(image[..., rows, cols], TAIL_AFTER)
    x.requires_grad_(True)
    with torch.enable_grad():
        tail = extractor.tail(x, TAIL_AFTER)
    return head, x, tail


def image_grams(extractor: FeatureExtractor, image: torch.Tensor, tiles: Sequence[Tile],
                regions: torch.Tensor | None,
                prepare: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """``{layer: Gram}`` of a (style) image, from its tiles' shares without gradients: plain
    ``(1, C, C)`` (:func:`nst.losses.gram_matrix`), or with ``(R, 1, H, W)`` ``regions`` the
    region-guided ``(R, C, C)`` (:func:`nst.losses.guided_gram_matrix` with the regions
    resized to each layer), as the untiled computation gives them. ``prepare`` maps each
    layer's features first (:func:`nst.wasserstein.with_ones`: augmented second moments)."""
    size = (image.shape[-2], image.shape[-1])
    masks = {} if regions is None else {n: resize_regions(regions, feature_size(size, n)) for n in extractor.layers}
    grams: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for tile, feats in tile_features(extractor, image, tiles):
            for name, f in feats.items():
                f = f if prepare is None else prepare(f)
                if regions is None:
                    share = gram_share(f, feature_size(size, name))
                else:
                    rows, cols = tile.owned(name, size)
                    share = guided_gram_share(f, masks[name][..., rows, cols], region_weights(masks[name]))
                grams[name] = share if name not in grams else grams[name].add_(share)
    return grams

"""VGG19 feature extractor addressed by layer name.

The layer names follow the convention of Gatys et al. (2016) and jcjohnson/neural-style:
``conv{block}_{n}``, ``relu{block}_{n}`` and ``pool{block}``, in the order torchvision's
``vgg19().features`` defines them (``features[0]`` is ``conv1_1``, ``features[36]`` is ``pool5``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.models import vgg19

# Convolutions per block in VGG19 (configuration "E" of Simonyan & Zisserman, 2015, table 1).
_VGG19_BLOCKS = (2, 2, 4, 4, 4)


def _layer_names() -> tuple[str, ...]:
    names: list[str] = []
    for block, convs in enumerate(_VGG19_BLOCKS, start=1):
        for n in range(1, convs + 1):
            names += [f"conv{block}_{n}", f"relu{block}_{n}"]
        names.append(f"pool{block}")
    return tuple(names)


#: All 37 layer names of ``vgg19().features``, index ``i`` naming ``features[i]``.
VGG19_LAYERS: tuple[str, ...] = _layer_names()
LAYER_INDEX: Mapping[str, int] = {name: i for i, name in enumerate(VGG19_LAYERS)}

#: Gatys et al. (2016), sec. 3: content at ``conv4_2`` (we take its ReLU), style at the first
#: ReLU of every block.
DEFAULT_CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

POOLINGS: tuple[str, ...] = ("max", "avg")

#: Channel statistics of ImageNet, which torchvision's VGG19 weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_layer_names(names: Iterable[str]) -> tuple[str, ...]:
    """Return ``names`` as a tuple, checking each against :data:`VGG19_LAYERS`.

    Raises:
        ValueError: a name is not a VGG19 layer; the message lists the valid names.
    """
    names = tuple(names)
    unknown = [n for n in names if n not in LAYER_INDEX]
    if unknown:
        raise ValueError(f"unknown VGG19 layer(s) {unknown}; valid names: {', '.join(VGG19_LAYERS)}")
    return names


def build_vgg19_features(state_dict: Mapping[str, torch.Tensor] | None = None) -> nn.Sequential:
    """Build torchvision's ``vgg19().features`` and load ``state_dict`` into it.

    Args:
        state_dict: keys as in ``vgg19().features.state_dict()`` (``"0.weight"`` ... ``"34.bias"``);
            ``None`` keeps torchvision's random initialization (seed it with ``torch.manual_seed``).

    Returns:
        The 37-layer ``nn.Sequential`` in eval mode, with no parameter requiring a gradient and
        every ReLU made out-of-place (an in-place ReLU would overwrite a ``conv*`` feature that
        a loss has already captured), and its convolution weights in ``channels_last`` memory
        format, as :class:`FeatureExtractor` feeds its activations.

    Raises:
        RuntimeError: ``state_dict`` has missing or unexpected keys or wrong shapes.
    """
    if state_dict is None:
        features = vgg19(weights=None).features
    else:
        # Build on the meta device: skips allocating and initializing the 120M-parameter
        # classifier that vgg19() makes and we drop (about 0.5 GB and seconds of CPU).
        with torch.device("meta"):
            features = vgg19(weights=None).features
        features = features.to_empty(device="cpu")
        features.load_state_dict(state_dict)
    for i, layer in enumerate(features):
        if isinstance(layer, nn.ReLU):
            features[i] = nn.ReLU(inplace=False)
    features.eval().requires_grad_(False)
    # NHWC weights (FeatureExtractor feeds NHWC activations): 1.27x faster convolutions on
    # this project's CPU (oneDNN), see benchmarks/RESULTS.md. Values are unchanged.
    return features.to(memory_format=torch.channels_last)


def min_side(layers: Iterable[str]) -> int:
    """Smallest image side, in pixels, for which the deepest of ``layers`` is at least 1x1.

    Every VGG19 pool halves the size (rounding down), so it is 2 to the number of pools up to
    and including the deepest layer. ``min_side(DEFAULT_STYLE_LAYERS)`` is 16.

    Raises:
        ValueError: an unknown layer name.
    """
    deepest = max(check_layer_names(layers), key=LAYER_INDEX.__getitem__)
    return 2 ** _pools_through(deepest)


def _pools_through(layer: str) -> int:
    return sum(1 for n in VGG19_LAYERS[: LAYER_INDEX[layer] + 1] if n.startswith("pool"))


def feature_size(size: tuple[int, int], layer: str) -> tuple[int, int]:
    """``(h, w)`` of ``layer``'s feature maps for an image of ``size = (H, W)`` pixels: every
    2x2, stride-2 pool up to and including ``layer`` halves both sides, rounding down."""
    pools = _pools_through(layer)
    return size[0] >> pools, size[1] >> pools


class FeatureExtractor(nn.Module):
    """VGG19 features at named layers, cut after the deepest layer in use.

    ImageNet normalization happens inside, so callers pass RGB images with values in ``[0, 1]``.

    Args:
        features: the full ``vgg19().features`` from :func:`build_vgg19_features`; its modules are
            shared, not copied, so several extractors over one network cost no memory.
        layers: the layer names whose outputs :meth:`forward` returns.
        pooling: ``"max"`` (torchvision's network) or ``"avg"`` (every max-pool swapped for a
            2x2 average pool of the same stride, as Gatys et al. 2016 do).
        checkpointing: gradient checkpointing (Chen et al. 2016, "Training Deep Nets with
            Sublinear Memory Cost"): when a gradient is being recorded, only the returned
            layers' outputs are kept for the backward pass, and the layers between them run
            again during it. Same values and gradients; at 2048 px, about 30% more time per
            L-BFGS iteration for 30% less peak memory (see ``benchmarks/RESULTS.md``).

    Raises:
        ValueError: an unknown layer name, no layer at all, or an unknown pooling.

    Example:
        >>> ex = FeatureExtractor(build_vgg19_features(), ["relu1_1", "relu4_2"])
        >>> {k: tuple(v.shape) for k, v in ex(torch.rand(1, 3, 64, 64)).items()}
        {'relu1_1': (1, 64, 64, 64), 'relu4_2': (1, 512, 8, 8)}
    """

    # Non-persistent buffers (declared here so that type checkers see tensors, not nn.Module's __getattr__).
    mean: torch.Tensor  # (1, 3, 1, 1) ImageNet channel means
    std: torch.Tensor  # (1, 3, 1, 1) ImageNet channel standard deviations

    def __init__(self, features: nn.Sequential, layers: Iterable[str], pooling: str = "max",
                 checkpointing: bool = False) -> None:
        super().__init__()
        self.checkpointing = checkpointing
        self.layers = check_layer_names(layers)
        if not self.layers:
            raise ValueError("FeatureExtractor needs at least one layer")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        deepest = max(LAYER_INDEX[n] for n in self.layers)
        self.net = features[: deepest + 1]
        if pooling == "avg":
            # Gatys et al. (2016), sec. 2: "replacing the max-pooling operation by average
            # pooling improves the gradient flow and one obtains slightly more appealing results".
            self.net = nn.Sequential(*(
                nn.AvgPool2d(kernel_size=2, stride=2) if isinstance(m, nn.MaxPool2d) else m for m in self.net
            ))
        self._names = VGG19_LAYERS[: deepest + 1]
        self._wanted = frozenset(self.layers)
        self.min_side = min_side(self.layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``{layer name: (B, C_l, H_l, W_l)}`` for ``image`` of shape ``(B, 3, H, W)`` in ``[0, 1]``.

        The features are stored ``channels_last`` (NHWC; see :func:`build_vgg19_features`);
        their shapes and values are those of the NCHW computation.

        Raises:
            ValueError: ``image`` is not ``(B, 3, H, W)`` or a side is below :attr:`min_side` pixels.
        """
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an image of shape (B, 3, H, W), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        if min(h, w) < self.min_side:
            raise ValueError(
                f"image is {w}x{h} pixels, but layer {self._names[-1]} needs both sides to be at "
                f"least {self.min_side} pixels"
            )
        x = ((image - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        out: dict[str, torch.Tensor] = {}
        if self.checkpointing and torch.is_grad_enabled() and image.requires_grad:
            # One checkpointed segment per returned layer: from after the previous one to it.
            start = 0
            for end, name in enumerate(self._names):
                if name in self._wanted:
                    x = checkpoint(self.net[start: end + 1], x, use_reentrant=False)
                    out[name] = x
                    start = end + 1
            return out
        for name, layer in zip(self._names, self.net):
            x = layer(x)
            if name in self._wanted:
                out[name] = x
        return out

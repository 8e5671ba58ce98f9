"""VGG16 and VGG19 feature extractors addressed by layer name, for weights of either input convention.

The layer names follow the convention of Gatys et al. (2016) and jcjohnson/neural-style:
``conv{block}_{n}``, ``relu{block}_{n}`` and ``pool{block}``, in the order torchvision's
``vgg16().features`` / ``vgg19().features`` define them (in VGG19, ``features[0]`` is ``conv1_1``
and ``features[36]`` is ``pool5``). VGG16 has every name of VGG19 but ``conv3_4``, ``conv4_4``
and ``conv5_4`` (and their ReLUs), at other indices.

Weights expect one of two input conventions (:data:`INPUT_CONVENTIONS`): torchvision's (RGB in
``[0, 1]`` standardized by ImageNet's channel statistics) or Caffe's (BGR in ``[0, 255]`` minus
the VGG mean pixel, as the original VGG release, HED and neural-style-pt's converted files do).
The extractor applies the convention its weights were recorded with; callers always pass RGB
in ``[0, 1]``.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cache
from itertools import islice
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.models import vgg16, vgg19

from .precision import DEFAULT_PRECISION, autocast_dtype

#: Convolutions per block: configurations "D" (VGG16) and "E" (VGG19) of Simonyan & Zisserman,
#: "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015, table 1.
NETWORKS: Mapping[str, tuple[int, ...]] = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
DEFAULT_NETWORK = "vgg19"
_BUILDERS = {"vgg16": vgg16, "vgg19": vgg19}


@cache  # checked for every request's layer parameters
def layer_names(network: str) -> tuple[str, ...]:
    """All layer names of ``network``'s ``features``, index ``i`` naming ``features[i]``:
    37 for ``"vgg19"``, 31 for ``"vgg16"``.

    Raises:
        ValueError: an unknown network.
    """
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {tuple(NETWORKS)}, got {network!r}")
    names: list[str] = []
    for block, convs in enumerate(NETWORKS[network], start=1):
        for n in range(1, convs + 1):
            names += [f"conv{block}_{n}", f"relu{block}_{n}"]
        names.append(f"pool{block}")
    return tuple(names)


#: All 37 layer names of ``vgg19().features``, index ``i`` naming ``features[i]``; every
#: network's names are among them.
VGG19_LAYERS: tuple[str, ...] = layer_names("vgg19")
VGG16_LAYERS: tuple[str, ...] = layer_names("vgg16")
LAYER_INDEX: Mapping[str, int] = {name: i for i, name in enumerate(VGG19_LAYERS)}
"""Index of each VGG19 layer in ``vgg19().features``."""

#: Gatys et al. (2016), sec. 3: content at ``conv4_2`` (we take its ReLU), style at the first
#: ReLU of every block. Both networks have these layers.
DEFAULT_CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

POOLINGS: tuple[str, ...] = ("max", "avg")
#: How conv1_1 pads the image (:class:`FeatureExtractor`).
PADDINGS: tuple[str, ...] = ("zeros", "replicate", "reflect")

#: Channel statistics of ImageNet, which torchvision's VGG weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The VGG mean pixel, in BGR order and 0-255 units (Simonyan & Zisserman's Caffe release).
VGG_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class InputConvention:
    """How weights expect an image: ``net_input[c] = image[channels[c]] * scale - shift[c]``
    for an RGB ``image`` in ``[0, 1]``."""

    name: str
    channels: tuple[int, int, int]
    """Which RGB channel feeds each input channel: ``(0, 1, 2)`` RGB, ``(2, 1, 0)`` BGR."""
    scale: tuple[float, float, float]
    shift: tuple[float, float, float]
    description: str


#: The two conventions that VGG weights in the wild expect, by name.
INPUT_CONVENTIONS: Mapping[str, InputConvention] = {
    c.name: c for c in (
        InputConvention(
            "torchvision", (0, 1, 2),
            tuple(1.0 / s for s in IMAGENET_STD),  # type: ignore[arg-type]
            tuple(m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)),  # type: ignore[arg-type]
            "RGB in [0, 1], minus ImageNet's channel means, divided by its standard deviations",
        ),
        InputConvention(
            "caffe", (2, 1, 0), (255.0, 255.0, 255.0), VGG_MEAN_BGR,
            "BGR in [0, 255], minus the VGG mean pixel (103.939, 116.779, 123.68)",
        ),
    )
}


def check_input_convention(name: str) -> InputConvention:
    """Return the :class:`InputConvention` called ``name``.

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    if name not in INPUT_CONVENTIONS:
        raise ValueError(f"input convention must be one of {tuple(INPUT_CONVENTIONS)}, got {name!r}")
    return INPUT_CONVENTIONS[name]


def check_layer_names(names: Iterable[str], network: str | None = None) -> tuple[str, ...]:
    """Return ``names`` as a tuple, checking each against ``network``'s layers (``None``: any
    network's, that is :data:`VGG19_LAYERS`).

    Raises:
        ValueError: a name is not a layer of the network; the message lists the valid names.
    """
    names = tuple(names)
    valid = VGG19_LAYERS if network is None else layer_names(network)
    unknown = [n for n in names if n not in valid]
    if unknown:
        which = "VGG" if network is None else network.upper()
        raise ValueError(f"unknown {which} layer(s) {unknown}; valid names: {', '.join(valid)}")
    return names


class VGGFeatures(nn.Sequential):
    """The ``features`` stack of torchvision's ``vgg16()`` or ``vgg19()``, with what using it
    takes: the network's layer names and the input convention its weights expect.

    Build it with :func:`build_features`. Indexing an int gives a layer; a slice gives a plain
    ``nn.Sequential`` (a prefix of the network is not a network).
    """

    def __init__(self, layers: Iterable[nn.Module], *, network: str, input_convention: str) -> None:
        super().__init__(*layers)
        self.network = network
        self.layer_names = layer_names(network)
        self.layer_index: Mapping[str, int] = {n: i for i, n in enumerate(self.layer_names)}
        self.input_convention = check_input_convention(input_convention)
        if len(self) != len(self.layer_names):
            raise ValueError(f"{network} features have {len(self.layer_names)} layers, got {len(self)}")

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, slice):
            return nn.Sequential(OrderedDict(list(self._modules.items())[idx]))
        return super().__getitem__(idx)

    def check_layer_names(self, names: Iterable[str]) -> tuple[str, ...]:
        """:func:`check_layer_names` against this network's layers."""
        return check_layer_names(names, self.network)


def build_features(state_dict: Mapping[str, torch.Tensor] | None = None, *, network: str = DEFAULT_NETWORK,
                   input_convention: str = "torchvision") -> VGGFeatures:
    """Build torchvision's ``vgg16().features`` or ``vgg19().features`` and load ``state_dict`` into it.

    Args:
        state_dict: keys as in ``vgg19().features.state_dict()`` (``"0.weight"`` ... ``"34.bias"``;
            ``"28.bias"`` last for VGG16); ``None`` keeps torchvision's random initialization
            (seed it with ``torch.manual_seed``).
        network: ``"vgg16"`` or ``"vgg19"`` (:data:`NETWORKS`).
        input_convention: what the weights expect, a key of :data:`INPUT_CONVENTIONS`.

    Returns:
        A :class:`VGGFeatures` (31 or 37 layers) in eval mode, with no parameter requiring a
        gradient and every ReLU made out-of-place (an in-place ReLU would overwrite a ``conv*``
        feature that a loss has already captured), and its convolution weights in
        ``channels_last`` memory format, as :class:`FeatureExtractor` feeds its activations.

    Raises:
        ValueError: an unknown network or input convention.
        RuntimeError: ``state_dict`` has missing or unexpected keys or wrong shapes.
    """
    layer_names(network)  # validates the name
    check_input_convention(input_convention)
    if state_dict is None:
        stack = _BUILDERS[network](weights=None).features
    else:
        # Build on the meta device: skips allocating and initializing the 120M-parameter
        # classifier that vgg19() makes and we drop (about 0.5 GB and seconds of CPU).
        with torch.device("meta"):
            stack = _BUILDERS[network](weights=None).features
        stack = stack.to_empty(device="cpu")
        stack.load_state_dict(state_dict)
    layers = [nn.ReLU(inplace=False) if isinstance(m, nn.ReLU) else m for m in stack]
    features = VGGFeatures(layers, network=network, input_convention=input_convention)
    features.eval().requires_grad_(False)
    # NHWC weights (FeatureExtractor feeds NHWC activations): 1.27x faster convolutions on
    # this project's CPU (oneDNN), see benchmarks/RESULTS.md. Values are unchanged.
    return features.to(memory_format=torch.channels_last)


def build_vgg19_features(state_dict: Mapping[str, torch.Tensor] | None = None) -> VGGFeatures:
    """:func:`build_features` for torchvision's VGG19 (``network="vgg19"``, torchvision's input convention)."""
    return build_features(state_dict, network="vgg19", input_convention="torchvision")


def min_side(layers: Iterable[str]) -> int:
    """Smallest image side, in pixels, for which the deepest of ``layers`` is at least 1x1.

    Every VGG pool halves the size (rounding down), so it is 2 to the number of pools up to
    and including the deepest layer (the same in VGG16 and VGG19). ``min_side(DEFAULT_STYLE_LAYERS)`` is 16.

    Raises:
        ValueError: an unknown layer name.
    """
    deepest = max(check_layer_names(layers), key=LAYER_INDEX.__getitem__)
    return 2 ** _pools_through(deepest)


def splits(net_layers: tuple[str, ...], layer: str) -> bool:
    """Whether a network of ``net_layers`` splits after ``layer`` into a head and a tail that
    is not empty: ``layer`` is one of them, before the deepest."""
    return layer in net_layers[:-1]


def _pools_through(layer: str) -> int:
    """Pools up to and including ``layer``: those of the blocks before it, and its own if it is one."""
    block = int(layer.removeprefix("pool").removeprefix("conv").removeprefix("relu")[0])
    return block if layer.startswith("pool") else block - 1


def feature_size(size: tuple[int, int], layer: str) -> tuple[int, int]:
    """``(h, w)`` of ``layer``'s feature maps for an image of ``size = (H, W)`` pixels: every
    2x2, stride-2 pool up to and including ``layer`` halves both sides, rounding down."""
    pools = _pools_through(layer)
    return size[0] >> pools, size[1] >> pools


class FeatureExtractor(nn.Module):
    """VGG features at named layers, cut after the deepest layer in use.

    The weights' input convention is applied inside, so callers pass RGB images with values in
    ``[0, 1]`` whatever the weights.

    Args:
        features: a whole network from :func:`build_features`; its modules are shared, not
            copied, so several extractors over one network cost no memory.
        layers: the layer names whose outputs :meth:`forward` returns.
        pooling: ``"max"`` (torchvision's network) or ``"avg"`` (every max-pool swapped for a
            2x2 average pool of the same stride, as Gatys et al. 2016 do).
        checkpointing: gradient checkpointing (Chen et al. 2016, "Training Deep Nets with
            Sublinear Memory Cost"): when a gradient is being recorded, only the returned
            layers' outputs are kept for the backward pass, and the layers between them run
            again during it. Same values and gradients; at 2048 px, about 30% more time per
            L-BFGS iteration for 30% less peak memory (see ``benchmarks/RESULTS.md``).
        padding: how ``conv1_1`` pads the image: ``"zeros"`` (the network's own), or
            ``"replicate"`` / ``"reflect"`` (:data:`PADDINGS`; fewer dark edge artifacts, as
            crowsonkb/style-transfer-pytorch pads it).
        precision: the arithmetic of the network's passes (:mod:`nst.precision`); with
            ``"bf16"`` the network runs under ``torch.autocast`` and the returned features are
            cast back to float32.

    Raises:
        ValueError: a layer name the network lacks (the message lists its layers), no layer
            at all, or an unknown pooling.

    Example:
        >>> ex = FeatureExtractor(build_vgg19_features(), ["relu1_1", "relu4_2"])
        >>> {k: tuple(v.shape) for k, v in ex(torch.rand(1, 3, 64, 64)).items()}
        {'relu1_1': (1, 64, 64, 64), 'relu4_2': (1, 512, 8, 8)}
    """

    # Non-persistent buffers (declared here so that type checkers see tensors, not nn.Module's __getattr__).
    scale: torch.Tensor  # (1, 3, 1, 1) of the input convention
    shift: torch.Tensor  # (1, 3, 1, 1) of the input convention

    def __init__(self, features: VGGFeatures, layers: Iterable[str], pooling: str = "max",
                 checkpointing: bool = False, precision: str = DEFAULT_PRECISION, padding: str = "zeros") -> None:
        super().__init__()
        self.checkpointing = checkpointing
        self.autocast = autocast_dtype(precision)
        self.layers = features.check_layer_names(layers)
        if not self.layers:
            raise ValueError("FeatureExtractor needs at least one layer")
        if pooling not in POOLINGS or padding not in PADDINGS:
            raise ValueError(f"pooling must be one of {POOLINGS} and padding of {PADDINGS}, got {pooling!r}, {padding!r}")
        deepest = max(features.layer_index[n] for n in self.layers)
        self.net = features[: deepest + 1]
        if pooling == "avg":
            # Gatys et al. (2016), sec. 2: "replacing the max-pooling operation by average
            # pooling improves the gradient flow and one obtains slightly more appealing results".
            self.net = nn.Sequential(*(
                nn.AvgPool2d(kernel_size=2, stride=2) if isinstance(m, nn.MaxPool2d) else m for m in self.net
            ))
        if padding != "zeros":  # conv1_1 pads the image by copying its edge (the weights are shared)
            first = copy.copy(self.net[0])
            first.padding_mode = padding
            self.net = nn.Sequential(first, *self.net[1:])
        self.net_layers: tuple[str, ...] = features.layer_names[: deepest + 1]
        """Names of the layers it runs, ``features``' first to the deepest returned."""
        self._wanted = frozenset(self.layers)
        self.min_side = min_side(self.layers)
        convention = features.input_convention
        self.channels = None if convention.channels == (0, 1, 2) else list(convention.channels)
        # On the weights' device: an extractor is made per level, after the network was moved.
        device = next(features.parameters()).device
        self.register_buffer("scale", torch.tensor(convention.scale, device=device).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(convention.shift, device=device).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``{layer name: (B, C_l, H_l, W_l)}`` for ``image`` of shape ``(B, 3, H, W)`` in ``[0, 1]``.

        The features are stored ``channels_last`` (NHWC; see :func:`build_features`);
        their shapes and values are those of the NCHW computation.

        Raises:
            ValueError: ``image`` is not ``(B, 3, H, W)`` or a side is below :attr:`min_side` pixels.
        """
        x = self._network_input(image)
        if self.checkpointing and torch.is_grad_enabled() and image.requires_grad:
            # One checkpointed segment per returned layer: from after the previous one to it.
            out: dict[str, torch.Tensor] = {}
            start = 0
            with self._arithmetic(x):
                for end, name in enumerate(self.net_layers):
                    if name in self._wanted:
                        x = checkpoint(self.net[start: end + 1], x, use_reentrant=False)
                        out[name] = x
                        start = end + 1
            return self._float(out)
        return self._run(x, 0, len(self.net_layers))[1]

    def head(self, image: torch.Tensor, last: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The network up to and including layer ``last``: the returned layers among those, and
        ``last``'s output (the input of :meth:`tail`), without checkpointing.

        Args:
            image: as for :meth:`forward`.
            last: a layer before this extractor's deepest.

        Raises:
            ValueError: as :meth:`forward`, or ``last`` is not a layer before the deepest.
        """
        x, out = self._run(self._network_input(image), 0, self._split(last))
        return out, x

    def tail(self, x: torch.Tensor, after: str) -> dict[str, torch.Tensor]:
        """The network after layer ``after`` on ``x``, that layer's output (from :meth:`head`):
        the returned layers among the rest, without checkpointing.

        Raises:
            ValueError: ``after`` is not a layer before the deepest.
        """
        return self._run(x, self._split(after), len(self.net_layers))[1]

    def _split(self, layer: str) -> int:
        """Index of the first layer after ``layer``, which must be before the deepest."""
        if not splits(self.net_layers, layer):
            raise ValueError(f"{layer!r} is not a layer before {self.net_layers[-1]}, this extractor's deepest")
        return self.net_layers.index(layer) + 1

    def _network_input(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` in the weights' input convention, ``channels_last``; checks its shape."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an image of shape (B, 3, H, W), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        if min(h, w) < self.min_side:
            raise ValueError(
                f"image is {w}x{h} pixels, but layer {self.net_layers[-1]} needs both sides to be at "
                f"least {self.min_side} pixels"
            )
        x = image if self.channels is None else image[:, self.channels]  # RGB -> BGR for Caffe's weights
        return (x * self.scale - self.shift).contiguous(memory_format=torch.channels_last)

    def _run(self, x: torch.Tensor, start: int, end: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Layers ``start`` to ``end - 1`` on ``x``: the last one's output and the returned
        layers' outputs among them."""
        out: dict[str, torch.Tensor] = {}
        with self._arithmetic(x):
            for name, layer in islice(zip(self.net_layers, self.net), start, end):
                x = layer(x)
                if name in self._wanted:
                    out[name] = x
        return x, self._float(out)

    def _arithmetic(self, x: torch.Tensor) -> AbstractContextManager[Any]:
        """The autocast of :attr:`autocast` on ``x``'s device, or nothing."""
        return nullcontext() if self.autocast is None else torch.autocast(x.device.type, dtype=self.autocast)

    def _float(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The returned features in float32 (for the Gram matrices and losses), as they are without autocast."""
        return out if self.autocast is None else {name: f.float() for name, f in out.items()}

"""Neural style transfer engine (Gatys et al. 2016) in pure PyTorch.

Importable and testable without TorchServe: ``nst.vgg`` (VGG16/VGG19 features by layer name),
``nst.losses`` (Gram matrix, content/style/TV losses), ``nst.stylize`` (L-BFGS over the pixels),
``nst.images`` (decode/resize/encode), ``nst.weights`` (where the weights come from; ``nst.hed``
fetches and converts HED's) and ``nst.api`` (the JSON request's parameters and validation).
"""

from .stylize import Iterate, Stylized, StylizeOptions, stylize
from .vgg import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    VGG19_LAYERS,
    FeatureExtractor,
    VGGFeatures,
    build_features,
    build_vgg19_features,
)

__all__ = [
    "DEFAULT_CONTENT_LAYERS",
    "DEFAULT_STYLE_LAYERS",
    "VGG19_LAYERS",
    "FeatureExtractor",
    "Iterate",
    "StylizeOptions",
    "Stylized",
    "VGGFeatures",
    "build_features",
    "build_vgg19_features",
    "stylize",
]

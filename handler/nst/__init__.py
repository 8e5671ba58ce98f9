"""Neural style transfer engine (Gatys et al. 2016) in pure PyTorch; knows tensors, options and plans.

Importable and testable without TorchServe or HTTP: ``nst.options`` (every option, declared once,
and its rules), ``nst.plan`` (the coarse-to-fine levels of a run, checked against the images'
sizes), ``nst.objective`` (a level's loss: whole image or tiled), ``nst.stylize`` (L-BFGS or
Adam over the pixels, executing a plan), ``nst.records`` (what a run reports), ``nst.losses``
(Gram matrix, content/style/TV losses), ``nst.vgg`` (VGG16/VGG19 features by layer name),
``nst.color``, ``nst.masks`` and ``nst.cache`` (the controls' helpers), ``nst.images``
(decode/resize/encode) and ``nst.weights`` (where the weights come from; ``nst.hed`` fetches and
converts HED's). The HTTP contract is ``nst_http``'s; serving a worker is ``nst_service``'s.
"""

from .options import StylizeOptions
from .records import Iterate, Stylized
from .stylize import stylize
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

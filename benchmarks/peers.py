"""Faithful re-implementations of two peers' recipes, for the side-by-side benchmark.

Both use the same VGG weights and inputs as our engine (and the input convention those weights
expect: the paper's were Caffe's, the tutorial's torchvision's) and run for a fixed wall time;
the benchmark then scores every result with one yardstick (our objective at default settings).
The layer names below are VGG19's and VGG16's alike.

* :func:`tutorial_recipe`: the PyTorch tutorial ``neural_style_tutorial`` (A. Jacq, W. Ma):
  conv layers named by count (content ``conv_4``, style ``conv_1`` .. ``conv_5``), the network cut
  after ``conv_5``, Gram matrices divided by ``a*b*c*d``, ``mse_loss`` terms, style weight 1e6,
  content weight 1, ``torch.optim.LBFGS`` with its defaults (20 evaluations per ``step``), the
  image clamped to ``[0, 1]`` inside the closure, starting from the content image.
* :func:`gatys_recipe`: the paper (Gatys et al. 2016, sec. 2-3): content ``relu4_2``, style
  ``relu1_1`` .. ``relu5_1`` equally weighted, un-normalized losses (eq. 1: half the sum of
  squared errors; eq. 4: ``1 / (4 N^2 M^2)`` times the squared Gram error), ``alpha / beta =
  1e-3``, white-noise start, L-BFGS with a line search (the paper used SciPy's L-BFGS-B; here
  torch's with ``strong_wolfe``).

Each returns ``(image, evaluations)``: the ``(1, 3, H, W)`` result in ``[0, 1]`` and how many
forward + backward passes it made.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "handler"))

from nst.images import initial_image
from nst.vgg import FeatureExtractor, VGGFeatures

# The tutorial's conv_1 .. conv_5 are VGG19's first five convolutions.
TUTORIAL_CONTENT = ("conv2_2",)  # conv_4
TUTORIAL_STYLE = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1")  # conv_1 .. conv_5
GATYS_CONTENT = ("relu4_2",)
GATYS_STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def _run_lbfgs(image: torch.Tensor, closure_fn, seconds: float, **lbfgs_kwargs) -> int:
    """Call ``LBFGS.step`` until ``seconds`` have passed; stops inside a step at the deadline.
    Returns the number of closure evaluations."""
    optimizer = torch.optim.LBFGS([image], **lbfgs_kwargs)
    evaluations = 0
    deadline = time.perf_counter() + seconds

    class _Done(Exception):
        pass

    def closure() -> torch.Tensor:
        nonlocal evaluations
        if time.perf_counter() >= deadline:
            raise _Done
        evaluations += 1
        return closure_fn(optimizer)

    try:
        while True:
            optimizer.step(closure)
    except _Done:
        pass
    return evaluations


def _tutorial_gram(x: torch.Tensor) -> torch.Tensor:
    a, b, c, d = x.size()
    f = x.view(a * b, c * d)
    return torch.mm(f, f.t()).div(a * b * c * d)


def tutorial_recipe(content: torch.Tensor, style: torch.Tensor, features: VGGFeatures,
                    seconds: float) -> tuple[torch.Tensor, int]:
    """The PyTorch tutorial's recipe for ``seconds`` of wall time (see the module docstring)."""
    extractor = FeatureExtractor(features, TUTORIAL_CONTENT + TUTORIAL_STYLE)
    with torch.no_grad():
        content_t = {n: extractor(content)[n] for n in TUTORIAL_CONTENT}
        style_t = {n: _tutorial_gram(extractor(style)[n]) for n in TUTORIAL_STYLE}
    image = content.clone().requires_grad_(True)

    def closure_fn(optimizer: torch.optim.Optimizer) -> torch.Tensor:
        with torch.no_grad():
            image.clamp_(0, 1)
        optimizer.zero_grad()
        feats = extractor(image)
        zero = image.new_zeros(())  # the sums start from a tensor 0, as the tutorial's do from 0
        style_score = sum((F.mse_loss(_tutorial_gram(feats[n]), style_t[n]) for n in TUTORIAL_STYLE), zero) * 1e6
        content_score = sum((F.mse_loss(feats[n], content_t[n]) for n in TUTORIAL_CONTENT), zero) * 1.0
        loss = style_score + content_score
        loss.backward()
        return loss

    evaluations = _run_lbfgs(image, closure_fn, seconds)
    return image.detach().clamp(0, 1), evaluations


def gatys_recipe(content: torch.Tensor, style: torch.Tensor, features: VGGFeatures,
                 seconds: float, seed: int = 0) -> tuple[torch.Tensor, int]:
    """Gatys et al. (2016) as published, for ``seconds`` of wall time (see the module docstring)."""
    extractor = FeatureExtractor(features, GATYS_CONTENT + GATYS_STYLE)
    with torch.no_grad():
        content_t = {n: extractor(content)[n] for n in GATYS_CONTENT}
        style_f = extractor(style)
        style_t = {n: _raw_gram(style_f[n]) for n in GATYS_STYLE}
    image = initial_image(content, "noise", seed).requires_grad_(True)
    alpha, beta = 1.0, 1e3  # alpha / beta = 1e-3 (sec. 3, fig. 3)

    def closure_fn(optimizer: torch.optim.Optimizer) -> torch.Tensor:
        optimizer.zero_grad()
        feats = extractor(image)
        content_loss = sum(0.5 * (feats[n] - content_t[n]).square().sum() for n in GATYS_CONTENT)  # eq. 1
        style_loss = 0.0
        for n in GATYS_STYLE:
            _, c, h, w = feats[n].shape
            error = (_raw_gram(feats[n]) - style_t[n]).square().sum() / (4 * c**2 * (h * w) ** 2)  # eq. 4
            style_loss = style_loss + error / len(GATYS_STYLE)  # eq. 5, equal layer weights
        loss = alpha * content_loss + beta * style_loss  # eq. 7
        loss.backward()
        return loss

    evaluations = _run_lbfgs(image, closure_fn, seconds, line_search_fn="strong_wolfe")
    return image.detach().clamp(0, 1), evaluations


def _raw_gram(x: torch.Tensor) -> torch.Tensor:
    """Gatys et al. (2016), eq. 3: ``G_ij = sum_k F_ik F_jk``, shape ``(C, C)``."""
    f = x.reshape(x.shape[1], -1)
    return f @ f.t()

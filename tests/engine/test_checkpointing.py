"""Gradient checkpointing: the same values and gradients, fewer activations kept for backward."""

from __future__ import annotations

import importlib

import pytest
import torch
from engine.objective_helpers import record_objectives
from nst.stylize import StylizeOptions, stylize
from nst.vgg import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, FeatureExtractor, VGGFeatures

memory_module = importlib.import_module("nst.memory")
LAYERS = DEFAULT_CONTENT_LAYERS + DEFAULT_STYLE_LAYERS


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for the backward pass while ``fn()`` runs."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def test_same_features_and_gradient_with_and_without_checkpointing(features: VGGFeatures) -> None:
    image = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(0), requires_grad=True)
    results = []
    for checkpointing in (False, True):
        out = FeatureExtractor(features, LAYERS, checkpointing=checkpointing)(image)
        loss = sum((f.square().mean() for f in out.values()), torch.tensor(0.0))
        (grad,) = torch.autograd.grad(loss, image)
        results.append(({k: v.detach() for k, v in out.items()}, grad))
    (plain, plain_grad), (ckpt, ckpt_grad) = results
    for name in LAYERS:
        assert torch.equal(plain[name], ckpt[name])
    assert torch.allclose(plain_grad, ckpt_grad, rtol=1e-5, atol=1e-8)


def test_checkpointing_keeps_only_the_loss_layers_for_backward(features: VGGFeatures) -> None:
    image = torch.rand(1, 3, 64, 64, requires_grad=True)
    plain = saved_bytes(lambda: FeatureExtractor(features, LAYERS)(image))
    ckpt = saved_bytes(lambda: FeatureExtractor(features, LAYERS, checkpointing=True)(image))
    assert ckpt < plain / 4, (ckpt, plain)


def test_no_checkpointing_without_a_gradient(features: VGGFeatures) -> None:
    image = torch.rand(1, 3, 32, 32)  # no requires_grad: targets are computed this way
    with torch.no_grad():
        assert saved_bytes(lambda: FeatureExtractor(features, LAYERS, checkpointing=True)(image)) == 0


@pytest.mark.parametrize("option, pixels_limit, expected", [
    (None, 10**9, False),  # auto, small level: off
    (None, 32 * 32 - 1, True),  # auto, level above the limit: on
    (True, 10**9, True),
    (False, 0, False),
])
def test_auto_turns_checkpointing_on_above_the_pixel_limit(features, load_image, monkeypatch, option,
                                                           pixels_limit, expected) -> None:
    made = record_objectives(monkeypatch)
    monkeypatch.setattr(memory_module, "CHECKPOINT_PIXELS", pixels_limit)
    content = load_image("tubingen_64x64.png", 32)
    result = stylize(content, content, features, StylizeOptions(iterations=2, gradient_checkpointing=option))
    assert [t.objective.extractor.checkpointing for t in made] == [expected]
    assert result.iterations == 2

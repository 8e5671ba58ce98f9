"""Placement: every tensor the engine makes follows the device of the weights (issue 23).

No GPU here, so two stand-ins that fail where CUDA would:

- the ``meta`` device, on which an operation given a CPU tensor of one or more dimensions
  raises ("Tensor on device cpu is not on the expected device meta!"), as CUDA does. Meta
  tensors hold no values, so the one host read of the loop (:func:`nst.host.to_host`) is
  replaced by one that returns as many zeros as there are elements.
- PyTorch's ``FakeTensorMode``, which accepts ``device="cuda"`` without a GPU and raises on a
  device mismatch exactly as CUDA does (0-dim CPU tensors allowed).

On the engine before issue 23 the feature extractor's input-convention buffers stayed on the
CPU, and every test here failed at the first VGG pass.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from engine.objective_helpers import level_objective
from nst.options import COLOR_CONTROLS, StylizeOptions, normalized
from nst.records import TERMS
from nst.stylize import stylize
from nst.vgg import VGGFeatures
from nst_http.budget import measure_speed
from torch._subclasses.fake_tensor import FakeTensorMode

META = torch.device("meta")
#: Two style layers keep the meta runs cheap (no values, but every module still runs).
SHALLOW: dict[str, Any] = {"style_layers": ("relu1_1", "relu2_1"), "content_layers": ("relu2_2",)}


@pytest.fixture(scope="module")
def meta_features(features: VGGFeatures) -> VGGFeatures:
    return copy.deepcopy(features).to(META)


def meta_image(h: int, w: int) -> torch.Tensor:
    return torch.empty(1, 3, h, w, device=META)


def regions(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Two regions, left and right halves: ``(2, 1, h, w)`` on ``device``."""
    left = torch.zeros(1, 1, h, w, device=device)
    left[..., : w // 2] = 1.0
    return torch.cat([left, 1 - left])


CASES: dict[str, dict[str, Any]] = {
    "whole": {},
    "tiled": {"tile": 32},
    "tiled, tails kept": {"tile": 32, "kept_tails": 1},
    "checkpointed": {"checkpointing": True},
}


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "masks"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_objective_and_its_gradient_stay_on_the_weights_device(meta_features: VGGFeatures, case: str,
                                                                    masked: bool) -> None:
    opts = StylizeOptions(**SHALLOW).effective()
    content, styles = meta_image(64, 48), [meta_image(40, 40), meta_image(48, 32)]
    content_regions = regions(64, 48, META) if masked else None
    style_regions = [regions(40, 40, META), regions(48, 32, META)] if masked else None
    targets = level_objective(meta_features, opts, content, styles, normalized([1.0, 3.0]), content_regions,
                              style_regions, **CASES[case])
    image = meta_image(64, 48).requires_grad_(True)
    terms = targets.evaluate(image)
    assert terms.device == META and terms.shape == (len(TERMS),)
    assert image.grad is not None and image.grad.device == META and image.grad.shape == image.shape


@pytest.mark.usefixtures("meta_reads")
@pytest.mark.parametrize("color_control", COLOR_CONTROLS)
@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_a_run_stays_on_the_weights_device(meta_features: VGGFeatures, color_control: str, optimizer: str) -> None:
    """Targets, the start image, the optimizer's state and the colour controls (the
    histogram match runs on the device too), two levels and two blended styles."""
    opts = StylizeOptions(**SHALLOW, iterations=3, scales=(32, 64), optimizer=optimizer, lbfgs_history=2,
                          color_control=color_control, init="noise", style_blend_weights=(1.0, 2.0))
    result = stylize(meta_image(64, 48), [meta_image(40, 40), meta_image(32, 48)], meta_features, opts)
    assert result.image.device == META and result.image.shape == (1, 3, 64, 48)
    assert result.iterations == 3 and len(result.history) == 3


@pytest.mark.usefixtures("meta_reads")
def test_the_start_up_speed_run_stays_on_the_weights_device(meta_features: VGGFeatures) -> None:
    curve, seconds, work = measure_speed(meta_features, META)
    assert seconds >= 0 and work > 0


@pytest.fixture()
def fake_cuda(features: VGGFeatures) -> Iterator[VGGFeatures]:
    """The random VGG19 features with their parameters on a fake ``cuda:0``, inside a
    ``FakeTensorMode`` (``Module.to`` cannot swap fake parameters in, so they are set one by one)."""
    fake, mode = copy.deepcopy(features), FakeTensorMode()
    for module in fake.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            real = param.detach()
            with mode:
                on_cuda = mode.from_tensor(real).to("cuda:0", memory_format=torch.preserve_format)
            module._parameters[name] = torch.nn.Parameter(on_cuda, requires_grad=False)
    with mode:
        yield fake


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
@pytest.mark.parametrize("case", ["whole", "tiled, tails kept"])
def test_the_targets_and_losses_run_on_a_fake_cuda_device(fake_cuda: VGGFeatures, case: str, precision: str) -> None:
    opts = StylizeOptions(**SHALLOW, precision=precision).effective()
    cuda = torch.device("cuda:0")
    content, style = torch.empty(1, 3, 64, 48, device=cuda), torch.empty(1, 3, 40, 40, device=cuda)
    targets = level_objective(fake_cuda, opts, content, [style], **CASES[case])
    with torch.no_grad():  # autograd's engine needs a real CUDA context: the meta tests cover the gradient
        terms = targets.terms(torch.empty(1, 3, 64, 48, device=cuda))
    assert terms.device.type == "cuda" and terms.shape == (len(TERMS),)


def test_a_cpu_buffer_on_the_fake_cuda_device_is_caught(fake_cuda: VGGFeatures) -> None:
    """The stand-in catches the fault this file guards against: a CPU tensor in a CUDA op."""
    cpu_scale = torch.ones(1, 3, 1, 1)
    with pytest.raises(RuntimeError, match="device"):
        torch.empty(1, 3, 8, 8, device="cuda:0") * cpu_scale

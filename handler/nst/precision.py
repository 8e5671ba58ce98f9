"""The arithmetic of the network's passes: the request parameter ``precision``.

A GPU can run the VGG passes, which are nearly all of an iteration's work, in three ways:

- ``"fp32"``: IEEE float32 convolutions and matrix products (TF32 off), the reference.
- ``"tf32"`` (the default): TensorFloat-32 tensor cores (NVIDIA Ampere and newer) for
  convolutions and matrix products: float32 range, a 10-bit mantissa in the products, float32
  sums. PyTorch already runs convolutions so by default; matrix products (the Gram matrices)
  it runs in strict float32 unless told.
- ``"bf16"``: the network's forward pass under ``torch.autocast`` with bfloat16 (8-bit
  mantissa); the features are cast back to float32 before the Gram matrices and the losses, and
  the image, its gradient and the optimizer stay float32.

On a CPU ``"fp32"`` and ``"tf32"`` compute the same; ``"bf16"`` runs there too, for
comparison only (it is slower on most CPUs). How far each moves the picture is measured in
``docs/serving.md``, "GPUs".

The switches for TF32 and cuDNN's autotuner are process-wide: :func:`numerics` sets them for
one run and restores them after (a worker runs one job at a time).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16")
DEFAULT_PRECISION = "tf32"


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype the network's forward pass autocasts to under ``precision``; ``None``: float32.

    Raises:
        ValueError: an unknown precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return torch.bfloat16 if precision == "bf16" else None


@contextmanager
def numerics(precision: str, *, fixed_shapes: bool = False) -> Iterator[None]:
    """Within: TF32 for convolutions and matrix products on or off as ``precision`` says
    (``"fp32"``: off; ``"tf32"`` and ``"bf16"``: on, the float32 parts in TF32), and cuDNN's
    autotuner (``torch.backends.cudnn.benchmark``) on when ``fixed_shapes`` (a whole-image
    level: hundreds of passes of one shape repay its search for each new shape; tiles of
    several shapes would each pay it). Restored on exit.

    Raises:
        ValueError: an unknown precision.
    """
    autocast_dtype(precision)  # validates
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark
    cudnn.allow_tf32 = matmul.allow_tf32 = precision != "fp32"
    cudnn.benchmark = fixed_shapes
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark = saved

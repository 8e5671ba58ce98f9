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
from nst import hed, weights
from nst.weights import WeightsUnavailableError
from torchvision.models import VGG16_Weights, VGG19_Weights, vgg16, vgg19

CLOSED_PROXY = "http://127.0.0.1:9"  # the discard port; nothing listens, so a connection fails at once
IMAGENET_FILE = Path(VGG19_Weights.IMAGENET1K_V1.url).name


def full_vgg_state(features_state: dict[str, torch.Tensor], builder=vgg19) -> dict[str, torch.Tensor]:
    """A complete ``vgg19().state_dict()`` (``features.N.*`` and ``classifier.N.*``) around
    ``features_state`` (``builder=vgg16`` for VGG16's). The classifier is zeros expanded from one
    element, so the 120M-parameter layers cost a few bytes on disk and nothing to initialize."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in builder(weights=None).state_dict().items()}
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
    w = weights.resolve("random", seed=0)
    assert (w.source, w.label, w.origin, w.network, w.input_convention) == (
        "random", "random-seed-0", "0", "vgg19", "torchvision")
    state = dict(w.state)
    assert_same_state(state, random_state)
    assert len(state) == 32 and state["0.weight"].shape == (64, 3, 3, 3)
    other = weights.make_random(1)
    assert (other.label, other.origin) == ("random-seed-1", "1")
    assert not torch.equal(other.state["0.weight"], state["0.weight"])
    assert not torch.equal(other.state["34.weight"], state["34.weight"])


def test_make_random_vgg16_is_labelled_with_its_network() -> None:
    w = weights.resolve("random", seed=0, network="vgg16")
    assert (w.label, w.network, w.input_convention) == ("random-seed-0-vgg16", "vgg16", "torchvision")
    assert len(w.state) == 26 and "28.weight" in w.state and "34.weight" not in w.state
    assert "plumbing tests only" in w.credit


# --- save / provenance ---------------------------------------------------------------------------

def test_save_writes_weights_and_provenance(random_state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    out = tmp_path / "store" / "nested"  # created on demand
    prov = weights.save(weights.make_random(0), out)
    pth, meta = out / weights.WEIGHTS_FILE, out / weights.PROVENANCE_FILE
    assert pth.is_file() and meta.is_file()
    on_disk = json.loads(meta.read_text())
    assert on_disk["sha256"] == weights.sha256_of(pth) == prov.sha256
    assert len(prov.sha256) == 64
    assert on_disk == {"source": "random", "label": "random-seed-0", "network": "vgg19",
                       "input_convention": "torchvision", "sha256": prov.sha256,
                       "torchvision": prov.torchvision, "torch": torch.__version__, "origin": "0",
                       "credit": weights.SOURCES["random"].credit}
    assert weights.read_provenance(meta) == prov
    assert_same_state(torch.load(pth, weights_only=True), random_state)


def test_provenance_without_network_and_convention_is_refused(tmp_path: Path) -> None:
    """An archive built before the network and input convention were recorded is not guessed at."""
    old = tmp_path / weights.PROVENANCE_FILE
    old.write_text(json.dumps({"source": "random", "label": "random-seed-0", "sha256": "0" * 64,
                               "torchvision": "0", "torch": "0", "origin": "0"}))
    with pytest.raises(ValueError, match="rebuild the weights and the archive"):
        weights.read_provenance(old)


def test_sha256_of(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert weights.sha256_of(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# --- local files ---------------------------------------------------------------------------------

def test_load_file_full_torchvision_state_dict(random_state, tmp_path: Path) -> None:
    path = tmp_path / "vgg19-full.pth"
    torch.save(full_vgg_state(random_state), path)
    w = weights.load_file(path, input_convention="torchvision")
    assert_same_state(dict(w.state), random_state)  # classifier dropped, "features." stripped
    assert w.label == f"file:{weights.sha256_of(path)[:12]}"
    assert w.origin == str(path.resolve())
    assert (w.network, w.input_convention) == ("vgg19", "torchvision")
    w2 = weights.resolve(str(path), input_convention="torchvision")
    assert (w2.source, w2.label) == ("file", w.label)


def test_load_file_features_only(random_state, tmp_path: Path) -> None:
    path = tmp_path / "features.pth"
    torch.save(random_state, path)
    w = weights.load_file(path, input_convention="caffe")
    assert_same_state(dict(w.state), random_state)
    assert w.label.startswith("file:") and len(w.label) == len("file:") + 12
    assert w.input_convention == "caffe"


def test_file_of_unknown_origin_needs_its_input_convention(random_state, tmp_path: Path) -> None:
    path = tmp_path / "vgg19-mine.pth"
    torch.save(random_state, path)
    with pytest.raises(WeightsUnavailableError, match="INPUT=torchvision .* or INPUT=caffe"):
        weights.load_file(path)
    with pytest.raises(WeightsUnavailableError, match="input convention must be one of"):
        weights.load_file(path, input_convention="bgr")
    with pytest.raises(WeightsUnavailableError, match="holds VGG19 weights, not VGG16"):
        weights.load_file(path, input_convention="caffe", network="vgg16")


def test_known_files_have_their_convention_and_refuse_another(random_state, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # A file is known by the first 8 hex digits of its sha256 (torch hub's file naming).
    path = tmp_path / "vgg19-d01eb7cb.pth"
    torch.save(random_state, path)
    prefix = weights.sha256_of(path)[:8]
    monkeypatch.setitem(weights.KNOWN_FILES, prefix, ("vgg19", "caffe"))  # type: ignore[index]
    assert weights.load_file(path).input_convention == "caffe"
    assert weights.load_file(path, input_convention="caffe").input_convention == "caffe"
    with pytest.raises(WeightsUnavailableError, match="expect 'caffe' input, not 'torchvision'"):
        weights.load_file(path, input_convention="torchvision")


def test_vgg16_file_is_read_as_vgg16(tmp_path: Path) -> None:
    path = tmp_path / "vgg16.pth"
    torch.save(dict(weights.make_random(3, "vgg16").state), path)
    assert weights.load_file(path, input_convention="torchvision").network == "vgg16"


def test_named_sources_fix_their_network_and_convention() -> None:
    with pytest.raises(WeightsUnavailableError, match="WEIGHTS=hed has input convention 'caffe', not 'torchvision'"):
        weights.resolve("hed", input_convention="torchvision")
    with pytest.raises(WeightsUnavailableError, match="WEIGHTS=imagenet has network 'vgg19', not 'vgg16'"):
        weights.resolve("imagenet", network="vgg16")


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
    with pytest.raises(WeightsUnavailableError, match="not a torchvision VGG16/VGG19 state dict"):
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
    assert not (out_dir / weights.WEIGHTS_FILE).exists()
    assert not (out_dir / weights.PROVENANCE_FILE).exists()


# --- ImageNet, cached --------------------------------------------------------------------------

def test_imagenet_uses_the_cached_file(offline: Path, random_state, capsys: pytest.CaptureFixture) -> None:
    # torch.hub.load_state_dict_from_url downloads only when $TORCH_HOME/hub/checkpoints/<file>
    # is missing, and checks the hash prefix only of a download: a cached file is loaded as is.
    cached = offline / "hub" / "checkpoints" / IMAGENET_FILE
    cached.parent.mkdir(parents=True)
    torch.save(full_vgg_state(random_state), cached)
    w = weights.resolve("imagenet")
    assert (w.source, w.label, w.origin) == ("imagenet", "imagenet1k_v1", VGG19_Weights.IMAGENET1K_V1.url)
    assert (w.network, w.input_convention) == ("vgg19", "torchvision")
    assert_same_state(dict(w.state), random_state)
    assert "Downloading" not in capsys.readouterr().out


def test_imagenet_vgg16_uses_the_cached_file(offline: Path) -> None:
    cached = offline / "hub" / "checkpoints" / Path(VGG16_Weights.IMAGENET1K_V1.url).name
    cached.parent.mkdir(parents=True)
    features = dict(weights.make_random(0, "vgg16").state)
    torch.save(full_vgg_state(features, builder=vgg16), cached)
    w = weights.resolve("imagenet-vgg16")
    assert (w.source, w.label, w.network, w.input_convention) == (
        "imagenet-vgg16", "imagenet1k_v1-vgg16", "vgg16", "torchvision")
    assert_same_state(dict(w.state), features)


# --- the demo's fallback -------------------------------------------------------------------------

def test_weights_cli_falls_back_to_hed_only_when_asked(hed_wheel: Path, offline: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    """``make demo``'s path: the ImageNet download fails, one line says so, HED is saved (the CLI's
    ``main`` in this process; ``test_weights_cli_offline_exits_2`` runs the module as a program)."""
    monkeypatch.setenv("NST_CACHE_DIR", str(hed_wheel.parent))
    out_dir = tmp_path / "out"
    assert weights.main(["--weights", "imagenet", "--out-dir", str(out_dir), "--fallback", "hed"]) == 0
    out, err = capsys.readouterr()
    notes = [line for line in err.splitlines() if "using WEIGHTS=hed instead" in line]
    assert len(notes) == 1 and notes[0].startswith("could not download the ImageNet weights")
    assert "hed-bsds500-vgg16" in out
    prov = weights.read_provenance(out_dir / weights.PROVENANCE_FILE)
    assert (prov.source, prov.label, prov.network, prov.input_convention) == ("hed", "hed-bsds500-vgg16", "vgg16", "caffe")
    # Without --fallback (make archive's default) the same failure is an error.
    assert weights.main(["--weights", "imagenet", "--out-dir", str(tmp_path / "strict")]) == 2
    assert "WEIGHTS=hed" in capsys.readouterr().err


# --- the records and the README's table ----------------------------------------------------------

def _readme_weights_table(root: Path) -> dict[str, list[str]]:
    """The README's ``WEIGHTS=`` table: the first cell's name (a path row: ``file``) -> its cells."""
    lines = (root / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| `WEIGHTS=` |"))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        name = cells[0].split("`")[1]
        rows[weights.FILE if "/" in name else name] = cells
    return rows


def test_the_readme_table_is_the_sources_records(root_dir: Path) -> None:
    """One row per source, with its record's network, input convention and label (the label's
    instance part, a seed or a digest, as the row shows it)."""
    rows = _readme_weights_table(root_dir)
    assert set(rows) == set(weights.SOURCES)
    for name, source in weights.SOURCES.items():
        kind, label = rows[name][1], rows[name][-1]
        if source.network is not None:
            assert kind.startswith(source.network.upper()), (name, kind)
        if source.input_convention is not None:
            assert source.input_convention in kind.lower(), (name, kind)
        assert label.strip("`").startswith(source.label.split("<")[0]), (name, label)
    assert "sha256" in rows[weights.HED][2] and weights.SOURCES[weights.HED].checksum == hed.HED_WHEEL_SHA256


def test_loaded_weights_carry_their_source_s_record(random_state, tmp_path: Path) -> None:
    random = weights.make_random(3, "vgg16")
    record = weights.SOURCES[weights.RANDOM]
    assert (random.source, random.credit, random.input_convention) == (record.name, record.credit, "torchvision")
    path = tmp_path / "vgg19-features.pth"
    torch.save(random_state, path)
    local = weights.load_file(path, input_convention="caffe")
    assert (local.source, local.credit) == (weights.FILE, weights.SOURCES[weights.FILE].credit)
    assert local.label.startswith("file:") and local.network == "vgg19"

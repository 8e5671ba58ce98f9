"""A real TorchServe (Java frontend + Python worker) on private loopback ports, for the end-to-end
and reliability tests (``tests/conftest.py`` makes its fixtures visible to every test).

The model archive is built by the same `make archive` a user runs, with seeded random weights,
into a temporary model store. The server gets its own config (the repository's
config.properties with private ports and paths), its own working directory (so its
key_file.json is private), and its own TMPDIR (so its pid file never meets another server's).
``running_server`` starts such a server from any config.properties with extra settings (the
KServe envelope tests use deploy/kserve's); the session ``server`` fixture is one of those.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from nst_client import StyleTransferClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from wait_ready import wait_ready  # noqa: E402

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Server:
    """How to reach the server under test."""

    url: str
    management_url: str
    metrics_url: str
    key_file: Path
    workdir: Path
    logs: Path


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _config(store: Path, ports: list[int], base: Path = ROOT / "config.properties",
            extra: Mapping[str, str] | None = None) -> str:
    """``base`` (the repository's config.properties) with private addresses, ports and model
    store, then ``extra`` settings (which win)."""
    inference, management, metrics, grpc_inf, grpc_mgmt, worker = ports
    overrides = {
        "inference_address": f"http://127.0.0.1:{inference}",
        "management_address": f"http://127.0.0.1:{management}",
        "metrics_address": f"http://127.0.0.1:{metrics}",
        "grpc_inference_port": str(grpc_inf),
        "grpc_management_port": str(grpc_mgmt),
        "initial_worker_port": str(worker),
        "model_store": str(store),
        "metrics_config": str(ROOT / "handler" / "metrics.yaml"),
        **(extra or {}),
    }
    lines = []
    for line in base.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key not in overrides:
            lines.append(line)
    lines += [f"{k}={v}" for k, v in overrides.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store holding nst.mar built by `make archive WEIGHTS=random`."""
    store = tmp_path_factory.mktemp("model_store")
    subprocess.run(
        ["make", "--no-print-directory", "-s", "archive", "WEIGHTS=random", f"MODEL_STORE={store}"],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
    )
    assert (store / "nst.mar").is_file()
    return store


@pytest.fixture(scope="session")
def kserve_layout(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make kserve-layout`` from the session's nst.mar: config/ and model-store/, as KServe's
    TorchServe runtime mounts them."""
    layout = tmp_path_factory.mktemp("kserve_layout")
    subprocess.run(["make", "--no-print-directory", "-s", "kserve-layout", f"MODEL_STORE={model_store}",
                    f"KSERVE_LAYOUT={layout}"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return layout


@contextmanager
def running_server(model_store: Path, workdir: Path, *, base_config: Path = ROOT / "config.properties",
                   extra: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """Start TorchServe in ``workdir``, wait until model ``nst`` is READY, yield, then stop it.

    Args:
        model_store: folder holding nst.mar.
        workdir: an empty folder: the server's working directory (its key_file.json), logs and TMPDIR.
        base_config: the config.properties to start from; addresses, ports, the model store and
            the metrics config are replaced by private ones (see ``_config``).
        extra: further config.properties settings, e.g. ``{"service_envelope": "kserve"}``.
        env: further environment variables for TorchServe (``TS_*`` ones override the config
            when it sets ``enable_envvars_config=true``).

    Fails the test (``pytest.fail``) when Java is missing or the model is not READY in 180 s.
    """
    if shutil.which("java") is None:
        pytest.fail("Java 17 is needed for the end-to-end tests (apt-get install openjdk-17-jre-headless)")
    private_tmp = workdir / "tmp"
    private_tmp.mkdir()
    ports = _free_ports(6)
    (workdir / "config.properties").write_text(_config(model_store, ports, base_config, extra))
    full_env = {
        **os.environ,
        "TMPDIR": str(private_tmp),
        "LOG_LOCATION": str(workdir / "logs"),
        "METRICS_LOCATION": str(workdir / "logs"),
        "PYTHONPATH": "",
        **(env or {}),
    }
    full_env.pop("TS_CONFIG_FILE", None)
    cmd = [str(BIN / "torchserve"), "--ts-config", "config.properties", "--ncs"]
    with (workdir / "torchserve.out").open("wb") as out:
        subprocess.run([*cmd, "--start"], cwd=workdir, env=full_env, stdout=out, stderr=subprocess.STDOUT, check=True)
    srv = Server(
        url=f"http://127.0.0.1:{ports[0]}",
        management_url=f"http://127.0.0.1:{ports[1]}",
        metrics_url=f"http://127.0.0.1:{ports[2]}",
        key_file=workdir / "key_file.json",
        workdir=workdir,
        logs=workdir / "logs",
    )
    try:
        try:
            wait_ready(srv.management_url, "nst", srv.key_file, timeout=180)
        except TimeoutError as exc:
            logs = [srv.workdir / "torchserve.out", srv.logs / "model_log.log", srv.logs / "ts_log.log"]
            tails = "\n".join(f"--- {p.name}:\n" + "\n".join(p.read_text().splitlines()[-30:]) for p in logs if p.is_file())
            pytest.fail(f"{exc}\n{tails}")
        yield srv
    finally:
        subprocess.run([*cmd, "--stop"], cwd=workdir, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


@pytest.fixture(scope="session")
def server(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Start TorchServe with the repository's config, wait until the model is READY, yield, then stop it."""
    with running_server(model_store, tmp_path_factory.mktemp("torchserve")) as srv:
        yield srv


@pytest.fixture()
def client(server: Server) -> Iterator[StyleTransferClient]:
    """An SDK client of the server under test, reading its key file, with no retries."""
    with StyleTransferClient(base_url=server.url, key_file=server.key_file, max_retries=0) as c:
        yield c

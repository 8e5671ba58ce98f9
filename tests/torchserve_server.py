"""A real TorchServe (Java frontend + Python worker) on private loopback ports, for the end-to-end
and reliability tests (``tests/conftest.py`` makes its fixtures visible to every test).

The model archive is built by the same `make archive` a user runs, with seeded random weights,
into a temporary model store. The server gets its own config (the repository's
config.properties with private ports and paths), its own working directory (so its
key_file.json is private), and its own TMPDIR (so its pid file never meets another server's).
``running_server`` starts such a server from any config.properties with extra settings; the
session ``torchserve`` fixture is one of those, and ``kserve_v1`` and ``kserve_v2`` (deploy/kserve's
config, jobs in a real redis-server) are two more, shared by the envelope and the replica tests.

Starting TorchServe is what the ``e2e`` marker (pytest.ini) says: a fixture that starts one is
declared with :func:`torchserve_fixture`, and tests/conftest.py marks every test that uses such a
fixture; ``running_server`` fails a test that starts a server without the mark (see
:data:`E2E_ENV`), so the fast tier (``pytest -m "not e2e"``) never starts one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from nst_client import StyleTransferClient
from openapi_contract import check_response

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from wait_ready import wait_ready  # noqa: E402

BIN = Path(sys.executable).parent

#: Set by tests/conftest.py around each test: "1" while an ``e2e``-marked test runs, "0" while
#: another runs (unset outside pytest, e.g. benchmarks/bench_server.py run by hand). It is an
#: environment variable so that a script a test runs in a subprocess is held to it too.
E2E_ENV = "NST_TESTS_E2E"

#: The names of the fixtures that start TorchServe (filled by :func:`torchserve_fixture`).
TORCHSERVE_FIXTURES: set[str] = set()

F = TypeVar("F", bound=Callable[..., Any])


def torchserve_fixture(**kwargs: Any) -> Callable[[F], F]:
    """``pytest.fixture(**kwargs)`` for a fixture that starts TorchServe: its name joins
    :data:`TORCHSERVE_FIXTURES`, so every test that uses it is marked ``e2e``."""
    def declare(fn: F) -> F:
        TORCHSERVE_FIXTURES.add(kwargs.get("name", fn.__name__))
        return pytest.fixture(**kwargs)(fn)  # type: ignore[no-any-return]
    return declare


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

    Fails the test (``pytest.fail``) when it runs under a test not marked ``e2e`` (see
    :data:`E2E_ENV`), when Java is missing or when the model is not READY in 180 s.
    """
    if os.environ.get(E2E_ENV) == "0":
        pytest.fail(f"{os.environ.get('PYTEST_CURRENT_TEST', 'a test')} starts TorchServe but is not marked e2e: "
                    "use a fixture declared with torchserve_fixture or mark it @pytest.mark.e2e", pytrace=False)
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


@torchserve_fixture(scope="session")
def torchserve(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The session's TorchServe: the repository's config.properties (jobs in SQLite), started once,
    READY, stopped at the end of the session."""
    with running_server(model_store, tmp_path_factory.mktemp("torchserve")) as srv:
        yield srv


@pytest.fixture()
def torchserve_client(torchserve: Server) -> Iterator[StyleTransferClient]:
    """An SDK client of the session's TorchServe, reading its key file, with no retries."""
    with StyleTransferClient(base_url=torchserve.url, key_file=torchserve.key_file, max_retries=0) as c:
        yield c


#: deploy/kserve's replicas share their jobs through Redis (inferenceservice.yaml's
#: NST_JOBS_REDIS_URL); a short heartbeat timeout lets a test see a replica's jobs failed soon
#: after it went away (the shipped default is 30 s).
KSERVE_HEARTBEAT_TIMEOUT_S = 4


@dataclass(frozen=True)
class KServeEndpoint:
    """A TorchServe running with one KServe envelope, and how to speak it."""

    envelope: str  # "kserve" (protocol v1) or "kservev2"
    server: Server

    @property
    def kserve_path(self) -> str:
        """The protocol's own inference path, which TorchServe 0.12 also serves."""
        return "/v1/models/nst:predict" if self.envelope == "kserve" else "/v2/models/nst/infer"

    def wrap(self, bodies: list[Any]) -> dict[str, Any]:
        """v1: the request objects as "instances"; v2: one BYTES input of JSON text each."""
        if self.envelope == "kserve":
            return {"instances": bodies}
        return {"id": "call-1", "inputs": [{"name": f"request-{i}", "shape": [1], "datatype": "BYTES",
                                            "data": [json.dumps(b)]} for i, b in enumerate(bodies)]}

    def unwrap(self, answer: dict[str, Any], n: int) -> list[dict[str, Any]]:
        """Our n response (or error) objects, after checking the envelope around them and each
        object against docs/openapi.yaml (as the answer of a plain ``POST /predictions/nst``)."""
        if self.envelope == "kserve":
            assert set(answer) == {"predictions"}
            assert len(answer["predictions"]) == n
            inner = answer["predictions"]
        else:
            assert answer["id"] == "call-1" and answer["model_name"] == "nst" and answer["model_version"] == "1.0"
            assert [o["name"] for o in answer["outputs"]] == [f"request-{i}" for i in range(n)]
            assert all(o["datatype"] == "BYTES" and o["shape"] == [1] and len(o["data"]) == 1
                       for o in answer["outputs"])
            inner = [json.loads(o["data"][0]) for o in answer["outputs"]]
        for obj in inner:
            status = 200
            if "error" in obj:  # an envelope's error entry carries its own status (docs/api.md)
                status = obj["error"]["status"]
                obj = {**obj, "error": {k: v for k, v in obj["error"].items() if k != "status"}}
            problems = check_response("POST", "/predictions/nst", status, "application/json", json.dumps(obj))
            assert not problems, problems
        return inner

    def post(self, payload: dict[str, Any], path: str = "/predictions/nst") -> requests.Response:
        """POST without a token, as KServe's wrapper does."""
        return requests.post(f"{self.server.url}{path}", json=payload, timeout=300)

    def call(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One request in the protocol's envelope on its own path -> (HTTP status, our answer)."""
        resp = self.post(self.wrap([body]), self.kserve_path)
        (answer,) = self.unwrap(resp.json(), 1)
        return resp.status_code, answer


@contextmanager
def running_kserve(layout: Path, workdir: Path, envelope: str, redis_url: str) -> Iterator[KServeEndpoint]:
    """TorchServe started from ``make kserve-layout``'s config (the file's ``service_envelope=kserve``,
    or ``TS_SERVICE_ENVELOPE=kservev2`` in the environment as KServe sets it for
    ``protocolVersion: v2``), its jobs in the Redis at ``redis_url`` (key prefix ``kserve:``)."""
    env = {"NST_JOBS_REDIS_URL": redis_url, "NST_JOBS_REDIS_PREFIX": "kserve:",
           "NST_JOBS_HEARTBEAT_TIMEOUT_S": str(KSERVE_HEARTBEAT_TIMEOUT_S)}
    if envelope != "kserve":
        env["TS_SERVICE_ENVELOPE"] = envelope
    with running_server(layout / "model-store", workdir, base_config=layout / "config" / "config.properties",
                        extra={"metrics_config": str(layout / "config" / "metrics.yaml")}, env=env) as srv:
        yield KServeEndpoint(envelope, srv)


@torchserve_fixture(scope="session")
def kserve_v1(kserve_layout: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServeEndpoint]:
    """The session's TorchServe behind KServe's v1 envelope (see :func:`running_kserve`)."""
    with running_kserve(kserve_layout, tmp_path_factory.mktemp("torchserve_kserve"), "kserve", redis_url) as endpoint:
        yield endpoint


@torchserve_fixture(scope="session")
def kserve_v2(kserve_layout: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServeEndpoint]:
    """The session's TorchServe behind KServe's v2 envelope, sharing ``kserve_v1``'s job store."""
    with running_kserve(kserve_layout, tmp_path_factory.mktemp("torchserve_kservev2"), "kservev2",
                        redis_url) as endpoint:
        yield endpoint

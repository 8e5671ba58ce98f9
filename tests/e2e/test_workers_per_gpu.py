"""End to end: the real TorchServe 0.12.0 frontend starts one worker per GPU it counts, and one
on a host without a GPU, from the repository's config.properties and handler/model-config.yaml.

No GPU is needed: TorchServe counts GPUs from ``CUDA_VISIBLE_DEVICES`` without opening them, and
``number_of_gpu=0`` makes it count none, as on a host without one. The archive packs the real
model-config.yaml (what sets, or here leaves unset, the worker counts) with a one-class toy
handler that records the ``gpu_id`` TorchServe gave its worker, so that each start takes seconds.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from polling import poll
from torchserve_server import BIN, ROOT, Server, running_server

pytestmark = pytest.mark.e2e  # starts its own TorchServe (running_server)

#: The toy handler: one class (TorchServe's model loader wants exactly one), which writes the
#: worker's gpu_id to a file named after its pid in $GPU_ID_DIR.
TOY_HANDLER = '''
import json, os
from pathlib import Path


class GpuIdHandler:
    def initialize(self, context):
        folder = Path(os.environ["GPU_ID_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / str(os.getpid())).write_text(json.dumps(context.system_properties.get("gpu_id")))
        self.initialized = True

    def handle(self, data, context):
        return ["{}" for _ in data]
'''


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store holding nst.mar: the toy handler with handler/model-config.yaml."""
    folder = tmp_path_factory.mktemp("toy")
    (folder / "gpu_id_handler.py").write_text(TOY_HANDLER)
    store = folder / "store"
    store.mkdir()
    subprocess.run([str(BIN / "torch-model-archiver"), "--model-name", "nst", "--version", "1.0",
                    "--handler", str(folder / "gpu_id_handler.py"),
                    "--config-file", str(ROOT / "handler" / "model-config.yaml"), "--export-path", str(store)],
                   check=True)
    return store


def ready_workers(server: Server, count: int, timeout: float = 60.0) -> dict[str, Any]:
    """The model description once ``count`` workers are READY (fails the test after ``timeout`` s)."""
    key = json.loads(server.key_file.read_text())["management"]["key"]
    return poll(lambda: requests.get(f"{server.management_url}/models/nst", headers={"Authorization": f"Bearer {key}"},
                                     timeout=10).json()[0],
                lambda desc: sum(w["status"] == "READY" for w in desc["workers"]) >= count,
                what=f"{count} READY workers", timeout=timeout, interval=0.5)


@pytest.mark.parametrize(("extra", "env", "gpu_ids"), [
    pytest.param({"number_of_gpu": "0"}, {}, [None], id="no-gpu"),
    pytest.param({}, {"CUDA_VISIBLE_DEVICES": "0,1,2"}, [0, 1, 2], id="three-gpus"),
])
def test_one_worker_per_gpu_and_one_without(toy_store: Path, tmp_path: Path, extra: dict[str, str],
                                            env: dict[str, str], gpu_ids: list[int | None]) -> None:
    ids = tmp_path / "gpu_ids"
    workdir = tmp_path / "server"
    workdir.mkdir()
    with running_server(toy_store, workdir, extra=extra, env={**env, "GPU_ID_DIR": str(ids)}) as server:
        desc = ready_workers(server, len(gpu_ids))
    assert (desc["minWorkers"], desc["maxWorkers"]) == (len(gpu_ids), len(gpu_ids))
    assert [w["status"] for w in desc["workers"]] == ["READY"] * len(gpu_ids)
    assert all(w["gpu"] is (gpu_ids != [None]) for w in desc["workers"])
    # Every GPU has its own worker (TorchServe hands the ids out round-robin).
    assert sorted((json.loads(p.read_text()) for p in ids.iterdir()), key=str) == gpu_ids

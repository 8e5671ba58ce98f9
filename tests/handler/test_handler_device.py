"""The worker's device (issue 23): ``initialize`` with TorchServe's ``gpu_id`` 0 puts the weights,
the start-up speed run and every request on ``cuda:0``.

Without a GPU the worker's device is the ``meta`` device, which raises where CUDA would when a
CPU tensor joins its operations (see tests/engine/test_placement.py); its one host read per
iteration is replaced by zeros (meta tensors hold no values).
"""

from __future__ import annotations

import base64
from pathlib import Path

import nst_service.run
import nst_service.worker
import pytest
import torch
from nst_handler import NSTHandler
from nst_service import worker_device
from test_nst_handler import config, make_context, model_dir, run  # noqa: F401 - fixtures

META = torch.device("meta")


def test_a_worker_given_a_gpu_id_runs_on_that_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert worker_device(0) == torch.device("cuda:0") and worker_device(3) == torch.device("cuda:3")
    assert worker_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert worker_device(0) == torch.device("cpu")


@pytest.fixture()
def on_meta(monkeypatch: pytest.MonkeyPatch, meta_reads: None) -> list[int | None]:
    """The worker's device is ``meta`` (recording the gpu_id it was asked for)."""
    asked: list[int | None] = []

    def device(gpu_id: int | None) -> torch.device:
        asked.append(gpu_id)
        return META

    monkeypatch.setattr(nst_service.worker, "worker_device", device)
    return asked


def test_initialize_with_gpu_id_0_loads_and_measures_on_the_device(on_meta: list[int | None], model_dir: Path,
                                                                   config: dict, image_b64) -> None:
    ctx = make_context(model_dir, config, 1)
    ctx.system_properties["gpu_id"] = 0
    handler = NSTHandler()
    handler.initialize(ctx)  # loads the weights and runs the start-up speed run there
    assert on_meta == [0] and handler.initialized
    assert all(p.device == META for p in handler.service.worker.features.parameters())
    assert handler.service.worker.desk.seconds_per_work is not None
    body = {"content": image_b64("chelsea_128x96.png"), "style": image_b64("starry_night_64x64.png"),
            "params": {"iterations": 2, "output_format": "png"}}
    # A request runs on the device too, up to its encoding, which needs values.
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(nst_service.run, "encode_image", lambda image, *a, **k: image.device.type.encode())
    try:
        (answer,), _ = run(handler, model_dir, config, [{"body": body}])
    finally:
        monkeypatch.undo()
    assert answer["iterations"] == 2 and answer["device"] == "meta", answer
    assert base64.b64decode(answer["image"]) == b"meta"

"""The handler's CUDA failure path on this CPU machine (issue 23): a CUDA out-of-memory error
during a run is a 507 naming the request's output size, the failed run's tensors are dropped
and the allocator's cache emptied, and the same worker serves the next request."""

from __future__ import annotations

import weakref
from pathlib import Path

import nst_service.run
import pytest
import torch
from nst_handler import NSTHandler
from test_nst_handler import assert_error, config, handler, model_dir, run  # noqa: F401 - fixtures


@pytest.fixture
def body(image_b64) -> dict:
    return {"content": image_b64("chelsea_128x96.png"), "style": image_b64("starry_night_64x64.png"),
            "params": {"iterations": 1, "image_size": 32}}


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.10 GiB total capacity)"),
    RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"),
], ids=["OutOfMemoryError", "RuntimeError"])
def test_cuda_out_of_memory_is_a_507_and_the_worker_serves_the_next_request(
        handler: NSTHandler, model_dir: Path, config: dict, body: dict, monkeypatch, error: Exception) -> None:
    real = nst_service.run.stylize
    held: list[weakref.ref] = []
    emptied: list[bool] = []

    def out_of_memory_once(content, *args, **kwargs):
        if not held:
            activations = torch.zeros(4096)  # what the failed run holds when it raises
            held.append(weakref.ref(activations))
            raise error
        return real(content, *args, **kwargs)

    monkeypatch.setattr(nst_service.run, "stylize", out_of_memory_once)
    with monkeypatch.context() as cuda:  # as on a GPU host, for the failing request only
        cuda.setattr(torch.cuda, "is_available", lambda: True)
        cuda.setattr(torch.cuda, "empty_cache", lambda: emptied.append(held[0]() is None))
        (failed,), ctx = run(handler, model_dir, config, [{"body": body}])
    assert_error(failed, ctx, 0, 507, "out_of_memory", "params.image_size")
    assert ctx.get_response_status(0) == (507, "Insufficient Storage")
    message = failed["error"]["message"]
    assert "32x24 px" in message and "params.image_size" in message and "params.tile_size" in message
    # The cache was emptied once, after the failed run's tensors were released.
    assert emptied == [True]

    # The same worker serves the next request.
    (second,), ctx2 = run(handler, model_dir, config, [{"body": body}])
    assert ctx2.get_response_status(0) == (200, None)
    assert (second["width"], second["height"], second["iterations"]) == (32, 24, 1)


def test_other_failures_leave_the_cache_alone(handler: NSTHandler, model_dir: Path, config: dict, body: dict,
                                              monkeypatch) -> None:
    emptied: list[bool] = []

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(nst_service.run, "stylize", boom)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    (failed,), ctx = run(handler, model_dir, config, [{"body": body}])
    assert_error(failed, ctx, 0, 500, "internal_error", None)
    assert emptied == []

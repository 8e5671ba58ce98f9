"""End to end: AsyncStyleTransferClient against the real TorchServe, side by side with the sync
client: concurrent calls give what each call gives alone, and both describe the model and map
errors the same way."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from nst_client import (
    AsyncStyleTransferClient,
    AuthenticationError,
    BadRequestError,
    ModelInfo,
    ProgressEvent,
    ResultEvent,
    StyleTransferClient,
)

DATA = Path(__file__).resolve().parents[1] / "data"
T = TypeVar("T")

# Three different small jobs: different inputs, sizes and step counts.
JOBS: list[dict[str, Any]] = [
    {"content": DATA / "chelsea_128x96.png", "style": DATA / "starry_night_64x64.png", "image_size": 64, "iterations": 3},
    {"content": DATA / "tubingen_64x64.png", "style": DATA / "the_scream_128x96.png", "image_size": 48, "iterations": 2},
    {"content": DATA / "tubingen_64x64.png", "style": [DATA / "starry_night_64x64.png", DATA / "the_scream_128x96.png"],
     "image_size": 32, "iterations": 4, "init": "noise", "seed": 7},
]


def run(server, make: Callable[[AsyncStyleTransferClient], Awaitable[T]], **kwargs: Any) -> T:
    """``make(client)`` with an async client of the server under test (key file, no retries)."""
    async def main() -> T:
        options = {"base_url": server.url, "management_url": server.management_url,
                   "key_file": server.key_file, "max_retries": 0, **kwargs}
        async with AsyncStyleTransferClient(**options) as client:
            return await make(client)

    return asyncio.run(main())


def _job(client: Any, job: dict[str, Any]) -> Any:
    params = {k: v for k, v in job.items() if k not in ("content", "style")}
    return client.stylize(job["content"], job["style"], **params)


def test_concurrent_calls_each_equal_the_same_call_alone(torchserve, torchserve_client):
    async def together(aclient: AsyncStyleTransferClient) -> list:
        return await asyncio.gather(*(_job(aclient, job) for job in JOBS))

    concurrent = run(torchserve, together)
    for job, got in zip(JOBS, concurrent):
        alone = _job(torchserve_client, job)  # the sync client, one request at a time
        assert got.image_bytes == alone.image_bytes, job
        assert (got.width, got.height, got.iterations) == (alone.width, alone.height, alone.iterations) == (
            got.width, got.height, job["iterations"])
        assert got.losses == alone.losses and got.params == alone.params
        assert got.weights == alone.weights == "random-seed-0"
    assert len({r.image_bytes for r in concurrent}) == len(JOBS)  # three different answers


def test_stream_events_and_health(torchserve):
    async def stream(aclient: AsyncStyleTransferClient) -> list:
        assert (await aclient.health())["status"] == "Healthy"
        events = await aclient.stylize_stream(DATA / "chelsea_128x96.png", DATA / "starry_night_64x64.png",
                                              image_size=64, iterations=3, progress_every=1)
        return [event async for event in events]

    events = run(torchserve, stream)
    assert [e.iteration for e in events if isinstance(e, ProgressEvent)] == [0, 1, 2, 3]
    assert all(e.of == 3 for e in events if isinstance(e, ProgressEvent))
    assert isinstance(events[-1], ResultEvent) and events[-1].result.image.size == (64, 48)
    assert events[-1].result.params["stream"] is True


def test_info_from_both_clients(torchserve, torchserve_client):
    with StyleTransferClient(base_url=torchserve.url, management_url=torchserve.management_url,
                             key_file=torchserve.key_file, max_retries=0) as sync_client:
        sync = sync_client.info()
    aio = run(torchserve, lambda c: c.info())
    for info in (sync, aio):
        assert isinstance(info, ModelInfo)
        assert (info.model, info.version, info.device) == ("nst", "1.0", "cpu")
        assert info.weights["label"] == "random-seed-0" and info.weights["source"] == "random"
        assert len(info.weights["sha256"]) == 64
        assert (info.weights["network"], info.weights["input_convention"]) == ("vgg19", "torchvision")
        assert len(info.layers) == 37 and info.layers[-1] == "pool5"
        assert info.limits["max_image_side"] == 4096 and info.defaults["iterations"] == 300
        assert info.ready_workers == 1
    # Same description through both (worker memory figures move between calls).
    assert (sync.metadata, sync.version) == (aio.metadata, aio.version)
    # The default management URL is the inference host on 8081; this server listens elsewhere.
    assert torchserve_client.management_url.endswith(":8081") and torchserve_client.management_url != torchserve.management_url


def test_errors_are_mapped_identically(torchserve, torchserve_client):
    content, style = DATA / "chelsea_128x96.png", DATA / "starry_night_64x64.png"
    with pytest.raises(BadRequestError) as sync:
        torchserve_client.stylize(content, style, image_size=64, iterations=0)
    with pytest.raises(BadRequestError) as aio:
        run(torchserve, lambda c: c.stylize(content, style, image_size=64, iterations=0))
    fields = ("status_code", "code", "field", "message")
    assert [getattr(aio.value, f) for f in fields] == [getattr(sync.value, f) for f in fields]
    assert (aio.value.status_code, aio.value.field) == (400, "params.iterations")

    with pytest.raises(AuthenticationError) as wrong_key:
        run(torchserve, lambda c: c.info(), management_token="not-the-key")
    assert wrong_key.value.code == "InvalidKeyException"

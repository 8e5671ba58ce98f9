"""The style-transfer service without TorchServe: its stages over a batch's requests, the stream
chunks it sends, the replies it builds and the metrics it emits (the handler's tests check how
TorchServe is mapped onto it)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from nst import weights
from nst_http.kserve import KSERVE_V1
from nst_service import BatchRequest, Chunk, Reply, StyleTransferService

TINY_DEFAULTS = {"image_size": 64, "iterations": 3}


class Recorded:
    """The service's hooks, recording: every metric emitted and every chunk sent."""

    def __init__(self) -> None:
        self.metrics: list[tuple[str, float, str, dict[str, str]]] = []
        self.chunks: list[Chunk] = []

    def metric(self, name: str, value: float, *, kind: str = "counter", unit: str = "Count", **dims: str) -> None:
        self.metrics.append((name, value, kind, dims))

    def named(self, name: str) -> list[tuple[float, dict[str, str]]]:
        return [(value, dims) for n, value, _, dims in self.metrics if n == name]


@pytest.fixture(scope="module")
def hooks() -> Recorded:
    return Recorded()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, root_dir: Path, hooks: Recorded) -> Iterator[StyleTransferService]:
    model_dir = tmp_path_factory.mktemp("model")
    weights.save(weights.make_random(0), model_dir)
    config = yaml.safe_load((root_dir / "handler" / "model-config.yaml").read_text())["handler"]
    config |= {"defaults": dict(TINY_DEFAULTS), "jobs": {"dir": str(tmp_path_factory.mktemp("jobs")), "lease_s": 60}}
    svc = StyleTransferService.start(model_dir, weights.WEIGHTS_FILE, config, gpu_id=None, name="test:0",
                                     metric=hooks.metric)
    yield svc
    svc.close()


@pytest.fixture
def body(image_b64) -> dict[str, Any]:
    return {"content": image_b64("tubingen_64x64.png"), "style": image_b64("starry_night_64x64.png"),
            "params": {"iterations": 2}}


def decoded(reply: Reply) -> Any:
    """A reply's JSON body (text outside the KServe v1 envelope)."""
    assert isinstance(reply.body, str)
    return json.loads(reply.body)


def serve(service: StyleTransferService, hooks: Recorded, rows: list[Any], envelope_names: Any = None) -> list[Reply]:
    """One batch through the four stages, in TorchServe's order."""
    items = service.batch(rows, input_names=envelope_names, request_count=len(rows), request_id=lambda i: f"r{i}")
    return service.replies(service.answer(service.parse(items), hooks.chunks.append))


def test_importing_the_service_imports_no_torchserve(root_dir: Path) -> None:
    code = "import sys, nst_service; assert 'ts' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ts'))"
    subprocess.run([sys.executable, "-c", code], cwd=root_dir / "handler", check=True)


def test_a_request_is_answered_with_its_body_and_counted(service, hooks, body) -> None:
    hooks.metrics.clear()
    (reply,) = serve(service, hooks, [{"body": body}])
    assert (reply.content_type, reply.status, dict(reply.headers)) == ("application/json", None, {})
    answer = decoded(reply)
    assert answer["iterations"] == 2 and answer["weights"] == "random-seed-0" and answer["request_id"] == "r0"
    assert hooks.named("NSTIterations") == [(2, {})]
    assert hooks.named("NSTRequests") == [(1, {"Outcome": "ok"})]
    assert [dims["State"] for _, dims in hooks.named("NSTJobs")] == ["running", "succeeded"]


def test_a_bad_request_fails_alone_with_its_field(service, hooks, body) -> None:
    bad = body | {"params": {"iterations": -1}}
    good, refused = serve(service, hooks, [{"body": body}, {"body": bad}])
    assert good.status is None and decoded(good)["iterations"] == 2
    assert (refused.status, refused.content_type) == (400, "application/json") and refused.phrase
    error = decoded(refused)["error"]
    assert (error["field"], error["request_id"]) == ("params.iterations", "r1")


def test_a_streamed_request_sends_its_events_then_ends_in_band(service, hooks, body) -> None:
    hooks.chunks.clear()
    (reply,) = serve(service, hooks, [{"body": body | {"params": {"iterations": 3, "stream": True, "progress_every": 1}}}])
    events = [json.loads(chunk.text) for chunk in hooks.chunks]
    assert [(e["event"], e["iteration"]) for e in events] == [("progress", i) for i in range(4)]  # the start, then 3
    assert [c.content_type for c in hooks.chunks] == ["application/x-ndjson", None, None, None]
    assert {(c.index, c.request_id) for c in hooks.chunks} == {(0, "r0")}
    assert (reply.content_type, reply.status) == (None, None)  # the status line went out with the first chunk
    final = decoded(reply)
    assert final["event"] == "result" and final["iterations"] == 3


def test_a_submitted_job_is_accepted_with_202(service, hooks, body) -> None:
    (reply,) = serve(service, hooks, [{"body": body | {"job": {"action": "submit"}}}])
    assert (reply.status, reply.phrase) == (202, "Accepted")
    job_id = decoded(reply)["job"]["id"]
    (status,) = serve(service, hooks, [{"body": {"job": {"action": "status", "id": job_id}}}])
    assert decoded(status)["job"]["id"] == job_id


def test_an_empty_kserve_v1_batch_is_one_refusal(service, hooks) -> None:
    items = service.batch([], input_names=None, request_count=1, request_id=lambda i: f"r{i}")
    assert [(i.envelope, i.answer is not None) for i in items] == [(KSERVE_V1, True)]


def test_a_batch_keeps_its_requests_in_order(service) -> None:
    items = service.batch([{"body": b"a"}, {"body": b"b"}], input_names=None, request_count=2,
                          request_id=lambda i: f"r{i}")
    assert [(i.index, i.request_id, i.envelope) for i in items] == [(0, "r0", None), (1, "r1", None)]
    assert all(isinstance(i, BatchRequest) for i in items)


def test_the_description_names_weights_layers_device_limits_and_defaults(service) -> None:
    described = json.loads(service.describe())
    assert set(described) == {"weights", "layers", "device", "limits", "defaults"}
    assert described["weights"]["label"] == "random-seed-0" and described["device"] == "cpu"
    assert "relu4_2" in described["layers"] and described["defaults"]["iterations"] == 3

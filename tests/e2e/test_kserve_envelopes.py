"""End to end: the real TorchServe behind KServe's v1 and v2 envelopes, started from the layout
that deploy/kserve ships.

`make kserve-layout` builds config/ and model-store/ as KServe's TorchServe runtime mounts them
under /mnt/models. TorchServe starts from that config.properties (private ports and paths
swapped in, as for every test server): once with the file's own ``service_envelope=kserve``,
once with ``TS_SERVICE_ENVELOPE=kservev2`` in the environment, as KServe sets it for
``protocolVersion: v2`` (the file turns ``enable_envvars_config`` on). The model comes from the
file's ``model_snapshot``, and no request carries a token, as from KServe's wrapper. Every
stylized result must equal, pixel for pixel, the same request to the plain server (the session
``server`` fixture: the repository's config.properties, no envelope).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_contract import check_response
from PIL import Image
from polling import poll
from torchserve_server import ROOT, Server, running_server

DATA = ROOT / "tests" / "data"
FAST = {"image_size": 32, "steps": 2}


def request_body(**params: Any) -> dict[str, Any]:
    """Our ordinary request JSON (docs/api.md) on the tiny test images."""
    return {
        "content": base64.b64encode((DATA / "tubingen_64x64.png").read_bytes()).decode("ascii"),
        "style": base64.b64encode((DATA / "starry_night_64x64.png").read_bytes()).decode("ascii"),
        "params": {**FAST, **params},
    }


def pixels(b64_png: str) -> tuple[tuple[int, int], bytes]:
    with Image.open(io.BytesIO(base64.b64decode(b64_png))) as img:
        return img.size, img.convert("RGB").tobytes()


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


@pytest.fixture(scope="module", params=["kserve", "kservev2"])
def kserve(request: pytest.FixtureRequest, kserve_layout: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServeEndpoint]:
    """TorchServe from the KServe layout's config, with the v1 envelope, then with v2."""
    envelope = request.param
    env = {"TS_SERVICE_ENVELOPE": envelope} if envelope != "kserve" else {}
    with running_server(kserve_layout / "model-store", tmp_path_factory.mktemp(f"torchserve_{envelope}"),
                        base_config=kserve_layout / "config" / "config.properties",
                        extra={"metrics_config": str(kserve_layout / "config" / "metrics.yaml")}, env=env) as srv:
        yield KServeEndpoint(envelope, srv)


@pytest.fixture(scope="module")
def plain_answer(server: Server) -> dict[str, Any]:
    """The plain server's answer to ``request_body()`` (token from its key file)."""
    key = json.loads(server.key_file.read_text())["inference"]["key"]
    resp = requests.post(f"{server.url}/predictions/nst", json=request_body(),
                         headers={"Authorization": f"Bearer {key}"}, timeout=300)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_the_shipped_snapshot_loads_nst_without_a_token(kserve):
    """model_snapshot registered nst 1.0 with model-config.yaml's settings; no token is asked."""
    assert requests.get(f"{kserve.server.url}/ping", timeout=10).json()["status"] == "Healthy"
    (desc,) = requests.get(f"{kserve.server.management_url}/models/nst", timeout=10).json()
    assert desc["modelVersion"] == "1.0"
    assert (desc["minWorkers"], desc["maxWorkers"], desc["batchSize"], desc["maxBatchDelay"]) == (1, 1, 1, 0)
    assert desc["responseTimeout"] == 3600
    assert [w["status"] for w in desc["workers"]] == ["READY"]


@pytest.mark.parametrize("path", ["/predictions/nst", "kserve_path"])
def test_result_equals_the_plain_request(kserve, plain_answer, path):
    resp = kserve.post(kserve.wrap([request_body()]), kserve.kserve_path if path == "kserve_path" else path)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    (answer,) = kserve.unwrap(resp.json(), 1)
    assert pixels(answer["image"]) == pixels(plain_answer["image"])
    assert (answer["width"], answer["height"], answer["iterations"]) == (32, 32, 2)
    assert answer["params"] == plain_answer["params"]
    assert answer["weights"] == "random-seed-0"
    assert answer["request_id"]


def test_bad_parameter_is_a_400_naming_it(kserve):
    resp = kserve.post(kserve.wrap([request_body(steps=0)]), kserve.kserve_path)
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    (answer,) = kserve.unwrap(resp.json(), 1)
    error = answer["error"]
    assert (error["code"], error["field"], error["status"]) == ("out_of_range", "params.steps", 400)
    assert "params.steps" in error["message"] and error["request_id"]


def test_each_request_of_a_call_answers_alone(kserve):
    """Two requests in one call: the good one is served, the bad one named; the call's status is
    the failed request's."""
    resp = kserve.post(kserve.wrap([request_body(), request_body(colour=1)]))
    assert resp.status_code == 400, resp.text
    good, bad = kserve.unwrap(resp.json(), 2)
    assert pixels(good["image"])[0] == (32, 32) and "error" not in good
    assert (bad["error"]["code"], bad["error"]["field"]) == ("unknown_param", "params.colour")
    assert good["request_id"] == bad["error"]["request_id"]  # one HTTP request


def test_streaming_is_refused_with_a_400(kserve):
    resp = kserve.post(kserve.wrap([request_body(stream=True)]))
    assert resp.status_code == 400, resp.text
    (answer,) = kserve.unwrap(resp.json(), 1)
    assert answer["error"]["field"] == "params.stream"


def test_jobs_pass_through_the_envelope(kserve, plain_answer):
    """Submit, status and result, each wrapped: the submit answers 200 (the envelope's one status)
    with the job's status, and the result equals the plain request's answer."""
    resp = kserve.post(kserve.wrap([request_body() | {"job": {"action": "submit"}}]))
    assert resp.status_code == 200, resp.text
    (accepted,) = kserve.unwrap(resp.json(), 1)
    job_id = accepted["job"]["id"]
    assert accepted["job"]["state"] in ("queued", "running")
    poll(lambda: kserve.unwrap(kserve.post(kserve.wrap([{"job": {"action": "status", "id": job_id}}])).json(), 1)[0],
         lambda status: status["job"]["state"] == "succeeded", what=f"job {job_id}")
    resp = kserve.post(kserve.wrap([{"job": {"action": "result", "id": job_id}}]), kserve.kserve_path)
    assert resp.status_code == 200, resp.text
    (answer,) = kserve.unwrap(resp.json(), 1)
    assert pixels(answer["image"]) == pixels(plain_answer["image"])
    unknown = kserve.post(kserve.wrap([{"job": {"action": "status", "id": "no-such-job"}}]))
    assert unknown.status_code == 404
    assert kserve.unwrap(unknown.json(), 1)[0]["error"]["code"] == "unknown_job"


def _v2_input(**changes: Any) -> dict[str, Any]:
    return {"name": "request-0", "shape": [1], "datatype": "BYTES", "data": [json.dumps(request_body())], **changes}


#: Envelope bodies our handler refuses, each with the field its 400 names.
MALFORMED = {
    "kserve": [
        ({"instances": []}, "instances"),
        ({"inputs": [_v2_input()]}, "instances"),  # a v2 body sent to a v1 server
        ({"instances": ["not an object"]}, None),
    ],
    "kservev2": [
        ({"id": "call-1", "inputs": [_v2_input(datatype="FP32", data=[1.0])]}, "inputs[0].datatype"),
        ({"id": "call-1", "inputs": [_v2_input(shape=[2], data=[json.dumps(request_body())] * 2)]}, "inputs[0].shape"),
        ({"id": "call-1", "inputs": [_v2_input(data=["not json"])]}, None),
    ],
}


def test_a_malformed_envelope_is_a_400_naming_the_field(kserve):
    for payload, field in MALFORMED[kserve.envelope]:
        resp = kserve.post(payload, kserve.kserve_path)
        assert resp.status_code == 400, (payload, resp.text)
        (answer,) = kserve.unwrap(resp.json(), 1)
        assert answer["error"]["field"] == field, answer

"""End to end: the real TorchServe behind KServe's v1 and v2 envelopes, started from the layout
that deploy/kserve ships.

`make kserve-layout` builds config/ and model-store/ as KServe's TorchServe runtime mounts them
under /mnt/models. TorchServe starts from that config.properties (private ports and paths
swapped in, as for every test server): once with the file's own ``service_envelope=kserve``,
once with ``TS_SERVICE_ENVELOPE=kservev2`` in the environment, as KServe sets it for
``protocolVersion: v2`` (the file turns ``enable_envvars_config`` on); jobs live in a real
redis-server, as deploy/kserve/inferenceservice.yaml's ``NST_JOBS_REDIS_URL`` makes them. Both are
session servers (tests/torchserve_server.py ``kserve_v1``, ``kserve_v2``), which test_replicas.py
also uses. The model comes from the file's ``model_snapshot``, and no request carries a token, as
from KServe's wrapper. Every stylized result must equal, pixel for pixel, the same request to the
plain server (the session ``torchserve`` fixture: the repository's config.properties, no envelope).
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
import requests
from PIL import Image
from polling import poll
from torchserve_server import ROOT, KServeEndpoint, Server, torchserve_fixture

pytestmark = pytest.mark.e2e  # every test talks to a TorchServe

DATA = ROOT / "tests" / "data"
FAST = {"image_size": 32, "iterations": 2}


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


@torchserve_fixture(scope="module", params=["kserve", "kservev2"])
def kserve(request: pytest.FixtureRequest) -> KServeEndpoint:
    """The session's TorchServe behind the v1 envelope, then the one behind v2 (``kserve_v1``,
    ``kserve_v2``: deploy/kserve's config, jobs in Redis; test_replicas.py shares them)."""
    return request.getfixturevalue("kserve_v1" if request.param == "kserve" else "kserve_v2")


@pytest.fixture(scope="module")
def plain_answer(torchserve: Server) -> dict[str, Any]:
    """The plain server's answer to ``request_body()`` (token from its key file)."""
    key = json.loads(torchserve.key_file.read_text())["inference"]["key"]
    resp = requests.post(f"{torchserve.url}/predictions/nst", json=request_body(),
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
    resp = kserve.post(kserve.wrap([request_body(iterations=0)]), kserve.kserve_path)
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    (answer,) = kserve.unwrap(resp.json(), 1)
    error = answer["error"]
    assert (error["code"], error["field"], error["status"]) == ("out_of_range", "params.iterations", 400)
    assert "params.iterations" in error["message"] and error["request_id"]


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

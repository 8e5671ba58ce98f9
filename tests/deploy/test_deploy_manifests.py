"""deploy/: every manifest parses, and the KServe configuration agrees with the archive that
`make archive` builds, with handler/model-config.yaml and with the repository's config.properties.

Nothing here needs a cluster: tests/e2e/test_kserve_envelopes.py starts TorchServe from the
same config.properties, through `make kserve-layout`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import javaproperties
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KSERVE_CONFIG = DEPLOY / "kserve" / "config.properties"
INFERENCE_SERVICE = DEPLOY / "kserve" / "inferenceservice.yaml"
REDIS = DEPLOY / "kserve" / "redis.yaml"

#: Keys KServe's wrapper (kserve_wrapper/__main__.py in the runtime image) reads from the
#: config by splitting each line at its first "=".
WRAPPER_KEYS = ("inference_address", "management_address", "grpc_inference_port", "model_store", "model_snapshot")
#: Settings the KServe config must share with the repository's config.properties.
SHARED_KEYS = ("max_request_size", "max_response_size", "default_response_timeout", "enable_model_api",
               "install_py_dep_per_model", "metrics_mode", "grpc_inference_address", "grpc_management_address")
#: The settings that make TorchServe start one worker per GPU it sees and one without a GPU
#: (config.properties explains them; tests/e2e/test_workers_per_gpu.py starts TorchServe with them).
ONE_PROCESSOR = "-XX:ActiveProcessorCount=1"
#: protocolVersion -> the service_envelope KServe sets (TS_SERVICE_ENVELOPE) for it.
ENVELOPES = {"v1": "kserve", "v2": "kservev2"}


def properties(path: Path) -> dict[str, str]:
    """A .properties file as Java (so TorchServe) reads it: escapes and continuations applied."""
    with path.open(encoding="utf-8") as f:
        return javaproperties.load(f)


def wrapper_view(path: Path) -> dict[str, str]:
    """The same file as KServe's wrapper reads it: comment lines skipped, split at the first "="."""
    keys = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            keys[name.strip()] = value.strip()
    return keys


def port(address: str) -> int:
    """The port number of a URL such as ``http://0.0.0.0:8085``; fails the test where it has none."""
    number = urlsplit(address).port
    assert number is not None, f"no port in {address!r}"
    return number


def first_group(pattern: str, text: str, flags: int = 0) -> str:
    """Group 1 of ``pattern``'s first match in ``text``; fails the test where nothing matches."""
    match = re.search(pattern, text, flags)
    assert match is not None, f"{pattern!r} not found"
    return match.group(1)


def archive_args() -> dict[str, str]:
    """`make archive`'s model name, version, config file and output folder, from the Makefile."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("\narchive:"):]
    args = {flag: first_group(rf"--{flag} (\S+)", recipe) for flag in ("model-name", "version", "config-file")}
    args["model_store"] = first_group(r"^MODEL_STORE\s*\?=\s*(\S+)", makefile, re.M)
    assert "--export-path $(MODEL_STORE)" in recipe
    return args


@pytest.fixture(scope="module")
def kserve_config() -> dict[str, str]:
    return properties(KSERVE_CONFIG)


@pytest.fixture(scope="module")
def snapshot(kserve_config: dict[str, str]) -> dict[str, Any]:
    return json.loads(kserve_config["model_snapshot"])


@pytest.fixture(scope="module")
def isvc() -> dict[str, Any]:
    (doc,) = list(yaml.safe_load_all(INFERENCE_SERVICE.read_text()))
    return doc


def test_every_manifest_parses():
    found = {"yaml": 0, "json": 0, "properties": 0}
    for path in sorted(DEPLOY.rglob("*")):
        if path.suffix in (".yaml", ".yml"):
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
            assert docs and all(isinstance(d, dict) for d in docs), path
            found["yaml"] += 1
        elif path.suffix == ".json":
            json.loads(path.read_text())
            found["json"] += 1
        elif path.suffix == ".properties":
            props = properties(path)
            assert props, path
            # Every JSON-valued setting parses (TorchServe fails at start on a broken one).
            for value in props.values():
                if value.startswith(("{", "[")):
                    json.loads(value)
            found["properties"] += 1
    assert found["yaml"] >= 1 and found["properties"] >= 2, found


def test_the_wrapper_reads_what_torchserve_reads(kserve_config):
    naive = wrapper_view(KSERVE_CONFIG)
    for key in WRAPPER_KEYS:
        assert naive[key] == kserve_config[key], key


def test_snapshot_serves_the_archive_make_builds(snapshot):
    args = archive_args()
    assert args["model-name"] == "nst"
    assert snapshot["modelCount"] == len(snapshot["models"]) == 1
    (version,) = snapshot["models"][args["model-name"]]
    assert version == args["version"]
    entry = snapshot["models"][args["model-name"]][version]
    assert entry["marName"] == f"{args['model-name']}.mar"
    assert entry["defaultVersion"] is True


def test_snapshot_has_model_config_settings(snapshot):
    """Batch and timeouts as handler/model-config.yaml (packed into nst.mar) sets them."""
    model_config = yaml.safe_load((ROOT / archive_args()["config-file"]).read_text())
    (entry,) = snapshot["models"]["nst"].values()
    for key in ("batchSize", "maxBatchDelay", "responseTimeout", "startupTimeout"):
        assert entry[key] == model_config[key], key
    # The KServe envelopes read only a batch's first request.
    assert entry["batchSize"] == 1


def test_snapshot_runs_one_worker_per_gpu_of_the_pod(snapshot, isvc):
    """A snapshot must give the workers as numbers: the pod's GPUs, one worker each."""
    (entry,) = snapshot["models"]["nst"].values()
    gpus = int(isvc["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"])
    assert entry["minWorkers"] == entry["maxWorkers"] == gpus


@pytest.mark.parametrize("config", [ROOT / "config.properties", DEPLOY / "docker" / "config.properties"],
                         ids=["repository", "docker"])
def test_workers_follow_the_gpus(config):
    """No worker count is fixed: TorchServe's default (one per GPU it counts, else one per JVM
    processor) decides, with the JVM given one processor so that a CPU host runs one worker."""
    model_config = yaml.safe_load((ROOT / archive_args()["config-file"]).read_text())
    assert "minWorkers" not in model_config and "maxWorkers" not in model_config
    props = properties(config)
    assert int(props.get("default_workers_per_model", "0")) == 0
    assert "number_of_gpu" not in props  # a cap on the GPUs counted; unset, every visible one serves
    assert ONE_PROCESSOR in props["vmargs"].split()
    # The frontend's I/O threads are not derived from that one processor.
    assert int(props["number_of_netty_threads"]) >= 2 and int(props["netty_client_threads"]) >= 2


def test_kserve_config_ports_paths_and_auth(kserve_config):
    c = kserve_config
    assert port(c["inference_address"]) == 8085  # where KServe's wrapper sends requests
    assert port(c["management_address"]) == 8085  # 8081 is the wrapper's gRPC port
    assert urlsplit(c["inference_address"]).hostname == "127.0.0.1"  # no token: the pod's loopback only
    assert c["model_store"] == "/mnt/models/model-store"
    # make kserve-layout copies handler/metrics.yaml into config/, mounted at /mnt/models/config.
    assert c["metrics_config"] == "/mnt/models/config/metrics.yaml"
    assert (ROOT / "handler" / Path(c["metrics_config"]).name).is_file()
    assert c["enable_envvars_config"] == "true"  # TS_SERVICE_ENVELOPE from KServe takes effect
    assert c["disable_token_authorization"] == "true"  # the wrapper sends no token
    assert c["service_envelope"] in ENVELOPES.values()


def test_kserve_config_shares_the_repository_settings(kserve_config):
    root = properties(ROOT / "config.properties")
    for key in SHARED_KEYS:
        assert kserve_config[key] == root[key], key


def test_inference_service(isvc, kserve_config, snapshot):
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"]["name"] == "pytorch"  # selects the kserve-torchserve runtime
    assert ENVELOPES[model["protocolVersion"]] == kserve_config["service_envelope"]
    assert re.fullmatch(r"(gs|s3|pvc|https?)://\S+", model["storageUri"])
    # The runtime image's TorchServe is the one the tests use.
    pins = dict(re.findall(r"^([\w-]+)==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M))
    assert model["runtimeVersion"] == f"{pins['torchserve']}-gpu"
    for section in ("requests", "limits"):
        assert str(model["resources"][section]["nvidia.com/gpu"]) == "1"
    # Autoscaling.
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
    assert predictor["scaleMetric"] in ("concurrency", "rps", "cpu", "memory")
    assert predictor["scaleTarget"] >= 1
    # Knative gives up no later than TorchServe does.
    (entry,) = snapshot["models"]["nst"].values()
    assert 0 < predictor["timeout"] <= entry["responseTimeout"]


def test_docker_config_differs_from_the_repository_config_only_where_the_image_needs(root_dir):
    root = properties(root_dir / "config.properties")
    docker = properties(DEPLOY / "docker" / "config.properties")
    image_specific = {"inference_address", "management_address", "metrics_address", "model_store", "allowed_urls",
                      "metrics_config"}
    assert set(root) == set(docker)
    assert {k for k in root if root[k] != docker[k]} <= image_specific
    assert all(urlsplit(docker[k]).hostname == "0.0.0.0" for k in ("inference_address", "management_address",
                                                                    "metrics_address"))
    assert docker["disable_token_authorization"] == "false"


def test_the_replicas_share_the_redis_job_store_the_deploy_folder_runs(isvc):
    """NST_JOBS_REDIS_URL in the predictor names redis.yaml's Service and port, and every
    NST_JOBS_* variable it sets is a jobs setting the handler reads."""
    from nst_http.jobs import JobSettings

    env = {e["name"]: e["value"] for e in isvc["spec"]["predictor"]["model"]["env"]}
    settings = JobSettings.from_config({}, env)  # refuses a value of the wrong type
    assert all(name.removeprefix("NST_JOBS_").lower() in JobSettings.__dataclass_fields__
               for name in env if name.startswith("NST_JOBS_"))
    assert settings.redis_url is not None
    url = urlsplit(settings.redis_url)
    deployment, service = yaml.safe_load_all(REDIS.read_text())
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    assert url.scheme == "redis" and url.hostname == service["metadata"]["name"]
    assert url.port == service["spec"]["ports"][0]["port"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert container["ports"][0]["name"] == service["spec"]["ports"][0]["targetPort"]
    args = container["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"  # a full store refuses, never drops

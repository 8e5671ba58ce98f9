"""`make gpu-check` keeps running: its smoke run (`--device cpu --quick`, the CPU against itself at toy
sizes) writes every part and fails none, with values that make sense (never a bound on time); a
failing part is recorded and makes the exit status 1; `make gpu-deps` gathers a small, complete `ts`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
PARTS = {"device", "agreement", "speed", "long_run", "host_reads", "handler", "memory"}


def check(*args: str, out: Path) -> tuple[subprocess.CompletedProcess, dict[str, Any]]:
    # One torch thread, as in the tests' own process: the fast tier runs a test on every core.
    proc = subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(out)], capture_output=True, text=True,
                          timeout=900, env=os.environ | {"OMP_NUM_THREADS": "1"})
    return proc, json.loads((out / "gpu_check.json").read_text())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The smoke run's report (run once for the module); fails if the script exits non-zero."""
    proc, report = check("--device", "cpu", "--quick", out=tmp_path_factory.mktemp("gpu-check"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "7 of 7 parts ok" in proc.stdout
    return report


def result(report: dict[str, Any], part: str) -> dict[str, Any]:
    return report["parts"][part]["result"]


def test_every_part_ran_and_none_failed(smoke) -> None:
    assert set(smoke["parts"]) == PARTS and smoke["failed"] == []
    assert all(p["ok"] and p["seconds"] > 0 for p in smoke["parts"].values())
    assert smoke["device"] == "cpu" and smoke["quick"] is True


def test_device_names_the_versions_and_the_tf32_flags(smoke) -> None:
    info = result(smoke, "device")
    assert info["torch"] == torch.__version__ and info["torchvision"] and info["name"]
    assert isinstance(info["numerics"]["cudnn.allow_tf32"], bool)
    assert isinstance(info["numerics"]["cuda.matmul.allow_tf32"], bool)


def test_the_cpu_agrees_with_itself_and_bf16_stays_close(smoke) -> None:
    agreement = result(smoke, "agreement")
    assert agreement["size"] == 64 and set(agreement["precisions"]) == {"fp32", "tf32", "bf16"}
    assert agreement["reference_terms"]["total"] > 0
    for precision in ("fp32", "tf32"):  # the same float32 arithmetic on a CPU
        row = agreement["precisions"][precision]
        assert row["grad_rel_max_error"] < 1e-6 and row["grad_cosine"] > 1 - 1e-9
        assert max(row["terms_rel_error"].values()) < 1e-6
    bf16 = agreement["precisions"]["bf16"]
    assert bf16["grad_cosine"] > 0.99 and bf16["grad_rel_max_error"] < 0.5
    assert bf16["terms_rel_error"]["total"] < 0.05


def test_speed_has_a_floor_and_an_engine_figure_per_size_and_precision(smoke) -> None:
    speed = result(smoke, "speed")
    assert speed["history"] == 3 and speed["clock"] == "perf_counter"
    assert {(r["size"], r["precision"]) for r in speed["rows"]} == {
        (s, p) for s in (64,) for p in ("fp32", "tf32", "bf16")}
    assert all(r["floor_s"] > 0 and r["engine_s"] > 0 and r["ratio"] > 0 for r in speed["rows"])


def test_the_long_run_ran_every_iteration(smoke) -> None:
    run = result(smoke, "long_run")
    assert run["iterations"] == 20 and run["seconds"] > 0
    assert set(run["losses"]) == {"content", "style", "tv", "total"} and run["losses"]["total"] > 0


def test_host_reads_are_counted(smoke) -> None:
    reads = result(smoke, "host_reads")
    assert 0 < reads["reads"][0] < reads["reads"][1]
    assert reads["per_iteration"] > 0 and reads["added_per_iteration"] > 0 and sum(reads["ops"].values()) > 0


def test_the_handler_answered_all_four_requests(smoke) -> None:
    handler = result(smoke, "handler")
    assert handler["device"] == handler["weights_device"] == "cpu"
    for kind in ("plain", "streamed"):
        answer = handler[kind]
        assert answer["status"] == 200 and answer["weights"] == "random-seed-0" and answer["device"] == "cpu"
        assert answer["iterations"] == 3 and max(answer["width"], answer["height"]) == 64
    assert handler["streamed"]["content_type"] == "application/x-ndjson"
    assert handler["streamed"]["event"] == "result" and handler["streamed"]["streamed_events"]["progress"] >= 1
    dry = handler["dry_run"]
    assert dry["status"] == 200 and "iterations" not in dry and dry["plan"]["peak_memory_bytes"] > 0
    job = handler["job"]
    assert job["submitted"]["status"] == 202 and job["state"] == "succeeded" and job["polls"] >= 1
    assert job["status"] == 200 and job["result"]["iterations"] == 3 and job["result"]["weights"] == "random-seed-0"


def test_memory_compares_the_model_with_a_measured_peak(smoke) -> None:
    memory = result(smoke, "memory")
    assert [r["size"] for r in memory["rows"]] == [96]
    assert all(r["peak_gib"] > 0 and r["peak_estimate_gib"] > 0 for r in memory["rows"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_failing_part_is_recorded_and_fails_the_run(tmp_path: Path) -> None:
    proc, report = check("--device", "cuda", "--only", "device", out=tmp_path)
    assert proc.returncode == 1 and "[FAILED] device" in proc.stdout
    assert report["failed"] == ["device"] and report["parts"]["device"]["ok"] is False
    error = report["parts"]["device"]["error"]
    assert error["message"] and error["traceback"][-1].startswith(error["type"])  # the tail of the traceback


def test_gpu_deps_gathers_a_small_ts_the_handler_imports(tmp_path: Path) -> None:
    deps = tmp_path / "deps"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--gather-deps", str(deps)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = [p for p in deps.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 4 * 2**20
    assert not any(p.suffix in (".jar", ".pyc") for p in files) and (deps / "ts" / "configs" / "metrics.yaml").is_file()
    # The gathered copy first on the path: the handler and the check's Context come from it.
    code = ("import nst_handler, ts, ts.context, ts.metrics.metric_cache_yaml_impl; print(ts.__file__)")
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(deps), str(ROOT / "handler")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert Path(proc.stdout.strip().splitlines()[-1]).is_relative_to(deps)

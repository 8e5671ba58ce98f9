"""``handler.jobs``: JobSettings declares every setting once; model-config.yaml spells out each
one at its default, and ``NST_JOBS_<NAME>`` overrides it (how deploy/kserve sets the Redis URL)."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import pytest
import yaml
from nst_http.jobs import JobSettings

MODEL_CONFIG = Path(__file__).resolve().parents[2] / "handler" / "model-config.yaml"


def test_model_config_lists_every_setting_at_its_default() -> None:
    jobs = yaml.safe_load(MODEL_CONFIG.read_text())["handler"]["jobs"]
    assert list(jobs) == [f.name for f in fields(JobSettings)]
    assert JobSettings.from_config(jobs, {}) == JobSettings()


def test_environment_variables_override_the_file() -> None:
    env = {"NST_JOBS_REDIS_URL": "redis://nst-redis:6379/0", "NST_JOBS_LEASE_S": "2.5",
           "NST_JOBS_MAX_QUEUED_JOBS": "3", "NST_JOBS_DIR": "", "UNRELATED": "x"}
    settings = JobSettings.from_config({"lease_s": 30, "dir": "/var/nst", "max_queued_jobs": 8}, env)
    assert asdict(settings) == asdict(JobSettings()) | {
        "redis_url": "redis://nst-redis:6379/0", "lease_s": 2.5, "max_queued_jobs": 3, "dir": None}
    assert isinstance(settings.max_queued_jobs, int)


@pytest.mark.parametrize(("config", "env", "message"), [
    ({"lease": 3}, {}, "handler.jobs.lease is not a jobs setting"),
    ({}, {"NST_JOBS_MAX_QUEUED_JOBS": "many"}, "NST_JOBS_MAX_QUEUED_JOBS='many' is not a valid int"),
])
def test_bad_settings_are_refused_by_name(config: dict[str, object], env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JobSettings.from_config(config, env)

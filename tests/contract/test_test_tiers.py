"""The test tiers (pytest.ini's markers): a test that starts TorchServe is marked ``e2e``, so
``pytest -m "not e2e"`` (``make test-fast``) starts none. tests/conftest.py marks the tests that use
a fixture declared with ``torchserve_fixture``; ``running_server`` refuses to start a server under
any other test, in the test's own process or in a script it runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from torchserve_server import E2E_ENV, ROOT, TORCHSERVE_FIXTURES, running_server


def test_the_session_torchserve_fixtures_are_declared() -> None:
    """(The e2e modules' own, such as ``jobs_torchserve``, join when their module is collected.)"""
    assert {"torchserve", "kserve_v1", "kserve_v2"} <= TORCHSERVE_FIXTURES


def test_a_test_not_marked_e2e_cannot_start_torchserve(tmp_path: Path) -> None:
    assert os.environ[E2E_ENV] == "0"
    with pytest.raises(pytest.fail.Exception, match="not marked e2e"):
        with running_server(tmp_path, tmp_path):
            pass
    assert list(tmp_path.iterdir()) == []  # refused before anything was written or started


def test_nor_can_a_script_it_runs(tmp_path: Path) -> None:
    """benchmarks/bench_server.py starts TorchServe in its own process: the mark travels in the
    environment."""
    script = ("import sys; sys.path[:0] = [sys.argv[1] + '/tests', sys.argv[1] + '/handler']\n"
              "from pathlib import Path\nfrom torchserve_server import running_server\n"
              "with running_server(Path(sys.argv[2]), Path(sys.argv[2])):\n    pass\n")
    proc = subprocess.run([sys.executable, "-c", script, str(ROOT), str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "not marked e2e" in proc.stdout + proc.stderr, proc.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []

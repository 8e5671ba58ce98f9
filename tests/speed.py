"""One speed measurement per device for the workers the handler and service tests start."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from filelock import FileLock


@contextmanager
def speed_measured_once(shared: Path) -> Iterator[None]:
    """Workers started in-process (``nst_service.worker.load_worker``) measure their speed
    (:func:`nst_http.budget.measure_speed`, about 8 s of start-up runs on a 2-core CPU) once per
    device for the whole test run and reuse that measurement: a real one, shared. ``shared`` is
    a folder every process of the run sees (under pytest-xdist, the parent of the workers' base
    temporary folders): the first process to need a device's figure measures it under a file
    lock and leaves it there as a pickle, the others read it. For the handler and service tests,
    which start a worker per module or per test; the speed's own tests (tests/http/test_budget.py)
    call ``measure_speed`` itself."""
    import nst_service.worker as worker

    if getattr(worker.measure_speed, "shared", False):  # another conftest's session fixture is on
        yield
        return
    real, measured = worker.measure_speed, {}

    def once(features: Any, device: torch.device) -> Any:
        key = str(device)
        if key not in measured:
            kept = shared / f"speed-{key.replace(':', '-')}.pickle"
            with FileLock(str(kept) + ".lock"):
                if not kept.exists():
                    kept.write_bytes(pickle.dumps(real(features, device)))
                measured[key] = pickle.loads(kept.read_bytes())
        return measured[key]

    once.shared = True  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(worker, "measure_speed", once)
        yield


@pytest.fixture(scope="session", autouse=True)
def one_speed_measurement(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[None]:
    """The session fixture of the conftests whose tests start workers (import it there)."""
    base = tmp_path_factory.getbasetemp()
    with speed_measured_once(base if worker_id == "master" else base.parent):
        yield

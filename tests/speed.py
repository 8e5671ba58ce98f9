"""One speed measurement per device for the workers the handler and service tests start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch


@contextmanager
def speed_measured_once() -> Iterator[None]:
    """Workers started in-process (``nst_service.worker.load_worker``) measure their speed
    (:func:`nst_http.budget.measure_speed`, about 8 s of start-up runs on a 2-core CPU) once per
    device for the whole session and reuse that measurement: a real one, shared. For the handler
    and service tests, which start a worker per module or per test; the speed's own tests
    (tests/http/test_budget.py) call ``measure_speed`` itself."""
    import nst_service.worker as worker

    real, measured = worker.measure_speed, {}

    def once(features: Any, device: torch.device) -> Any:
        if str(device) not in measured:
            measured[str(device)] = real(features, device)
        return measured[str(device)]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(worker, "measure_speed", once)
        yield

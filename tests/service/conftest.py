"""Workers started here share one speed measurement per device (see ``speed_measured_once``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from speed import speed_measured_once


@pytest.fixture(scope="session", autouse=True)
def one_speed_measurement() -> Iterator[None]:
    with speed_measured_once():
        yield

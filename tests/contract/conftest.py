"""Fixtures of the contract tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from contract_server import ScriptedServer, running


@pytest.fixture()
def scripted() -> Iterator[ScriptedServer]:
    """A local HTTP server that records every request and answers as its ``script`` says."""
    with running() as server:
        yield server

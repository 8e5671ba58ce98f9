"""One row of a TorchServe batch as it passes through the handler's stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import RequestError
from .jobs import JobCall
from .request import StyleRequest


@dataclass
class Row:
    """One row of a batch: its input, its checked request, its answer and how it is delivered."""

    index: int
    raw: Any
    envelope: str | None
    """:data:`nst_http.kserve.KSERVE_V1`, ``KSERVE_V2`` or ``None`` (plain HTTP)."""
    request_id: str | None
    """TorchServe's id of the HTTP request the row came in."""
    job: JobCall | None = None
    """What its ``job`` field asks (``None``: a plain request, run as a job it waits for)."""
    request: StyleRequest | None = None
    answer: dict[str, Any] | RequestError | None = None
    status: int = 200
    """The HTTP status of a successful answer (202 for an accepted job)."""
    decode_ms: float = 0.0
    streaming: bool = False
    """Whether its first stream chunk (and with it status 200) has gone out."""

"""What passes between TorchServe's handler and the service: the requests of a batch as they go
through the stages (:class:`BatchRequest`), the stream chunks sent before an answer
(:class:`Chunk`, through a :data:`Send`), the reply of each request (:class:`Reply`) and the
metrics hook (:class:`Metric`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from nst_http.errors import RequestError
from nst_http.jobs import JobCall
from nst_http.request import StyleRequest


@dataclass
class BatchRequest:
    """One request of a TorchServe batch: its input, its checked request, its answer and how it
    is delivered."""

    index: int
    """Its place in the batch (TorchServe's index for its status, headers and chunks)."""
    raw: Any
    envelope: str | None
    """:data:`nst_http.kserve.KSERVE_V1`, ``KSERVE_V2`` or ``None`` (plain HTTP)."""
    request_id: str | None
    """TorchServe's id of the HTTP request it came in."""
    job: JobCall | None = None
    """What its ``job`` field asks (``None``: a plain request, run as a job it waits for)."""
    request: StyleRequest | None = None
    answer: dict[str, Any] | RequestError | None = None
    status: int = 200
    """The HTTP status of a successful answer (202 for an accepted job)."""
    decode_ms: float = 0.0
    streaming: bool = False
    """Whether its first stream chunk (and with it status 200) has gone out."""


@dataclass(frozen=True)
class Chunk:
    """One NDJSON line of a streamed answer, sent before the answer itself."""

    index: int
    request_id: str | None
    text: str
    content_type: str | None
    """Set on a request's first chunk only (it goes out with the status line)."""


#: Sends one stream chunk to the client now (TorchServe: ``send_intermediate_predict_response``).
Send = Callable[[Chunk], None]


@dataclass(frozen=True)
class Reply:
    """The answer to one request of a batch (under a KServe envelope: to the one HTTP request)."""

    body: str | dict[str, Any]
    """JSON text, the stream's last line, or (KServe v1) the JSON object TorchServe wraps."""
    content_type: str | None = None
    """``None``: already set by the request's first stream chunk."""
    status: int | None = None
    """``None``: 200, as TorchServe answers unless told otherwise."""
    phrase: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


class Metric(Protocol):
    """Emits one model metric declared in ``handler/metrics.yaml`` (same name and dimensions)."""

    def __call__(self, name: str, value: float, *, kind: str = "counter", unit: str = "Count",
                 **dims: str) -> None:
        """``kind``: ``"counter"`` or ``"gauge"``; ``dims``: the metric's dimensions beyond the
        model's name and level."""

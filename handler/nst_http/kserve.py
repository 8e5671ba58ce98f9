"""The KServe envelopes TorchServe 0.12 can put in front of the handler (``service_envelope``).

Under ``kserve`` (v1) the rows the handler gets are the elements of the request's ``"instances"``
array; under ``kservev2`` they are its ``"inputs"``, each a ``BYTES`` tensor holding one request's
JSON text. Either way all rows belong to the one HTTP request the envelope read (it reads only
the first of a batch, so ``batchSize`` must stay 1). See ``docs/api.md``, "KServe envelopes".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .errors import RequestError

KSERVE_V1, KSERVE_V2 = "kserve", "kservev2"

#: The 400 for a v1 request without instances (the envelope hands the handler no rows).
NO_INSTANCES = RequestError(400, "missing_field", 'a KServe v1 request needs "instances": a non-empty array of '
                            "request objects (see docs/api.md)", "instances")


def envelope_of(data: Sequence[Any] | None, input_names: Any, n_requests: int) -> str | None:
    """Which envelope (:data:`KSERVE_V1`, :data:`KSERVE_V2`) unwrapped ``data``, or ``None``.

    TorchServe does not tell the handler its ``service_envelope``; the rows show it. The v2
    envelope sets the context's ``input_names`` before it calls the handler. Without an
    envelope there is one row per HTTP request of the batch (``n_requests``), each a dict from
    TorchServe's frontend holding the body under ``"body"`` (or ``"data"``); anything else is
    the v1 envelope's ``"instances"``: ``None`` or empty when the request has none, else
    request objects (which have neither field).
    """
    if input_names is not None:
        return KSERVE_V2
    if (not data or len(data) != n_requests
            or any(not isinstance(row, dict) or ("body" not in row and "data" not in row) for row in data)):
        return KSERVE_V1
    return None


def row_body(envelope: str | None, idx: int, row: Any) -> Any:
    """The request body (JSON text, bytes or a parsed object) that row ``idx`` carries.

    Raises:
        RequestError: under ``kservev2``, an input that is not one ``BYTES`` element
            (field ``inputs[<idx>].datatype`` or ``inputs[<idx>].shape``).
    """
    if envelope == KSERVE_V1:
        return row  # an element of "instances": the request object itself
    if envelope == KSERVE_V2:
        # The envelope has replaced a BYTES input's "data" array by its first element.
        if row.get("datatype") != "BYTES":
            raise RequestError(400, "invalid_type", f"input {row.get('name')!r} has datatype {row.get('datatype')!r}; "
                               "send each request as a BYTES input holding the request's JSON text",
                               f"inputs[{idx}].datatype")
        if list(row.get("shape") or []) != [1]:
            raise RequestError(400, "out_of_range", f"input {row.get('name')!r} has shape {row.get('shape')!r}; one "
                               "request per input: shape must be [1] (send more inputs for more requests)",
                               f"inputs[{idx}].shape")
        return row.get("data")
    return row.get("body", row.get("data")) if isinstance(row, dict) else row


def check_row(envelope: str | None, *, stream: bool = False) -> None:
    """Refuse what an envelope cannot carry: a stream (one answer per request). Job calls pass:
    their answers (the job's status, its result) are answers like any other.

    Raises:
        RequestError: 400 ``params.stream``.
    """
    if envelope and stream:
        raise RequestError(400, "invalid_choice", "params.stream is not available through a KServe envelope (one "
                           "answer per request); use POST /predictions/nst", "params.stream")


def enveloped(envelope: str, answers: Sequence[dict[str, Any] | RequestError],
              request_id: str | None) -> tuple[list[Any], RequestError | None]:
    """One entry per instance (v1) or input (v2) for the envelope to wrap, and the error that
    sets the one HTTP request's status and headers (the first failed row's; ``None``: 200, also
    for a job submit, which answers 202 without an envelope).

    A failed row's entry is our error body with ``error.status`` added, so that each row still
    says how it failed. Entries are dicts under ``kserve`` (the envelope answers
    ``{"predictions": [...]}``) and JSON text under ``kservev2`` (one ``BYTES`` output per input).
    """
    out: list[Any] = []
    failed: RequestError | None = None
    for answer in answers:
        if isinstance(answer, RequestError):
            failed = failed or answer
            body = answer.body(request_id=request_id, status=answer.status)
        else:
            body = answer
        out.append(body if envelope == KSERVE_V1 else json.dumps(body))
    return out, failed

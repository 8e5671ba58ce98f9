"""Checks HTTP requests and responses against ``docs/openapi.yaml``.

Two layers:

* Pure functions, usable from any test and with any HTTP library:
  :func:`check_request` (a request body), :func:`check_response` (a whole answer),
  :func:`check_stream_line` (one line of an NDJSON stream) and :func:`check_exchange` (does
  the server's verdict on a request agree with the spec's). Each returns a list of problems
  (strings); an empty list means the message follows the contract.
* :class:`ContractRecorder`: while active, every request that ``requests`` (and ``httpx``,
  when installed) sends to the watched servers is checked, and its answer too, without
  changing what the caller sees; problems are collected in :attr:`ContractRecorder.problems`.
  ``tests/conftest.py`` runs every end-to-end and reliability test under one.

What is validated: the operations of the spec (``POST /predictions/nst`` and ``GET /ping``
on the inference URL, ``GET /models/{model_name}`` on the management URL). Other paths
(TorchServe's token API, the metrics port, KServe endpoints) are not part of the contract
and are passed through unchecked (counted in :attr:`ContractRecorder.skipped`).

The spec's schemas are JSON Schema 2020-12 (OpenAPI 3.1); they are validated with
``jsonschema``, the spec's ``#/components/...`` references resolved through ``referencing``.
One deliberate departure from plain JSON Schema: ``integer`` means a JSON number written
without a fraction, because the server (Python's ``json``) refuses ``3.0`` for an integer.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml"
_SPEC_URI = "https://nst.invalid/openapi.yaml"  # a name for the spec inside the registry; never fetched

#: Media types of our answers.
JSON, NDJSON = "application/json", "application/x-ndjson"
#: Error codes that only a malformed request can earn: JSON Schema can express every cause of
#: these, so a request the spec accepts must never be refused with one (else the spec is
#: looser than the handler). The other codes depend on image contents or on relations
#: between fields that JSON Schema cannot state (``out_of_range`` for one weight per style...).
SCHEMA_LEVEL_CODES = frozenset({
    "invalid_json", "invalid_body", "missing_field", "unknown_field", "unknown_param", "invalid_type",
    "invalid_choice",
})
_NOT_JSON = "the body is not JSON"


@functools.lru_cache(maxsize=1)
def load_spec() -> dict[str, Any]:
    """``docs/openapi.yaml``, parsed (cached; do not modify it)."""
    return yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


def _python_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _python_integer),
)


@functools.cache
def _validator(pointer: str) -> Any:
    """A validator for the schema at JSON pointer ``pointer`` of the spec."""
    spec = Resource.from_contents(load_spec(), default_specification=DRAFT202012)
    registry = Registry().with_resource(_SPEC_URI, spec)
    return _Validator({"$ref": f"{_SPEC_URI}#{pointer}"}, registry=registry,
                      format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def validate(instance: Any, pointer: str) -> list[str]:
    """Problems of ``instance`` against the schema at ``pointer`` (``/components/schemas/X``...).

    Each problem names the place in the instance and what failed. Where a ``oneOf`` fails, the
    branch the instance meant is explained: the one its ``discriminator`` names, else the
    closest match; so a mismatch can be read without a debugger.
    """
    return [_describe(error) for error in
            sorted(_validator(pointer).iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])]


def _where(error: jsonschema.ValidationError) -> str:
    return "".join(f"[{p!r}]" for p in error.absolute_path) or "(root)"


def _describe(error: jsonschema.ValidationError) -> str:
    if not error.context:
        return f"{_where(error)}: {_short(error.message)}"
    discriminator = error.schema.get("discriminator") if isinstance(error.schema, dict) else None
    if discriminator and isinstance(error.instance, dict):
        target = discriminator.get("mapping", {}).get(error.instance.get(discriminator["propertyName"]))
        if target is None:
            name = discriminator["propertyName"]
            known = sorted(discriminator["mapping"])
            return f"{_where(error)}: {name} = {error.instance.get(name)!r} is none of {known}"
        inner = [_describe(e) for e in _validator(target.split("#", 1)[1]).iter_errors(error.instance)]
        return f"{_where(error)}: not a valid {target.rsplit('/', 1)[1]}: " + "; ".join(inner)
    # The branch the instance got furthest into (its errors lie deepest) is the one it meant.
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for e in error.context:
        branches.setdefault(e.relative_schema_path[0], []).append(e)
    # Ties: a branch of the instance's own type (a too long array beats "not a string").
    closest = max(branches.values(), key=lambda errs: (max(len(e.absolute_path) for e in errs),
                                                        any(e.validator != "type" for e in errs), -len(errs)))
    return (f"{_where(error)}: matches none of the {len(branches)} allowed forms; closest: "
            + "; ".join(_describe(e) for e in closest[:3]))


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def operation(method: str, path: str) -> tuple[str, str, dict[str, Any]] | None:
    """``(spec path, JSON pointer of the operation, operation)`` for a request path, or ``None``.

    ``path`` is the URL's path (a query string is ignored); templated spec paths such as
    ``/models/{model_name}`` match one path segment per parameter.
    """
    path = urllib.parse.urlsplit(path).path or "/"
    for template, item in load_spec()["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "/?$"
        op = item.get(method.lower())
        if op is not None and re.match(pattern, path):
            return template, f"/paths/{_escape(template)}/{method.lower()}", op
    return None


def api_of(template: str) -> str:
    """``"management"`` for a spec path served on the management URL (it names its own
    ``servers``), else ``"inference"``."""
    return "management" if "servers" in load_spec()["paths"][template] else "inference"


def _parse_json(body: bytes | str) -> tuple[bool, Any]:
    try:
        return True, json.loads(body)
    except (ValueError, RecursionError):  # includes UnicodeDecodeError
        return False, None


def check_request(method: str, path: str, body: bytes | str | None) -> list[str]:
    """Problems of a request body against the operation's ``requestBody`` (JSON only).

    Returns ``[]`` for an operation without a request body in the spec, and
    ``["the body is not JSON"]`` for a body that does not parse.

    Raises:
        LookupError: the spec has no such operation.
    """
    found = operation(method, path)
    if found is None:
        raise LookupError(f"{method} {path} is not in {SPEC_PATH.name}")
    _, pointer, op = found
    if "requestBody" not in op:
        return []
    ok, parsed = _parse_json(body if body is not None else b"")
    if not ok:
        return [_NOT_JSON]
    return validate(parsed, f"{pointer}/requestBody/content/{_escape(JSON)}/schema")


def _response_entry(op: dict[str, Any], pointer: str, status: int) -> tuple[str, dict[str, Any]] | None:
    responses = op.get("responses", {})
    for key in (str(status), f"{status // 100}XX", "default"):
        if key in responses:
            return f"{pointer}/responses/{_escape(key)}", responses[key]
    return None


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _locate(method: str, path: str, status: int, content_type: str | None,
            body_is_empty: bool) -> tuple[str | None, list[str]]:
    """The pointer of the schema the body must follow (``None``: no body to check), or problems."""
    found = operation(method, path)
    if found is None:
        raise LookupError(f"{method} {path} is not in {SPEC_PATH.name}")
    _, pointer, op = found
    entry = _response_entry(op, pointer, status)
    label = f"{method.upper()} {path} -> {status}"
    if entry is None:
        return None, [f"{label}: the spec lists no such status"]
    entry_pointer, response = entry
    content = response.get("content", {})
    media = _media(content_type)
    if body_is_empty and not media:
        if content and not response.get("x-body-optional"):
            return None, [f"{label}: an empty body without Content-Type, but the spec promises {sorted(content)}"]
        return None, []
    if media not in content:
        return None, [f"{label}: Content-Type {content_type!r} is not among the spec's {sorted(content)}"]
    return f"{entry_pointer}/content/{_escape(media)}/schema", []


def check_response(method: str, path: str, status: int, content_type: str | None, body: bytes | str) -> list[str]:
    """Problems of one whole answer: its status, media type and body (every line of an NDJSON body).

    Raises:
        LookupError: the spec has no such operation.
    """
    schema, problems = _locate(method, path, status, content_type, not body)
    if schema is None:
        return problems
    label = f"{method.upper()} {path} -> {status} {_media(content_type)}"
    if _media(content_type) == NDJSON:
        raw = body.encode() if isinstance(body, str) else body
        lines = [line for line in raw.split(b"\n") if line.strip()]
        if not lines:
            return [f"{label}: an empty stream"]
        out = []
        for n, line in enumerate(lines, 1):
            out += [f"{label}: line {n}: {p}" for p in _check_line(schema, line)]
        return out + check_stream_order([_event_of(line) for line in lines], complete=True, label=label)
    ok, parsed = _parse_json(body)
    if not ok:
        return [f"{label}: {_NOT_JSON}: {_short(repr(body[:200]))}"]
    return [f"{label}: {p}" for p in validate(parsed, schema)]


def check_stream_line(method: str, path: str, status: int, content_type: str | None, line: bytes | str) -> list[str]:
    """Problems of one line of a streamed (NDJSON) answer; an empty line is allowed."""
    if not line.strip():
        return []
    schema, problems = _locate(method, path, status, content_type, False)
    if schema is None:
        return problems
    return [f"{method.upper()} {path} -> {status} {_media(content_type)}: {p}" for p in _check_line(schema, line)]


def _check_line(schema: str, line: bytes | str) -> list[str]:
    ok, parsed = _parse_json(line)
    if not ok:
        return [f"a stream line is not JSON: {_short(repr(line[:200]))}"]
    return validate(parsed, schema)


def _event_of(line: bytes | str) -> str | None:
    ok, parsed = _parse_json(line)
    return parsed.get("event") if ok and isinstance(parsed, dict) else None


def check_stream_order(events: list[str | None], *, complete: bool, label: str = "stream") -> list[str]:
    """The stream's grammar: progress and preview events, then exactly one ``result`` or
    ``error`` event, last. ``complete``: the stream has ended (so a missing end is a problem)."""
    ends = [i for i, e in enumerate(events) if e in ("result", "error")]
    if len(ends) > 1 or (ends and ends[0] != len(events) - 1):
        return [f"{label}: events after the final result/error event: {events}"]
    if complete and not ends:
        return [f"{label}: the stream ended without a result or error event (events: {events})"]
    return []


def check_exchange(request_problems: list[str], status: int, body: Any) -> list[str]:
    """Whether the server's verdict on a request agrees with the spec's.

    * A request the spec refuses must be refused (4xx), never answered with 200.
    * A request the spec accepts must not be refused with one of :data:`SCHEMA_LEVEL_CODES`:
      that would mean the spec is looser than the handler.

    Args:
        request_problems: what :func:`check_request` found.
        status: the HTTP status of the answer.
        body: the parsed answer (for its ``error.code``), or ``None``.
    """
    if request_problems and status < 400:
        return [f"the server answered {status} to a request the spec refuses: {'; '.join(request_problems[:5])}"]
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = error.get("code")
    if not request_problems and code in SCHEMA_LEVEL_CODES:
        return [f"the spec accepts a request that the server refuses with {status} {code} "
                f"(field {error.get('field')!r}: {_short(str(error.get('message')))})"]
    return []


# --- watching real traffic -------------------------------------------------------------------


class _Exchange:
    """One watched request: what is known of it, and the checks of its answer as it is read."""

    def __init__(self, recorder: ContractRecorder, method: str, path: str, body: Any, sdk: bool) -> None:
        self.recorder, self.method, self.path = recorder, method.upper(), path
        self.request_problems: list[str] = []
        found = operation(method, path)
        assert found is not None
        if "requestBody" in found[2]:
            self.request_problems = check_request(method, path, body)
            if sdk and self.request_problems:
                # Not a failure by itself: tests send invalid arguments through the SDK on
                # purpose. check_exchange decides, from the server's answer.
                recorder._count("sdk_bodies_refused_by_spec")
        self.status = 0
        self.content_type: str | None = None
        self._buffer = b""
        self._events: list[str | None] = []
        self._whole = bytearray()

    def _report(self, problems: Iterable[str]) -> None:
        """Record problems, each labelled with the request (the check_* functions label theirs)."""
        label = f"{self.method} {self.path} -> {self.status}"
        self.recorder._add([p if p.startswith(f"{self.method} ") else f"{label}: {p}" for p in problems])

    def answered(self, status: int, content_type: str | None) -> None:
        self.status, self.content_type = status, content_type
        self.recorder._count("checked")

    def whole_body(self, body: bytes) -> None:
        """Check a completely read answer."""
        problems = check_response(self.method, self.path, self.status, self.content_type, body)
        parsed = None
        if _media(self.content_type) == JSON:
            _, parsed = _parse_json(body)
        problems += check_exchange(self.request_problems, self.status, parsed)
        self._report(problems)

    def chunk(self, data: bytes) -> None:
        """Check what a chunk completes of a streamed answer (each NDJSON line as it arrives)."""
        if _media(self.content_type) != NDJSON:
            self._whole += data
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._line(line)

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return
        problems = check_stream_line(self.method, self.path, self.status, self.content_type, line)
        if not self._events:
            problems += check_exchange(self.request_problems, self.status, None)
        self._events.append(_event_of(line))
        problems += check_stream_order(self._events, complete=False, label="stream")
        self._report(problems)

    def end(self) -> None:
        """The streamed answer has been read to its end."""
        if _media(self.content_type) != NDJSON:
            self.whole_body(bytes(self._whole))
            return
        self._line(self._buffer)
        self._buffer = b""
        self._report(check_stream_order(self._events, complete=True, label="stream"))


class ContractRecorder:
    """Checks every request to the watched servers, and its answer, against the spec.

    Args:
        inference_url: base URL of the inference API (``http://127.0.0.1:<port>``).
        management_url: base URL of the management API, if it is to be watched.

    Use as a context manager: while active, ``requests.Session.send`` (which every
    ``requests`` call goes through) and, when installed, ``httpx.Client.send`` and
    ``httpx.AsyncClient.send`` are wrapped. A non-streamed answer is checked when it arrives;
    a streamed one while the caller reads it (NDJSON line by line, anything else once read to
    its end), so nothing is consumed that the caller has not asked for. A streamed answer the
    caller never reads is not checked.

    Attributes:
        problems: every contract problem seen, in order, each naming its request.
        checked: answers of watched operations seen.
        skipped: requests to the watched servers on paths outside the spec.
        sdk_bodies_refused_by_spec: SDK-built bodies the spec refuses (then the server must too).
    """

    def __init__(self, inference_url: str, management_url: str | None = None) -> None:
        self.bases = {"inference": inference_url.rstrip("/")}
        if management_url:
            self.bases["management"] = management_url.rstrip("/")
        self.problems: list[str] = []
        self.checked = self.skipped = self.sdk_bodies_refused_by_spec = 0
        self._lock = threading.Lock()
        self._undo: list[Callable[[], None]] = []

    def _count(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    def _add(self, problems: list[str]) -> None:
        if problems:
            with self._lock:
                self.problems.extend(problems)

    def exchange(self, method: str, url: str, body: Any, headers: Mapping[str, str]) -> _Exchange | None:
        """An :class:`_Exchange` for a request to a watched server on a spec path, else ``None``."""
        for api, base in self.bases.items():
            if url == base or url.startswith(base + "/") or url.startswith(base + "?"):
                path = url[len(base):] or "/"
                found = operation(method, path)
                if found is None or api_of(found[0]) != api:
                    self._count("skipped")
                    return None
                sdk = str(headers.get("User-Agent", "")).startswith("nst-client/")
                return _Exchange(self, method, path, body, sdk)
        return None

    # -- requests ---------------------------------------------------------------------------

    def _patch_requests(self) -> None:
        import requests

        original = requests.Session.send
        recorder = self

        def send(session: Any, request: Any, **kwargs: Any) -> Any:
            exchange = recorder.exchange(request.method, request.url, request.body, request.headers)
            response = original(session, request, **kwargs)
            _observe(exchange, response, kwargs.get("stream"), "iter_content", _watch_iter)
            return response

        # A test-only patch: same call signature, Any-typed (mypy checks neither against the stubs).
        requests.Session.send = send  # type: ignore[method-assign,assignment]
        self._undo.append(lambda: setattr(requests.Session, "send", original))

    # -- httpx (optional) -------------------------------------------------------------------

    def _patch_httpx(self) -> None:
        try:
            import httpx
        except ImportError:
            return
        recorder = self
        sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

        def prepare(request: Any) -> _Exchange | None:
            try:
                body = request.content
            except httpx.RequestNotRead:  # a streamed upload: its body cannot be seen here
                body = None
            return recorder.exchange(request.method, str(request.url), body, request.headers)

        def send(client: Any, request: Any, **kwargs: Any) -> Any:
            exchange = prepare(request)
            response = sync_send(client, request, **kwargs)
            _observe(exchange, response, kwargs.get("stream"), "iter_bytes", _watch_iter)
            return response

        async def asend(client: Any, request: Any, **kwargs: Any) -> Any:
            exchange = prepare(request)
            response = await async_send(client, request, **kwargs)
            _observe(exchange, response, kwargs.get("stream"), "aiter_bytes", _watch_aiter)
            return response

        # Test-only patches with the same call signatures, Any-typed (as in _patch_requests).
        httpx.Client.send, httpx.AsyncClient.send = send, asend  # type: ignore[method-assign,assignment]

        def undo() -> None:
            httpx.Client.send, httpx.AsyncClient.send = sync_send, async_send  # type: ignore[method-assign]

        self._undo.append(undo)

    def __enter__(self) -> ContractRecorder:
        self._patch_requests()
        self._patch_httpx()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        while self._undo:
            self._undo.pop()()

    def report(self) -> str:
        """The problems as one message, for a failing test."""
        shown = self.problems[:20]
        more = f"\n... and {len(self.problems) - len(shown)} more" if len(self.problems) > len(shown) else ""
        return (f"{len(self.problems)} HTTP message(s) broke the contract in {SPEC_PATH.name}:\n"
                + "\n".join(f"- {p}" for p in shown) + more)


def _observe(exchange: _Exchange | None, response: Any, stream: Any, iterator: str,
             watch: Callable[[Any, _Exchange], Any]) -> None:
    """Record an answer: its status and type, then its body, whole, or (``stream``) line by line
    as the caller reads it, by wrapping the response's ``iterator`` method with ``watch``."""
    if exchange is None:
        return
    exchange.answered(response.status_code, response.headers.get("Content-Type"))
    if stream:
        # The wrapper yields what the original yields (deliberately dynamic: a test-only patch).
        setattr(response, iterator, watch(getattr(response, iterator), exchange))
    else:
        exchange.whole_body(response.content)


def _as_bytes(chunk: Any) -> bytes:
    return chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)


def _watch_iter(iterate: Callable[..., Iterator[Any]], exchange: _Exchange) -> Callable[..., Iterator[Any]]:
    """Wrap a response's chunk iterator: every chunk is checked before it is handed on."""
    def watched(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for chunk in iterate(*args, **kwargs):
            exchange.chunk(_as_bytes(chunk))
            yield chunk
        exchange.end()
    return watched


def _watch_aiter(iterate: Callable[..., Any], exchange: _Exchange) -> Callable[..., Any]:
    async def watched(*args: Any, **kwargs: Any) -> Any:
        async for chunk in iterate(*args, **kwargs):
            exchange.chunk(_as_bytes(chunk))
            yield chunk
        exchange.end()
    return watched

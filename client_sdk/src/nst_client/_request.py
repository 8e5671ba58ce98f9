"""Request building: what one call sends, decided once for both clients (no I/O but reading
the input images).

* :func:`stylize_body`: the stylize JSON body from the arguments; which keywords go into
  ``params`` and which are top-level image fields follows from ``nst_client._params``;
* :func:`read_timeout_for`: its read timeout (``time_budget_s`` shortens it);
* :func:`plan_params`: the ``params`` of a dry run (``plan()``), and :func:`refuse_dry_run`,
  which keeps ``dry_run`` out of the calls that expect an image or a job;
* :func:`job_body`: the body of a job's status, result or cancel call (a submit is the stylize
  body with ``job = {"action": "submit"}``);
* :class:`Request`: one HTTP call as both transports send it, and :func:`request_headers`, the
  headers of each attempt (``Authorization`` from :class:`~nst_client._auth.Credentials`).
"""

from __future__ import annotations

import collections.abc
import json
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from ._auth import Credentials
from ._constants import DEADLINE_READ_MARGIN, NDJSON_CONTENT_TYPE
from ._images import ImageInput, StyleInput, b64encode, to_image_bytes
from ._params import DRY_RUN, RENAMED, STREAM_PARAMS, STYLIZE_IMAGES, STYLIZE_PARAMS, StylizeImages
from ._version import __version__

__all__ = ["Request", "USER_AGENT", "JOB_ACTIONS", "request_headers", "split_stylize_args", "current_names", "stylize_body",
           "stream_params", "plan_params", "refuse_dry_run", "read_timeout_for", "job_body"]

#: The ``job.action`` of a call about an existing job (a submit is sent by :func:`stylize_body`).
JOB_ACTIONS = ("status", "result", "cancel")

USER_AGENT = f"nst-client/{__version__}"


@dataclass(frozen=True)
class Request:
    """One HTTP call, as both clients send it (each attempt alike, but for the headers).

    Attributes:
        method: ``"GET"`` or ``"POST"``.
        url: The whole URL, query included.
        credentials: Whose token to send (read at each attempt, so a re-read key is used).
        read_timeout: Seconds: the longest wait for the answer (with ``stream``, between two
            chunks of it).
        data: The JSON body, or ``None``.
        stream: Ask for NDJSON events and leave the body unread for the caller.
        max_retries: Retries of this call; ``None``: the client's ``max_retries``.
    """

    method: str
    url: str
    credentials: Credentials
    read_timeout: float
    data: Optional[bytes] = None
    stream: bool = False
    max_retries: Optional[int] = None

    def headers(self) -> Dict[str, str]:
        """The headers of the next attempt (:func:`request_headers`)."""
        return request_headers(self.credentials, json_body=self.data is not None, stream=self.stream)


def request_headers(credentials: Credentials, *, json_body: bool = False, stream: bool = False) -> Dict[str, str]:
    """Every header of one request.

    Args:
        credentials: Supplies ``Authorization`` (read at each attempt, so a re-read key is used).
        json_body: The request carries a JSON body (adds ``Content-Type``).
        stream: The caller accepts NDJSON events (``Accept: application/x-ndjson, application/json``).

    Returns:
        The headers.
    """
    headers = {"User-Agent": USER_AGENT,
               "Accept": f"{NDJSON_CONTENT_TYPE}, application/json" if stream else "application/json"}
    if json_body:
        headers["Content-Type"] = "application/json"
    headers.update(credentials.headers())
    return headers


def _encode(image: ImageInput, name: str) -> str:
    """Base64 text of one image input; ``name`` labels errors (``"style[1]"``...)."""
    return b64encode(to_image_bytes(image, name=name))


def _as_list(value: Any) -> Any:
    """A non-string sequence (tuple, range...) as a list, so it is sent as a JSON list."""
    if isinstance(value, collections.abc.Sequence) and not isinstance(value, (str, bytes, bytearray)):
        return list(value)
    return value


def stylize_body(
    content: ImageInput,
    style: StyleInput,
    *,
    init_image: Optional[ImageInput] = None,
    content_mask: Optional[ImageInput] = None,
    style_masks: Optional[Union[List[ImageInput], Tuple[ImageInput, ...]]] = None,
    params: Mapping[str, Any],
    job: Optional[Mapping[str, Any]] = None,
) -> Tuple[bytes, Dict[str, Any]]:
    """The JSON request body of a stylize call (see ``docs/api.md``).

    Parameters that are ``None`` are left out (the server fills in its defaults); tuples and
    other non-string sequences become JSON lists. Nothing is read or encoded before the
    structural checks pass.

    Args:
        content: Content image (path, encoded bytes or PIL image).
        style: One style image (sent as a base64 string) or a list/tuple (a JSON list).
        init_image: Top-level ``init_image``.
        content_mask: Top-level ``content_mask``.
        style_masks: Top-level ``style_masks``: one mask per style.
        params: The ``params`` object before ``None`` values are dropped.
        job: The top-level ``job`` field, e.g. ``{"action": "submit"}`` (a job's submit), or
            ``None`` (a synchronous or streamed call).

    Returns:
        ``(body, params)``: the UTF-8 JSON body, and the ``params`` object it carries.

    Raises:
        TypeError: An image input has an unsupported type, or ``style_masks`` is not a list/tuple.
        FileNotFoundError: An input path does not exist.
        ValueError: An input is empty, ``style`` is an empty list, ``style_masks`` does not have
            one mask per style, or a parameter is not JSON-serialisable (NaN, an object...).
    """
    n_styles = len(style) if isinstance(style, (list, tuple)) else 1
    if n_styles == 0:
        raise ValueError("style: at least one style image is required")
    if style_masks is not None:
        if not isinstance(style_masks, (list, tuple)):
            raise TypeError(
                f"style_masks must be a list or tuple of images (one per style), "
                f"not {type(style_masks).__name__}")
        if len(style_masks) != n_styles:
            raise ValueError(
                f"style_masks has {len(style_masks)} mask(s) but there are {n_styles} "
                f"style image(s); give exactly one mask per style")

    sent = {k: _as_list(v) for k, v in params.items() if v is not None}
    payload: Dict[str, Any] = {"content": _encode(content, "content")}
    if isinstance(style, (list, tuple)):
        payload["style"] = [_encode(s, f"style[{i}]") for i, s in enumerate(style)]
    else:
        payload["style"] = _encode(style, "style")
    payload["params"] = sent
    if init_image is not None:
        payload["init_image"] = _encode(init_image, "init_image")
    if content_mask is not None:
        payload["content_mask"] = _encode(content_mask, "content_mask")
    if style_masks is not None:
        payload["style_masks"] = [_encode(m, f"style_masks[{i}]") for i, m in enumerate(style_masks)]
    if job is not None:
        payload["job"] = dict(job)
    try:
        data = json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"params are not valid JSON: {exc}") from exc
    return data.encode("utf-8"), sent


def stream_params(params: Mapping[str, Any], progress_every: Optional[int],
                  preview_every: Optional[int]) -> Dict[str, Any]:
    """``params`` of a streamed call: ``stream = true`` and the two event intervals."""
    return {**params, "stream": True, "progress_every": progress_every, "preview_every": preview_every}


def plan_params(params: Mapping[str, Any]) -> Dict[str, Any]:
    """``params`` of a dry run (``plan()``): ``dry_run = true``.

    Raises:
        ValueError: ``stream`` is set (a plan is answered at once), or ``dry_run`` is given as
            something other than ``True``.
    """
    if params.get("stream") is not None:
        raise ValueError("stream: a plan is answered at once, it is not streamed")
    if params.get(DRY_RUN) not in (None, True):
        raise ValueError(f"{DRY_RUN}: plan() always sends {DRY_RUN} = true; leave it out")
    return {**params, DRY_RUN: True}


def refuse_dry_run(params: Mapping[str, Any], call: str) -> None:
    """Raise unless ``params`` leaves ``dry_run`` unset or false: the plan is ``plan()``'s answer.

    Args:
        params: The ``params`` of a ``stylize``, ``stylize_stream`` or ``submit`` call.
        call: The method, for the message (``"stylize"``...).

    Raises:
        ValueError: ``dry_run`` is true.
    """
    if params.get(DRY_RUN):
        raise ValueError(f"{DRY_RUN}: {call}() does not do dry runs; call plan(content, style, **params) "
                         "for the server's plan (same arguments)")


def read_timeout_for(params: Mapping[str, Any], timeout: float) -> float:
    """The read timeout (seconds) of a stylize call: ``timeout``, or with ``time_budget_s``
    ``min(timeout, time_budget_s + DEADLINE_READ_MARGIN)``."""
    budget = params.get("time_budget_s")
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        return min(timeout, float(budget) + DEADLINE_READ_MARGIN)
    return timeout


def split_stylize_args(kwargs: Mapping[str, Any], *, stream: bool = False) -> Tuple[StylizeImages, Dict[str, Any]]:
    """Sort ``stylize``'s keywords into the top-level image fields and the ``params`` object.

    Args:
        kwargs: The keywords (``StylizeArgs``/``StreamArgs``, and any unknown ones).
        stream: A streamed call: the stream intervals go into ``params`` beside ``stream = true``
            (:func:`stream_params`).

    Returns:
        ``(images, params)``: ``params`` holds the declared parameters in declaration order, then
        the unknown keywords as given (sent unchanged; a server that does not know them answers
        ``BadRequestError``); ``None`` values are still in it.
    """
    kwargs = current_names(kwargs)
    images: StylizeImages = {k: kwargs[k] for k in STYLIZE_IMAGES if k in kwargs}  # type: ignore[assignment]
    known = {k: kwargs[k] for k in STYLIZE_PARAMS if k in kwargs}
    params = {**known, **{k: v for k, v in kwargs.items() if k not in images and k not in known}}
    if stream:
        intervals = {p.name: params.pop(p.name, None) for p in STREAM_PARAMS}
        params = stream_params(params, intervals["progress_every"], intervals["preview_every"])
    return images, params


def current_names(kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """``kwargs`` with each old spelling (:data:`nst_client._params.RENAMED`) under its current
    name, with a ``DeprecationWarning``.

    Raises:
        TypeError: both spellings of one parameter are given.
    """
    out = dict(kwargs)
    for old, new in RENAMED.items():
        if old in out:
            if new in out:
                raise TypeError(f"{old!r} is the old spelling of {new!r}: pass one of them")
            warnings.warn(f"the {old!r} keyword is now {new!r}", DeprecationWarning, stacklevel=4)
            out[new] = out.pop(old)
    return out


def job_body(action: str, job_id: str) -> bytes:
    """The body of a call about an existing job: exactly ``{"job": {"action", "id"}}``.

    Args:
        action: One of :data:`JOB_ACTIONS`.
        job_id: The id the submit answered with.

    Raises:
        ValueError: ``job_id`` is not a non-empty string.
    """
    assert action in JOB_ACTIONS, action
    if not isinstance(job_id, str) or not job_id:
        raise ValueError(f"job id must be a non-empty string, got {job_id!r}")
    return json.dumps({"job": {"action": action, "id": job_id}}).encode("utf-8")

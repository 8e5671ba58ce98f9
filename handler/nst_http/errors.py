"""Error bodies: ``{"error": {"code", "message", "field"}}`` with an HTTP status."""

from __future__ import annotations

from typing import Any

import torch
from nst.masks import MaskError
from nst.options import OptionError

#: Reason phrases of the statuses this contract answers with.
PHRASES = {202: "Accepted", 400: "Bad Request", 404: "Not Found", 409: "Conflict", 413: "Payload Too Large",
           500: "Internal Server Error", 503: "Service Unavailable", 507: "Insufficient Storage"}

#: Top-level fields of the request body; every image is base64. An engine error about one of
#: them names it as is, any other field as ``params.<name>``.
BODY_FIELDS = ("content", "style", "params", "init_image", "content_mask", "style_masks", "job")


class RequestError(Exception):
    """A request the server refuses; becomes ``{"error": {code, message, field}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = dict(headers or {})
        """Response headers to send with it (``Retry-After`` with a 503)."""

    @property
    def phrase(self) -> str:
        """The HTTP reason phrase of :attr:`status`."""
        return PHRASES.get(self.status, "Error")

    def body(self, **extra: Any) -> dict[str, Any]:
        """The JSON error body, with ``extra`` keys (``request_id``, ``status``) added to ``error``."""
        return {"error": {"code": self.code, "message": self.message, "field": self.field, **extra}}


def bad(code: str, message: str, field: str | None) -> RequestError:
    """A 400 :class:`RequestError`."""
    return RequestError(400, code, message, field)


def from_option_error(exc: OptionError) -> RequestError:
    """The 400 for an engine :class:`nst.options.OptionError`: its code, and its field named as
    the request names it (``params.style_layers[1]``, or a body field such as ``init_image``)."""
    prefix = "" if exc.field.split("[")[0] in BODY_FIELDS else "params."
    return bad(exc.code, exc.message(prefix), prefix + exc.field)


def internal_error(request_id: str | None) -> RequestError:
    """The 500 for a failure that is not the request's fault (details go to the server log)."""
    return RequestError(500, "internal_error", f"internal error; see the server log for request {request_id}")


#: How the message of a CUDA out-of-memory error begins where PyTorch raises it as a plain
#: ``RuntimeError`` rather than ``torch.cuda.OutOfMemoryError``: the caching allocator's own
#: wording, and a failed ``cudaMalloc`` outside it (a library's handle or workspace).
CUDA_OOM_MESSAGES = ("CUDA out of memory", "CUDA error: out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is CUDA running out of device memory (the worker can go on: nothing of
    the failed run is kept once its objects are collected)."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and str(exc).startswith(CUDA_OOM_MESSAGES))


def from_engine_error(exc: Exception, output_size: tuple[int, int]) -> RequestError | None:
    """The answer to an engine failure that is the request's (masks that make no regions: 400)
    or the server's capacity (out of GPU memory: a 507 naming the request's output size and
    what makes it need less); ``None`` for any other (a 500).

    Args:
        exc: what the run raised.
        output_size: ``(width, height)`` of the request's output, pixels.
    """
    if isinstance(exc, MaskError):
        return RequestError(400, "invalid_mask", str(exc), "content_mask")
    if is_out_of_memory(exc):
        width, height = output_size
        return RequestError(507, "out_of_memory", f"the GPU ran out of memory for a {width}x{height} px output; "
                            "lower params.image_size, or set params.tile_size to run it in smaller tiles",
                            "params.image_size")
    return None

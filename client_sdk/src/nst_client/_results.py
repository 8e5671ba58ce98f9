"""What a 2xx answer means: :class:`StylizeResult` and :class:`ModelInfo`, and the parsing of the
bodies they come from (a body that breaks the contract is an ``APIResponseValidationError``), with
the typed field readers the other answers' parsers share (``_jobs``, ``_plan``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from PIL import Image

from ._constants import MAX_ERROR_TEXT
from ._exceptions import APIResponseValidationError
from ._images import b64decode, open_image, save_encoded

__all__ = ["StylizeResult", "ModelInfo", "json_object", "stylize_result", "model_info", "optional_field",
           "required_field"]


def optional_field(obj: Mapping[str, Any], key: str, *types: type) -> Any:
    """``obj[key]`` when it is one of ``types`` (never a bool for a number), or ``None`` when it
    is absent or ``null``.

    Raises:
        ValueError: It is present, not ``null``, and of another type.
    """
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise ValueError(f"{key!r} is not {' or '.join(t.__name__ for t in types)}: {value!r}")
    return value


def required_field(obj: Mapping[str, Any], key: str, *types: type) -> Any:
    """``obj[key]``, which must be one of ``types`` (never a bool for a number).

    Raises:
        ValueError: It is absent, ``null`` or of another type.
    """
    value = optional_field(obj, key, *types)
    if value is None:
        raise ValueError(f"{key!r} is missing")
    return value


@dataclass(frozen=True)
class StylizeResult:
    """The outcome of one ``stylize`` call.

    Attributes:
        image_bytes: The output image exactly as the server encoded it.
        format: ``"png"``, ``"jpeg"``, ``"webp"`` or ``"tiff16"`` (``params.output_format``).
        width: Output width in pixels.
        height: Output height in pixels.
        iterations: Optimiser iterations actually run (``None`` if not reported).
        losses: Final losses, e.g. ``{"content": ..., "style": ..., "tv": ..., "total": ...}``.
        timings_ms: Server-side timings in milliseconds, by phase.
        params: Effective parameters the server used (its defaults filled in).
        weights: VGG weights used, e.g. ``"imagenet1k_v1"``, ``"hed-bsds500-vgg16"``,
            ``"file:<sha256>"`` or ``"random-seed-N"`` (random: plumbing tests only).
        device: Device the server ran on, e.g. ``"cpu"`` or ``"cuda:0"``.
        raw: The full decoded JSON response, including keys this SDK does not know.
        history: Per-iteration losses, each ``{"iteration", "content", "style", "tv",
            "total"}`` (``iteration`` is the optimiser iteration number; the losses are the
            same terms as in ``losses``), in the server's order. Present only when the
            request set ``return_history``, else ``None``.
        stopped: Why the optimization ended: ``"iterations"`` (all iterations ran),
            ``"time_budget"`` (``time_budget_s`` ran out first), ``"cancelled"`` (a job
            cancelled while running: the image so far) or ``"diverged"`` (a loss became NaN or
            infinite: the best image before it); ``None`` if not reported.
        cache: ``"hit"`` when the server had every style target cached, ``"miss"`` when it
            computed any; ``None`` if not reported.
    """

    image_bytes: bytes = field(repr=False)
    format: str
    width: int
    height: int
    iterations: Optional[int]
    losses: Dict[str, float]
    timings_ms: Dict[str, float]
    params: Dict[str, Any]
    weights: Optional[str]
    device: Optional[str]
    raw: Dict[str, Any] = field(repr=False)
    history: Optional[List[Dict[str, float]]] = field(default=None, repr=False)
    stopped: Optional[str] = None
    cache: Optional[str] = None

    @classmethod
    def from_response(cls, body: Dict[str, Any]) -> StylizeResult:
        """Build a result from the success JSON.

        Args:
            body: The decoded 200 response.

        Returns:
            The result.

        Raises:
            ValueError: ``image`` is missing, not base64, or not a decodable image; or
                ``history`` is present but not a list of JSON objects.
        """
        image_b64 = body.get("image")
        if not isinstance(image_b64, str) or not image_b64:
            raise ValueError('response has no "image" string')
        data = b64decode(image_b64)
        fmt = body.get("format")
        width, height = body.get("width"), body.get("height")
        if not (isinstance(fmt, str) and isinstance(width, int) and isinstance(height, int)):
            img = open_image(data)  # fill in what the server did not say
            fmt = fmt if isinstance(fmt, str) else (img.format or "png")
            width = width if isinstance(width, int) else img.width
            height = height if isinstance(height, int) else img.height
        iterations = body.get("iterations")
        history = body.get("history")
        if history is not None:
            if not isinstance(history, list) or not all(isinstance(e, dict) for e in history):
                raise ValueError('"history" is not a list of objects')
            history = [dict(e) for e in history]
        return cls(
            image_bytes=data,
            format=fmt.lower(),
            width=width,
            height=height,
            iterations=iterations if isinstance(iterations, int) else None,
            losses=dict(body.get("losses") or {}),
            timings_ms=dict(body.get("timings_ms") or {}),
            params=dict(body.get("params") or {}),
            weights=body.get("weights"),
            device=body.get("device"),
            raw=body,
            history=history,
            stopped=body.get("stopped") if isinstance(body.get("stopped"), str) else None,
            cache=body.get("cache") if isinstance(body.get("cache"), str) else None,
        )

    @cached_property
    def image(self) -> Image.Image:
        """The output as a loaded ``PIL.Image.Image`` (decoded on first access)."""
        return open_image(self.image_bytes)

    def save(self, path: Union[str, os.PathLike[str]]) -> Path:
        """Write the output image to ``path``.

        If the suffix matches ``format`` (``.png`` for png, ``.jpg``/``.jpeg`` for jpeg,
        ``.webp`` for webp, ``.tif``/``.tiff`` for tiff16) the bytes are written exactly as
        received (16 bits per channel, alpha and sRGB profile kept); otherwise the image is
        re-encoded by Pillow according to the suffix, from :attr:`image` (8 bits per channel;
        alpha dropped for JPEG).

        Args:
            path: Destination file; its parent directory must exist.

        Returns:
            The path written, as a ``Path``.

        Raises:
            ValueError: Pillow does not know the suffix.
            OSError: The file cannot be written.
        """
        return save_encoded(self.image_bytes, self.format, path, lambda: self.image)


@dataclass(frozen=True)
class ModelInfo:
    """What the server says about the model it serves (``info()``).

    Built from TorchServe's ``GET /models/<model>?customized=true`` description; the
    handler's ``describe_handle`` supplies ``customizedMetadata`` (weights, layers, device,
    limits, defaults).

    Attributes:
        model: The registered model name (``modelName``).
        version: The model archive's version (``modelVersion``), e.g. ``"1.0"``.
        weights: Provenance of the served VGG weights: ``source`` (``"imagenet"``,
            ``"imagenet-vgg16"``, ``"hed"``, ``"file"`` or ``"random"``), ``label`` (what every
            stylize answer reports as ``weights``), ``network`` (``"vgg16"`` or ``"vgg19"``),
            ``input_convention`` (``"torchvision"`` or ``"caffe"``), ``sha256`` of the served
            state dict, ``origin`` (URL, wheel, file or seed), ``credit``, and the
            ``torch``/``torchvision`` versions that made it.
        layers: The served network's layer names, in order (what ``content_layers`` and
            ``style_layers`` may name): 37 for VGG19, 31 for VGG16.
        device: Device the worker runs on, e.g. ``"cpu"`` or ``"cuda:0"``.
        limits: The server's per-request limits: ``max_image_side`` (pixels), ``max_iterations``
            (iterations), ``max_input_pixels`` (width x height), ``max_input_bytes`` (bytes),
            ``max_styles``, ``memory_budget_mb`` (the worker's peak memory budget, MiB, or
            ``None``: the server's default share of RAM or GPU memory).
        defaults: The effective value of every request parameter the client leaves out.
        workers: TorchServe's worker entries: ``id``, ``status`` (``"READY"``...), ``pid``,
            ``gpu``, ``memoryUsage`` (bytes), ...
        metadata: The whole parsed ``customizedMetadata`` (``{}`` when the server gave none).
        raw: TorchServe's whole model description, including keys this SDK does not know.
    """

    model: str
    version: Optional[str]
    weights: Dict[str, Any]
    layers: List[str]
    device: Optional[str]
    limits: Dict[str, Any]
    defaults: Dict[str, Any]
    workers: List[Dict[str, Any]]
    metadata: Dict[str, Any] = field(repr=False)
    raw: Dict[str, Any] = field(repr=False)

    @property
    def ready_workers(self) -> int:
        """How many workers are ``READY``."""
        return sum(1 for w in self.workers if w.get("status") == "READY")

    @classmethod
    def from_description(cls, description: Dict[str, Any]) -> ModelInfo:
        """Build from one element of TorchServe's model description list.

        Args:
            description: ``GET /models/<model>?customized=true``'s first element.

        Returns:
            The info; fields the server did not report are ``None`` or empty.

        Raises:
            ValueError: ``customizedMetadata`` is neither a JSON object nor a string holding
                one, or ``workers`` is not a list of objects.
        """
        meta: Any = description.get("customizedMetadata")
        if isinstance(meta, str):
            try:
                meta = json.loads(meta) if meta.strip() else {}
            except ValueError as exc:
                raise ValueError(f'"customizedMetadata" is not JSON: {exc}') from exc
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise ValueError('"customizedMetadata" is not a JSON object')
        workers = description.get("workers") or []
        if not isinstance(workers, list) or not all(isinstance(w, dict) for w in workers):
            raise ValueError('"workers" is not a list of objects')
        version = description.get("modelVersion")

        def obj(key: str) -> Dict[str, Any]:
            value = meta.get(key)
            return dict(value) if isinstance(value, dict) else {}

        return cls(
            model=str(description.get("modelName", "")),
            version=None if version is None else str(version),
            weights=obj("weights"),
            layers=[str(n) for n in meta.get("layers") or [] if isinstance(n, str)],
            device=meta.get("device") if isinstance(meta.get("device"), str) else None,
            limits=obj("limits"),
            defaults=obj("defaults"),
            workers=[dict(w) for w in workers],
            metadata=meta,
            raw=description,
        )

    def to_dict(self) -> Dict[str, Any]:
        """The info as plain JSON-serialisable data (``raw`` left out), e.g. for ``json.dumps``."""
        return {"model": self.model, "version": self.version, "weights": self.weights, "layers": self.layers,
                "device": self.device,
                "limits": self.limits, "defaults": self.defaults, "workers": self.workers}


def json_object(content: bytes, headers: Mapping[str, str], response: Any = None) -> Dict[str, Any]:
    """Decode a 2xx body that must be a JSON object.

    Raises:
        APIResponseValidationError: The body is not JSON, or not an object.
    """
    try:
        body = json.loads(content)
    except ValueError as exc:
        raise APIResponseValidationError(
            f"Expected a JSON object, got {headers.get('Content-Type')!r}", response=response,
            body=content.decode("utf-8", errors="replace")[:MAX_ERROR_TEXT]) from exc
    if not isinstance(body, dict):
        raise APIResponseValidationError("Expected a JSON object", response=response, body=body)
    return body


def stylize_result(body: Dict[str, Any], response: Any = None) -> StylizeResult:
    """The :class:`StylizeResult` of a 200 stylize answer.

    Raises:
        APIResponseValidationError: No decodable image, or a malformed ``history``.
    """
    try:
        return StylizeResult.from_response(body)
    except ValueError as exc:
        raise APIResponseValidationError(f"Malformed stylize response: {exc}", response=response, body=body) from exc


def model_info(content: bytes, headers: Mapping[str, str], response: Any = None) -> ModelInfo:
    """The :class:`ModelInfo` of a 200 ``GET /models/<name>?customized=true`` answer.

    Raises:
        APIResponseValidationError: The body is not a non-empty JSON list of model descriptions,
            or ``customizedMetadata`` is not a JSON object (or a string holding one).
    """
    try:
        body = json.loads(content)
    except ValueError as exc:
        raise APIResponseValidationError(
            f"Expected a JSON list of model descriptions, got {headers.get('Content-Type')!r}",
            response=response, body=content.decode("utf-8", errors="replace")[:MAX_ERROR_TEXT]) from exc
    if not isinstance(body, list) or not body or not isinstance(body[0], dict):
        raise APIResponseValidationError("Expected a non-empty JSON list of model descriptions",
                                         response=response, body=body)
    try:
        return ModelInfo.from_description(body[0])
    except ValueError as exc:
        raise APIResponseValidationError(f"Malformed model description: {exc}", response=response,
                                         body=body) from exc

"""The request body of ``POST /predictions/nst``: its fields, its base64 images, and the plan.

:func:`parse_request` turns one body into a :class:`StyleRequest`: the decoded RGB images, the
checked parameters and the engine's :class:`nst.plan.Plan`, or raises the
:class:`~nst_http.errors.RequestError` of the first problem, naming its field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from nst.images import ImageDecodeError, ImageTooLargeError, open_image, to_tensor
from nst.options import STYLE_RECOLOURING, OptionError, StylizeOptions
from nst.plan import Plan, check_inputs, make_plan
from nst.vgg import DEFAULT_NETWORK
from PIL import Image

from .errors import BODY_FIELDS, RequestError, bad, from_option_error
from .params import DEFAULT_LIMITS, Limits, Params, ServingOptions, parse

#: Smallest side, in pixels, of a content, style or init image as sent.
MIN_INPUT_SIDE = 16

_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class StyleRequest:
    """A checked request: decoded RGB images (in sRGB), the parameters and the plan the engine runs."""

    content: Image.Image
    styles: list[Image.Image]
    checked: Params
    plan: Plan
    init_image: Image.Image | None = None
    content_mask: Image.Image | None = None
    style_masks: list[Image.Image] | None = None
    content_alpha: Image.Image | None = None
    """The content image's alpha channel (mode ``"L"``, its size), which the output gets;
    ``None`` when it has none or it is opaque everywhere."""
    digests: dict[str, Any] | None = None
    """sha256 (hex) of each image field as sent: ``content``, ``style`` (a list), and with masks
    ``content_mask`` and ``style_masks`` (a list); what the style cache keys on."""

    @property
    def style(self) -> Image.Image:
        """The first style image."""
        return self.styles[0]

    @property
    def serving(self) -> ServingOptions:
        """How the answer is encoded and delivered."""
        return self.checked.serving

    @cached_property
    def params(self) -> dict[str, Any]:
        """The effective parameters (every one filled in), as the response echoes them."""
        return self.checked.echo(tuple(level.side for level in self.plan.levels))

    @property
    def output_size(self) -> tuple[int, int]:
        """``(width, height)`` of the output, pixels."""
        h, w = self.plan.size
        return w, h

    def options(self) -> StylizeOptions:
        """The engine options the parameters select (before ``mode``; the plan holds them after)."""
        return self.checked.options

    def tensors(self, device: torch.device | str) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, Any]]:
        """The images as the engine takes them, on ``device``: the ``(1, 3, H, W)`` content at the
        output's size, the styles at the finest level's sizes (the engine resizes them for coarser
        levels), and the keyword images of :func:`nst.stylize.stylize` (``init_image`` at the
        output's size; the masks at their own resolution: the engine labels, then resizes regions)."""
        size = self.serving.image_size
        styles = [to_tensor(s, max(hw), device) for s, hw in zip(self.styles, self.plan.levels[-1].style_sizes)]
        images: dict[str, Any] = {}
        if self.init_image is not None:
            images["init_image"] = to_tensor(self.init_image, size, device)
        if self.content_mask is not None and self.style_masks is not None:
            images["content_mask"] = to_tensor(self.content_mask, None, device)
            images["style_masks"] = [to_tensor(m, None, device) for m in self.style_masks]
        return to_tensor(self.content, size, device), styles, images

    def output_alpha(self) -> torch.Tensor | None:
        """The output's alpha channel: the content's, resized like the content, ``(1, 1, H, W)``
        in ``[0, 1]`` on the CPU; ``None`` without one."""
        if self.content_alpha is None:
            return None
        return to_tensor(self.content_alpha, self.serving.image_size)

    def style_keys(self) -> list[tuple[Any, ...]] | None:
        """One style-cache key per style image (see :class:`nst.cache.StyleTargets`): what its Gram
        matrices depend on besides the computation. Its bytes and its size at the finest level,
        plus the content (colour control recolours the style by it) and the masks when used."""
        if not self.digests:
            return None  # nothing names the inputs: no caching
        d = self.digests
        colored = self.options().color_control in STYLE_RECOLOURING
        return [
            (style, self.plan.levels[-1].style_sizes[i], d["content"] if colored else None,
             (d["content_mask"], d["style_masks"][i]) if "content_mask" in d else None)
            for i, style in enumerate(d["style"])
        ]


def decode_b64_image(value: Any, field: str, limits: Limits, *, colour_managed: bool = True) -> Image.Image:
    """Decode a base64 (or ``data:`` URL) image field to an RGB ``PIL.Image``, in sRGB with
    ``colour_managed`` (see :func:`nst.images.open_image`).

    Raises:
        RequestError: see :func:`decode_b64_with_alpha`.
    """
    return decode_b64_with_alpha(value, field, limits, colour_managed=colour_managed)[0]


def decode_b64_with_alpha(value: Any, field: str, limits: Limits, *,
                          colour_managed: bool = True) -> tuple[Image.Image, Image.Image | None]:
    """Decode a base64 (or ``data:`` URL) image field to an RGB ``PIL.Image`` and its alpha
    channel (:func:`nst.images.open_image`).

    Raises:
        RequestError: 400 ``invalid_type``/``invalid_base64``/``invalid_image``, or 413
            ``image_too_large`` over ``limits.max_input_bytes`` or ``limits.max_input_pixels``.
    """
    if not isinstance(value, str):
        raise bad("invalid_type", f"{field} must be a base64 string, got {type(value).__name__}", field)
    value = _DATA_URL.sub("", value, count=1)
    if len(value) * 3 // 4 > limits.max_input_bytes + 3:
        raise RequestError(413, "image_too_large", f"{field} is over the limit of {limits.max_input_bytes} bytes", field)
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad("invalid_base64", f"{field} is not valid base64", field) from None
    try:
        return open_image(data, max_pixels=limits.max_input_pixels, colour_managed=colour_managed)
    except ImageTooLargeError as exc:
        raise RequestError(413, "image_too_large", f"{field}: {exc}", field) from None
    except ImageDecodeError as exc:
        raise bad("invalid_image", f"{field}: {exc}", field) from None


def _image_list(value: Any, field: str, limits: Limits) -> list[Image.Image]:
    """A base64 string or a non-empty JSON array of them (at most ``limits.max_styles``)."""
    if isinstance(value, str):
        return [decode_b64_image(value, field, limits)]
    if not isinstance(value, list) or not value:
        raise bad("invalid_type", f"{field} must be a base64 string or a non-empty array of them", field)
    if len(value) > limits.max_styles:
        raise bad("out_of_range", f"{field} has {len(value)} images; at most {limits.max_styles}", field)
    return [decode_b64_image(v, f"{field}[{i}]", limits) for i, v in enumerate(value)]


def decode_body(body: Any) -> dict[str, Any]:
    """The request body (JSON text or bytes, or already parsed) as a JSON object.

    Raises:
        RequestError: 400 ``invalid_json`` or ``invalid_body``.
    """
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError) as exc:
            # ValueError covers JSONDecodeError, UnicodeDecodeError and an integer over Python's
            # 4300-digit limit; RecursionError, arrays or objects nested too deeply.
            raise bad("invalid_json", f"request body is not valid JSON: {exc}", None) from None
    if not isinstance(body, dict):
        raise bad("invalid_body", f"request body must be a JSON object, got {type(body).__name__}", None)
    return body


def _body_object(body: Any) -> dict[str, Any]:
    """The body as a JSON object with the required fields and no unknown ones (``job`` is
    :mod:`nst_http.jobs`'s, read before)."""
    body = {k: v for k, v in decode_body(body).items() if k != "job"}
    unknown = sorted(set(body) - set(BODY_FIELDS))
    if unknown:
        raise bad("unknown_field", f"unknown field {unknown[0]!r}; known: {', '.join(BODY_FIELDS)}", unknown[0])
    for name in ("content", "style"):
        if name not in body:
            raise bad("missing_field", f"{name} is required (a base64-encoded image)", name)
    return body


def _check_fields_agree(body: dict[str, Any], checked: Params, n_styles: int) -> bool:
    """Check the body's optional image fields against the parameters; return whether the
    request has masks (spatial control)."""
    if body.get("init_image") is not None and checked.options.effective().init != "image":
        raise bad("invalid_choice", 'init_image is only used with params.init = "image" (the effective init is '
                  f'{checked.options.effective().init!r}; reconstruction modes start from noise)', "params.init")
    has_mask, has_style_masks = body.get("content_mask") is not None, body.get("style_masks") is not None
    if has_mask != has_style_masks:
        missing = "style_masks" if has_mask else "content_mask"
        raise bad("missing_field", f"spatial control needs both content_mask and style_masks; {missing} is missing",
                  missing)
    if has_style_masks:
        masks = body["style_masks"]
        if not isinstance(masks, list):
            raise bad("invalid_type", f"style_masks must be an array of base64 images, got {type(masks).__name__}",
                      "style_masks")
        if len(masks) != n_styles:
            raise bad("out_of_range", f"style_masks must be an array with one mask per style image ({n_styles})",
                      "style_masks")
    return has_mask


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("ascii", "replace")).hexdigest()


def parse_request(body: Any, *, defaults: Mapping[str, Any] | None = None, limits: Limits = DEFAULT_LIMITS,
                  network: str = DEFAULT_NETWORK, budget: int | None = None) -> StyleRequest:
    """Check one request body (parsed JSON, or raw bytes/str that should be JSON) and plan it.

    Parameters and the fields' presence are checked before any image is decoded, so a bad
    parameter costs nothing; the images' sizes are then checked by making the engine's plan.
    ``network`` is the served one (see :func:`nst_http.params.parse`); ``budget`` the bytes an
    optimization may use (:func:`nst.plan.make_plan`).

    Raises:
        RequestError: the first problem found, naming its field.
    """
    body = _body_object(body)
    checked = parse(body.get("params"), defaults=defaults, limits=limits, network=network)
    style_fields = body["style"] if isinstance(body["style"], list) else [body["style"]]
    try:
        blend = check_inputs(checked.options, len(style_fields), has_init_image=body.get("init_image") is not None)
    except OptionError as exc:
        raise from_option_error(exc) from None
    has_mask = _check_fields_agree(body, checked, len(style_fields))

    content, content_alpha = decode_b64_with_alpha(body["content"], "content", limits)
    styles = _image_list(body["style"], "style", limits)
    init_image = decode_b64_image(body["init_image"], "init_image", limits) if body.get("init_image") is not None else None
    content_mask = style_masks = None
    if has_mask:
        # Masks are colour labels, not colours: no profile conversion, which could merge two labels.
        content_mask = decode_b64_image(body["content_mask"], "content_mask", limits, colour_managed=False)
        style_masks = [decode_b64_image(m, f"style_masks[{i}]", limits, colour_managed=False)
                       for i, m in enumerate(body["style_masks"])]

    # Images this small carry no content or style to speak of (a 1x1 image would be upscaled
    # into a flat colour); masks may be tiny, a one-colour mask being a whole region.
    named = [("content", content), *[(f"style[{i}]" if len(styles) > 1 else "style", s) for i, s in enumerate(styles)],
             ("init_image", init_image)]
    for field, image in named:
        if image is not None and min(image.size) < MIN_INPUT_SIDE:
            raise bad("image_too_small", f"{field} is {image.width}x{image.height} pixels; both sides must be at "
                      f"least {MIN_INPUT_SIDE}", field)
    try:
        plan = make_plan((content.height, content.width), [(s.height, s.width) for s in styles], checked.options,
                         long_side=checked.serving.image_size, blend=blend, budget=budget)
    except OptionError as exc:
        raise from_option_error(exc) from None

    digests: dict[str, Any] = {"content": _digest(body["content"]), "style": [_digest(v) for v in style_fields]}
    if has_mask:
        digests["content_mask"] = _digest(body["content_mask"])
        digests["style_masks"] = [_digest(v) for v in body["style_masks"]]
    return StyleRequest(content=content, styles=styles, checked=checked, plan=plan, init_image=init_image,
                        content_mask=content_mask, style_masks=style_masks, content_alpha=content_alpha,
                        digests=digests)

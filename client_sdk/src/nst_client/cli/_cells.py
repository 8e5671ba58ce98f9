"""A cell of ``sweep`` or ``batch``: one request, the image it writes into DIR and its place on
the contact sheet; and how cells are named (file names, labels) and keyed (inputs' SHA-256).

A cell's ``key`` is what the command decides makes an existing image this cell's (``sweep`` its
axis values, ``batch`` the model, the parameters and the inputs' SHA-256); the manifest
(``_manifest``) compares it on a rerun.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from .._images import SUFFIX_BY_FORMAT, ImageInput, StyleInput

__all__ = ["Cell", "image_suffix", "params_text", "safe_name", "sha256", "value_label"]


@dataclass
class Cell:
    """One request of a sweep or a batch, and the image it writes."""

    index: int  # position in the run, row-major over the sheet
    row: int  # the cell's row and column on the sheet
    col: int
    file: str  # image file name inside DIR
    label: str  # the cell in log lines
    content: ImageInput
    style: StyleInput
    request: Dict[str, Any]  # the other keywords of ``client.stylize``: parameters and image fields
    key: Dict[str, Any]  # the manifest entry's fields that make an existing image this cell's
    notes: Dict[str, Any] = field(default_factory=dict)  # also written into the entry, never compared


def value_label(value: Any) -> str:
    """A parameter value as it appears on a sheet and in log lines (short: 1e-05, 100, true)."""
    if isinstance(value, list):
        return "[" + ",".join(value_label(v) for v in value) + "]"
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def params_text(params: Dict[str, Any]) -> str:
    """``"style_weight=100 tv_weight=0.01"``: parameters as a sheet labels them."""
    return " ".join(f"{k}={value_label(v)}" for k, v in params.items())


def safe_name(text: str) -> str:
    """``text`` with every character but letters, digits and ``._,+-=`` replaced by ``_``."""
    return "".join(ch if ch.isalnum() or ch in "._,+-=" else "_" for ch in text)


def image_suffix(params: Dict[str, Any]) -> str:
    """The suffix of a cell's image, that of ``params``' ``output_format`` (``.jpg`` for jpeg,
    ``.png`` when it is not set), so that the image is written exactly as the server encoded it."""
    return SUFFIX_BY_FORMAT.get(params.get("output_format") or "png", ".png")


def sha256(path: Optional[str]) -> Optional[str]:
    """The SHA-256 of a file's bytes, hex; ``None`` for no path.

    Raises:
        OSError: The file cannot be read (FileNotFoundError, IsADirectoryError, ...).
    """
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()

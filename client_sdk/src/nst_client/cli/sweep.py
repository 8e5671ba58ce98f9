"""``nst-client sweep``: one request per combination of parameter values, each image, a
manifest that makes a rerun resume, and a labelled contact sheet."""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from .._client import StyleTransferClient
from .._params import DRY_RUN
from ._cells import Cell, image_suffix, params_text, safe_name, sha256, value_label
from ._contact_sheet import SHEET
from ._flags import add_cell_args, add_cells_command, image_args, parse_axis, request_params, style_input, styles
from ._manifest import Manifest, read_json
from ._run_cells import preflight, run_cells

__all__ = ["SWEEP_MANIFEST", "SWEEP_SHEET", "add_parser", "run", "text"]

SWEEP_MANIFEST = "sweep.json"
SWEEP_SHEET = SHEET
_MANIFEST_FORMAT = 1


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``sweep`` command to the subparsers ``sub``."""
    sw = add_cells_command(
        sub, common, "sweep", summary="render a grid of parameter values into DIR, with a contact sheet",
        description="Render CONTENT in the style of STYLE(s) once per combination of the --param "
                    "values and write each image, a manifest (sweep.json) and a labelled contact "
                    "sheet (sheet.png) into DIR. The first --param gives the sheet's rows, the "
                    "others its columns. Resumable: a rerun skips every cell whose image and "
                    "manifest entry exist. Every other flag applies to every cell.",
        content=("CONTENT", "content image file"))
    g = sw.add_argument_group("sweep")
    g.add_argument("--param", dest="axes", action="append", type=parse_axis, default=[],
                   metavar="KEY=V1,V2,...", required=True,
                   help="a parameter and its values (each parsed as JSON if possible; a list value "
                        "in brackets: scales=[128,256],[256,512]); repeatable, one axis each; a single "
                        "value sends that parameter to every cell")
    add_cell_args(g, "cells")


def _value_name(value: Any) -> str:
    """A parameter value as it appears in a cell's file name (exact, JSON-like)."""
    if isinstance(value, list):
        return ",".join(_value_name(v) for v in value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _cell_file(cell: Dict[str, Any], suffix: str) -> str:
    return safe_name("__".join(f"{k}={_value_name(v)}" for k, v in cell.items())) + suffix


@dataclass
class _Grid:
    """The cells of a sweep: the first axis gives the sheet's rows, the product of the others its
    columns (one axis alone gives one row)."""

    names: List[str]  # the axes, in --param order
    row_values: List[Any]  # the first axis's values, or [None] for a single axis
    col_axes: List[str]
    col_values: List[Tuple[Any, ...]]
    cells: List[Cell]


def _grid(args: argparse.Namespace, axes: Dict[str, List[Any]], base: Dict[str, Any]) -> _Grid:
    names = list(axes)
    row_values = axes[names[0]] if len(names) > 1 else [None]
    col_axes = names[1:] if len(names) > 1 else names
    col_values = list(itertools.product(*(axes[n] for n in col_axes)))
    images = image_args(args)
    style = style_input(styles(args))
    cells: List[Cell] = []
    for r, rv in enumerate(row_values):
        for c, cv in enumerate(col_values):
            params = {} if rv is None else {names[0]: rv}
            params.update(zip(col_axes, cv))
            cells.append(Cell(len(cells), r, c, _cell_file(params, image_suffix({**base, **params})),
                              params_text(params), args.content, style, {**images, **base, **params},
                              key={"params": params}))
    files = [c.file for c in cells]
    if len(set(files)) != len(files):
        raise ValueError("two cells would get the same file name; make the --param values differ "
                         "in more than punctuation")
    return _Grid(names, row_values, col_axes, col_values, cells)


def _axes(args: argparse.Namespace, base: Dict[str, Any]) -> Dict[str, List[Any]]:
    """The --param axes, each given once and none also set by its own flag."""
    axes: Dict[str, List[Any]] = {}
    for key, values in args.axes:
        if key in axes:
            raise ValueError(f"--param {key} is given twice; list all its values in one --param")
        axes[key] = values
    both = sorted(set(base) & set(axes))
    if both:
        raise ValueError(f"{', '.join(both)}: set by a flag and by --param; use one of them")
    return axes


def _open_manifest(args: argparse.Namespace, axes: Dict[str, List[Any]], base: Dict[str, Any]) -> Manifest:
    """The manifest of DIR: a new one, or the finished cells of an earlier run with the same
    settings (the model, the fixed parameters and the input images' contents; their paths may
    differ). Creates DIR.

    Raises:
        ValueError: DIR holds a manifest that is not JSON, or one of other settings.
    """
    paths = styles(args)
    inputs: Dict[str, Any] = {"content": sha256(args.content), "styles": [sha256(s) for s in paths]}
    names: Dict[str, Any] = {"content": str(args.content), "styles": [str(s) for s in paths]}
    for key, value in image_args(args).items():
        if isinstance(value, list):
            inputs[key], names[key] = [sha256(v) for v in value], [str(v) for v in value]
        else:
            inputs[key], names[key] = sha256(value), value
    settings = {"model": args.model, "inputs_sha256": inputs, "params": base}

    out_dir = Path(args.output)
    manifest_path = out_dir / SWEEP_MANIFEST
    manifest: Dict[str, Any] = {"format": _MANIFEST_FORMAT, **settings, "inputs": names, "axes": axes,
                                "cells": {}}
    old = read_json(manifest_path)
    if old is not None:
        for key, value in settings.items():
            if old.get(key) != value:
                raise ValueError(
                    f"{out_dir} holds a sweep with other settings ({key} differs from this command's); "
                    "use another -o DIR, or delete the directory to start afresh")
        manifest["cells"] = dict(old.get("cells") or {})
    out_dir.mkdir(parents=True, exist_ok=True)
    return Manifest(manifest_path, manifest, "cells")


def run(args: argparse.Namespace, make_client: Callable[[], StyleTransferClient],
        log: Callable[[str], None]) -> Dict[str, Any]:
    """Run ``sweep``; return its JSON document (the text summary is :func:`text`'s)."""
    base = request_params(args)
    axes = _axes(args, base)
    preflight(args, "cell", dry_run=bool(base.get(DRY_RUN)) or DRY_RUN in axes,
              inputs=[(args.content, "content"), *((s, f"style[{i}]") for i, s in enumerate(styles(args)))])
    manifest = _open_manifest(args, axes, base)
    grid = _grid(args, axes, base)
    outcome = run_cells(args, grid.cells, manifest, make_client, log, stops=lambda exc: True,
                        **_sheet_labels(args, grid, manifest))
    cells_doc = []
    for cell in grid.cells:
        status = "rendered" if cell.file in outcome.rendered else "skipped"
        cells_doc.append({"file": cell.file, "status": status, "row": cell.row, "col": cell.col,
                          **manifest.doc["cells"][cell.file]})
    return {"ok": True, "command": "sweep", "dir": str(manifest.path.parent), "sheet": str(outcome.sheet),
            "manifest": str(manifest.path), "axes": axes, "rendered": len(outcome.rendered),
            "skipped": len(grid.cells) - len(outcome.rendered), "cells": cells_doc}


def _sheet_labels(args: argparse.Namespace, grid: _Grid, manifest: Manifest) -> Dict[str, Any]:
    """The contact sheet's row and column labels and title."""
    row_labels = ["" if v is None else f"{grid.names[0]}={value_label(v)}" for v in grid.row_values]
    col_labels = [params_text(dict(zip(grid.col_axes, cv))) for cv in grid.col_values]
    fixed = params_text(manifest.doc["params"])
    title = (f"{Path(args.content).name} in the style of {', '.join(Path(s).name for s in styles(args))}"
             + (f"; {fixed}" if fixed else ""))
    return {"row_labels": row_labels, "col_labels": col_labels, "title": title}


def text(doc: Dict[str, Any]) -> str:
    """The one-line summary of a ``sweep`` document."""
    return (f"wrote {doc['sheet']} ({len(doc['cells'])} cells: {doc['rendered']} rendered, "
            f"{doc['skipped']} skipped) and {doc['manifest']}")


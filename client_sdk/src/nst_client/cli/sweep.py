"""``nst-client sweep``: one request per combination of parameter values, each image, a
manifest that makes a rerun resume, and a labelled contact sheet."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import queue
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from PIL import Image

from .._client import StyleTransferClient
from .._images import to_image_bytes
from .._params import DRY_RUN
from .._results import StylizeResult
from .._stream import require_tqdm
from ._flags import add_request_args, image_args, parse_axis, positive_int, request_params, style_input, styles
from ._output import fmt_losses, result_doc

__all__ = ["SWEEP_MANIFEST", "SWEEP_SHEET", "add_parser", "run", "text"]

SWEEP_MANIFEST = "sweep.json"
SWEEP_SHEET = "sheet.png"
_MANIFEST_FORMAT = 1


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``sweep`` command to the subparsers ``sub``."""
    sw = sub.add_parser(
        "sweep", parents=[common], help="render a grid of parameter values into DIR, with a contact sheet",
        description="Render CONTENT in the style of STYLE(s) once per combination of the --param "
                    "values and write each image, a manifest (sweep.json) and a labelled contact "
                    "sheet (sheet.png) into DIR. The first --param gives the sheet's rows, the "
                    "others its columns. Resumable: a rerun skips every cell whose image and "
                    "manifest entry exist. Every other flag applies to every cell.")
    sw.add_argument("content", metavar="CONTENT", help="content image file")
    sw.add_argument("styles", nargs="*", metavar="STYLE",
                    help="style image file(s); at least one in total with --style")
    sw.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (created)")
    add_request_args(sw)
    g = sw.add_argument_group("sweep")
    g.add_argument("--param", dest="axes", action="append", type=parse_axis, default=[],
                   metavar="KEY=V1,V2,...", required=True,
                   help="a parameter and its values (each parsed as JSON if possible; a list value "
                        "in brackets: scales=[128,256],[256,512]); repeatable, one axis each; a single "
                        "value sends that parameter to every cell")
    g.add_argument("--concurrency", type=positive_int, default=1, metavar="N",
                   help="requests in flight at once (default: %(default)d, one after the other)")
    g.add_argument("--tile", type=positive_int, default=256, metavar="PX",
                   help="longest side of each image on the sheet, px (default: %(default)d; never enlarged)")
    g.add_argument("--progress", action="store_true",
                   help="show a progress bar over the cells on stderr (needs the 'progress' extra)")


def _value_name(value: Any) -> str:
    """A parameter value as it appears in a cell's file name (exact, JSON-like)."""
    if isinstance(value, list):
        return ",".join(_value_name(v) for v in value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _value_label(value: Any) -> str:
    """A parameter value as it appears on the sheet (short: 1e-05, 100, true)."""
    if isinstance(value, list):
        return "[" + ",".join(_value_label(v) for v in value) + "]"
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._,+-=" else "_" for ch in text)


def _cell_file(cell: Dict[str, Any], suffix: str) -> str:
    return _safe("__".join(f"{k}={_value_name(v)}" for k, v in cell.items())) + suffix


def _sha256(path: Optional[str]) -> Optional[str]:
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class _Cell:
    index: int  # position in the grid, row-major
    row: int
    col: int
    params: Dict[str, Any]  # the axis values of this cell
    file: str  # image file name inside DIR


def _write_json(path: Path, doc: Dict[str, Any]) -> None:
    """Write ``doc`` atomically (a temporary file renamed over ``path``)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


@dataclass
class _Grid:
    """The cells of a sweep: the first axis gives the sheet's rows, the product of the others its
    columns (one axis alone gives one row)."""

    names: List[str]  # the axes, in --param order
    row_values: List[Any]  # the first axis's values, or [None] for a single axis
    col_axes: List[str]
    col_values: List[Tuple[Any, ...]]
    cells: List[_Cell]


def _grid(axes: Dict[str, List[Any]], base: Dict[str, Any]) -> _Grid:
    names = list(axes)
    row_values = axes[names[0]] if len(names) > 1 else [None]
    col_axes = names[1:] if len(names) > 1 else names
    col_values = list(itertools.product(*(axes[n] for n in col_axes)))
    cells: List[_Cell] = []
    for r, rv in enumerate(row_values):
        for c, cv in enumerate(col_values):
            params = {} if rv is None else {names[0]: rv}
            params.update(zip(col_axes, cv))
            suffix = ".jpg" if {**base, **params}.get("output_format") == "jpeg" else ".png"
            cells.append(_Cell(len(cells), r, c, params, _cell_file(params, suffix)))
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


def _open_manifest(args: argparse.Namespace, axes: Dict[str, List[Any]], base: Dict[str, Any]) -> Dict[str, Any]:
    """The manifest of DIR: a new one, or the finished cells of an earlier run with the same
    settings (the model, the fixed parameters and the input images' contents; their paths may
    differ). Creates DIR.

    Raises:
        ValueError: DIR holds a manifest that is not JSON, or one of other settings.
    """
    paths = styles(args)
    inputs: Dict[str, Any] = {"content": _sha256(args.content), "styles": [_sha256(s) for s in paths]}
    names: Dict[str, Any] = {"content": str(args.content), "styles": [str(s) for s in paths]}
    for key, value in image_args(args).items():
        if isinstance(value, list):
            inputs[key], names[key] = [_sha256(v) for v in value], [str(v) for v in value]
        else:
            inputs[key], names[key] = _sha256(value), value
    settings = {"model": args.model, "inputs_sha256": inputs, "params": base}

    out_dir = Path(args.output)
    manifest_path = out_dir / SWEEP_MANIFEST
    manifest: Dict[str, Any] = {"format": _MANIFEST_FORMAT, **settings, "inputs": names, "axes": axes,
                                "cells": {}}
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{manifest_path} is not JSON ({exc}); move it away to start afresh") from exc
        for key, value in settings.items():
            if old.get(key) != value:
                raise ValueError(
                    f"{out_dir} holds a sweep with other settings ({key} differs from this command's); "
                    "use another -o DIR, or delete the directory to start afresh")
        manifest["cells"] = dict(old.get("cells") or {})
    out_dir.mkdir(parents=True, exist_ok=True)
    return manifest


def run(args: argparse.Namespace, make_client: Callable[[], StyleTransferClient],
        log: Callable[[str], None]) -> Dict[str, Any]:
    """Run ``sweep``; return its JSON document (the text summary is :func:`text`'s)."""
    base = request_params(args)
    axes = _axes(args, base)
    if base.get(DRY_RUN) or DRY_RUN in axes:
        raise ValueError("sweep: --dry-run is not supported (one plan per cell); see one cell's plan with "
                         "nst-client plan and the same flags")
    # Read every input before anything is sent or written (FileNotFoundError, a directory...).
    for i, path in enumerate([args.content, *styles(args)]):
        to_image_bytes(path, name="content" if i == 0 else f"style[{i - 1}]")
    if args.progress:
        require_tqdm()
    manifest = _open_manifest(args, axes, base)
    out_dir = Path(args.output)
    manifest_path = out_dir / SWEEP_MANIFEST
    grid = _grid(axes, base)

    def finished(cell: _Cell) -> bool:
        entry = manifest["cells"].get(cell.file)
        return bool(entry) and entry.get("params") == cell.params and (out_dir / cell.file).is_file()

    todo = [c for c in grid.cells if not finished(c)]
    total = len(grid.cells)
    for cell in grid.cells:
        if cell not in todo:
            log(f"[{cell.index + 1}/{total}] {_cell_text(cell)}: done before, skipped")

    rendered, error = _render(args, todo, total, base, manifest, make_client, log)
    _write_json(manifest_path, manifest)
    sheet = _sweep_sheet(args, grid, manifest, out_dir)
    if error is not None:
        raise error
    cells_doc = []
    for cell in grid.cells:
        entry = manifest["cells"][cell.file]
        status = "rendered" if any(r["file"] == cell.file for r in rendered) else "skipped"
        cells_doc.append({"file": cell.file, "status": status, "row": cell.row, "col": cell.col, **entry})
    return {"ok": True, "command": "sweep", "dir": str(out_dir), "sheet": str(sheet),
            "manifest": str(manifest_path), "axes": axes, "rendered": len(rendered),
            "skipped": total - len(rendered), "cells": cells_doc}


def _render(args: argparse.Namespace, todo: List[_Cell], total: int, base: Dict[str, Any],
            manifest: Dict[str, Any], make_client: Callable[[], StyleTransferClient],
            log: Callable[[str], None]) -> Tuple[List[Dict[str, Any]], Optional[BaseException]]:
    """Render the cells of ``todo``, ``--concurrency`` at a time, recording each finished one in
    the manifest (rewritten after each); after the first failure no new cell is started.

    Returns:
        ``(rendered, error)``: a document entry per cell rendered, and the first failure.
    """
    out_dir = Path(args.output)
    manifest_path = out_dir / SWEEP_MANIFEST
    images = image_args(args)
    style = style_input(styles(args))
    # Each worker thread takes a client of its own from the pool (requests sessions are not
    # shared between threads).
    n_workers = min(args.concurrency, len(todo)) or 1
    pool: queue.SimpleQueue[StyleTransferClient] = queue.SimpleQueue()
    clients = [make_client() for _ in range(n_workers)] if todo else []
    for sweep_client in clients:
        pool.put(sweep_client)
    stop = threading.Event()

    def render(cell: _Cell) -> Optional[Tuple[StylizeResult, float]]:
        if stop.is_set():
            return None  # an earlier cell failed: start nothing new
        client = pool.get()
        try:
            start = time.monotonic()
            result = client.stylize(args.content, style, **images, **base, **cell.params)
            elapsed = time.monotonic() - start
            tmp = out_dir / (cell.file + ".part" + Path(cell.file).suffix)
            result.save(tmp)
            os.replace(tmp, out_dir / cell.file)  # a half-written image never counts as finished
            return result, elapsed
        except BaseException:
            stop.set()  # before this thread takes its next cell
            raise
        finally:
            pool.put(client)

    bar: Any = None
    if args.progress and todo:
        bar = require_tqdm()(total=len(todo), unit="cell", file=sys.stderr, dynamic_ncols=True)
        log = bar.write if not args.json else log
    rendered: List[Dict[str, Any]] = []
    error: Optional[BaseException] = None
    interrupted = False
    executor = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="nst-sweep")
    try:
        pending: Dict[Future[Optional[Tuple[StylizeResult, float]]], _Cell] = {
            executor.submit(render, cell): cell for cell in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                cell = pending.pop(fut)
                try:
                    outcome = fut.result()
                except Exception as exc:
                    if error is None:
                        error = exc
                        stop.set()
                        log(f"[{cell.index + 1}/{total}] {_cell_text(cell)}: failed: {exc}")
                    continue
                if outcome is None:
                    continue
                result, elapsed = outcome
                effective = result_doc(result)
                effective["effective_params"] = effective.pop("params")
                entry = {"params": cell.params, **effective, "elapsed_s": round(elapsed, 3)}
                manifest["cells"][cell.file] = entry
                _write_json(manifest_path, manifest)
                rendered.append({"file": cell.file, **entry})
                if bar is not None:
                    bar.update(1)
                log(f"[{cell.index + 1}/{total}] {_cell_text(cell)} -> {out_dir / cell.file} in {elapsed:.1f} s: "
                    f"iterations={result.iterations} losses[{fmt_losses(result.losses)}]")
    except KeyboardInterrupt:
        # Start no new cell; requests in flight are left to finish in their threads.
        interrupted = True
        stop.set()
        raise
    finally:
        executor.shutdown(wait=not interrupted, cancel_futures=True)
        if bar is not None:
            bar.close()
        for sweep_client in clients:
            sweep_client.close()
    return rendered, error


def _cell_text(cell: _Cell) -> str:
    return " ".join(f"{k}={_value_label(v)}" for k, v in cell.params.items())


def _sweep_sheet(args: argparse.Namespace, grid: _Grid, manifest: Dict[str, Any], out_dir: Path) -> Path:
    """Write DIR/sheet.png from the cells' files (a cell not finished shows as missing)."""
    from .sheets import grid_sheet

    tiles: List[List[Optional[Image.Image]]] = [[None] * len(grid.col_values) for _ in grid.row_values]
    for cell in grid.cells:
        path = out_dir / cell.file
        if cell.file in manifest["cells"] and path.is_file():
            with Image.open(path) as img:
                img.load()
                tiles[cell.row][cell.col] = img.copy()
    row_labels = ["" if v is None else f"{grid.names[0]}={_value_label(v)}" for v in grid.row_values]
    col_labels = [" ".join(f"{k}={_value_label(v)}" for k, v in zip(grid.col_axes, cv)) for cv in grid.col_values]
    fixed = " ".join(f"{k}={_value_label(v)}" for k, v in manifest["params"].items())
    title = (f"{Path(args.content).name} in the style of {', '.join(Path(s).name for s in styles(args))}"
             + (f"; {fixed}" if fixed else ""))
    path = out_dir / SWEEP_SHEET
    grid_sheet(tiles, row_labels=row_labels, col_labels=col_labels, tile=args.tile, title=title).image.save(path)
    return path


def text(doc: Dict[str, Any]) -> str:
    """The one-line summary of a ``sweep`` document."""
    return (f"wrote {doc['sheet']} ({len(doc['cells'])} cells: {doc['rendered']} rendered, "
            f"{doc['skipped']} skipped) and {doc['manifest']}")


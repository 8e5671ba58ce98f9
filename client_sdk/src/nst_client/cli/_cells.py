"""What ``sweep`` and ``batch`` share: a list of cells (one request each, and the image it
writes into DIR) run ``--concurrency`` at a time, a manifest in DIR that makes a rerun skip the
cells already done, a progress bar over the cells, and the labelled contact sheet.

A cell counts as done when its image exists and its manifest entry holds the cell's ``key``
(what the command decides makes an image this cell's: ``sweep`` its axis values, ``batch`` the
model, the parameters and the inputs' SHA-256) and no ``error``. Each command decides which
failures stop the run (``stops``); the others are recorded in the manifest and the run goes on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from PIL import Image

from .._client import StyleTransferClient
from .._images import SUFFIX_BY_FORMAT, ImageInput, StyleInput, to_image_bytes
from .._results import StylizeResult
from .._stream import require_tqdm
from ._flags import add_request_args, positive_int
from ._output import error_fields, fmt_losses, result_doc

__all__ = ["SHEET", "Cell", "Manifest", "Outcome", "add_cell_args", "add_command", "image_suffix", "params_text",
           "preflight", "read_json", "run_cells", "safe_name", "sha256", "value_label", "write_json"]

#: The contact sheet's file name in DIR.
SHEET = "sheet.png"


def add_command(sub: Any, common: argparse.ArgumentParser, name: str, *, summary: str, description: str,
                content: Tuple[str, str]) -> argparse.ArgumentParser:
    """Add the command ``name`` to the subparsers ``sub``, with CONTENT (``content``: its metavar
    and help), STYLE(s), ``-o DIR`` and the request flags; return its parser."""
    parser: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=summary, description=description)
    parser.add_argument("content", metavar=content[0], help=content[1])
    parser.add_argument("styles", nargs="*", metavar="STYLE",
                        help="style image file(s); at least one in total with --style")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (created)")
    add_request_args(parser)
    return parser


def add_cell_args(group: Any, what: str) -> None:
    """Add ``--concurrency``, ``--tile`` and ``--progress`` to the argument group ``group``;
    ``what`` names the cells in their help (``"cells"``, ``"pairs"``)."""
    group.add_argument("--concurrency", type=positive_int, default=1, metavar="N",
                       help="requests in flight at once (default: %(default)d, one after the other)")
    group.add_argument("--tile", type=positive_int, default=256, metavar="PX",
                       help="longest side of each image on the sheet, px (default: %(default)d; never enlarged)")
    group.add_argument("--progress", action="store_true",
                       help=f"show a progress bar over the {what} on stderr (needs the 'progress' extra)")


def preflight(args: argparse.Namespace, unit: str, *, dry_run: bool, inputs: Sequence[Tuple[str, str]]) -> None:
    """Fail before anything is sent or written: on ``dry_run`` (one plan per ``unit``, so none),
    an image of ``inputs`` (``(path, name)`` pairs) that cannot be read, or ``--progress`` without tqdm.

    Raises:
        ValueError: ``dry_run``, or an empty image file.
        OSError: An image cannot be read (FileNotFoundError, IsADirectoryError, ...).
        MissingDependencyError: ``--progress`` without tqdm.
    """
    if dry_run:
        raise ValueError(f"{args.command}: --dry-run is not supported (one plan per {unit}); see one {unit}'s "
                         "plan with nst-client plan and the same flags")
    for path, name in inputs:
        to_image_bytes(path, name=name)
    if args.progress:
        require_tqdm()


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


def write_json(path: Path, doc: Dict[str, Any]) -> None:
    """Write ``doc`` atomically (a temporary file renamed over ``path``)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    """The JSON object in ``path``; ``None`` when there is no such file.

    Raises:
        ValueError: The file is not a JSON object.
    """
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON ({exc}); move it away to start afresh") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a manifest (not a JSON object); move it away to start afresh")
    return doc


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


@dataclass
class Manifest:
    """A run's manifest: the JSON document ``doc`` of ``path``, whose member ``entries`` maps
    each cell's file name to its entry."""

    path: Path
    doc: Dict[str, Any]
    entries: str

    def entry(self, cell: Cell) -> Optional[Dict[str, Any]]:
        """The manifest entry of ``cell``'s file, if any (one that is not a JSON object is none)."""
        found = self.doc[self.entries].get(cell.file)
        return found if isinstance(found, dict) else None

    def done(self, cell: Cell) -> bool:
        """Whether ``cell``'s image exists and its entry is a success with the cell's key."""
        entry = self.entry(cell)
        return (entry is not None and "error" not in entry and all(entry.get(k) == v for k, v in cell.key.items())
                and (self.path.parent / cell.file).is_file())

    def record(self, cell: Cell, fields: Dict[str, Any]) -> Dict[str, Any]:
        """Set ``cell``'s entry to its key, notes and ``fields``, rewrite the file; return the entry."""
        entry = {**cell.key, **cell.notes, **fields}
        self.doc[self.entries][cell.file] = entry
        self.save()
        return entry

    def save(self) -> None:
        """Rewrite the manifest file (atomically)."""
        write_json(self.path, self.doc)


@dataclass
class Outcome:
    """What :func:`run_cells` did."""

    rendered: Dict[str, Dict[str, Any]]  # file name -> manifest entry, of each cell rendered now
    failed: List[Tuple[Cell, Exception]]  # the failures that did not stop the run, in finishing order
    error: Optional[Exception] = None  # the failure that stopped the run
    sheet: Optional[Path] = None  # the contact sheet written


def run_cells(args: argparse.Namespace, cells: Sequence[Cell], manifest: Manifest,
              make_client: Callable[[], StyleTransferClient], log: Callable[[str], None], *,
              stops: Callable[[Exception], bool], row_labels: Sequence[str], col_labels: Sequence[str],
              title: str) -> Outcome:
    """Render the cells not done yet (see :func:`_render`), then, whatever happened, rewrite the
    manifest and write DIR/sheet.png (``args.tile``; see :func:`_write_sheet`), then raise the
    failure that stopped the run, if one did.

    Returns:
        The :class:`Outcome`, ``error`` ``None`` and ``sheet`` set.

    Raises:
        MissingDependencyError: ``args.progress`` without tqdm.
        KeyboardInterrupt: Ctrl-C (nothing more is written).
        Exception: The failure that stopped the run (``stops``), after the manifest and the sheet.
    """
    outcome = _render(args, cells, manifest, make_client, log, stops)
    manifest.save()
    outcome.sheet = _write_sheet(manifest, cells, row_labels=row_labels, col_labels=col_labels, tile=args.tile,
                                 title=title)
    if outcome.error is not None:
        raise outcome.error
    return outcome


def _render(args: argparse.Namespace, cells: Sequence[Cell], manifest: Manifest,
            make_client: Callable[[], StyleTransferClient], log: Callable[[str], None],
            stops: Callable[[Exception], bool]) -> Outcome:
    """Render each cell of ``cells`` not done yet (see :meth:`Manifest.done`; the others are
    logged as skipped), ``args.concurrency`` at a time, each into its file in the manifest's
    directory, with a progress bar over them when ``args.progress``.

    Each finished cell is recorded in the manifest at once (rewritten after each). A failure
    for which ``stops(exc)`` is true starts no further cell (cells in flight finish and are
    kept); any other failure is recorded in the manifest as the cell's ``error`` and the run
    goes on. Ctrl-C starts no new cell and is raised.

    Returns:
        The :class:`Outcome`.

    Raises:
        MissingDependencyError: ``args.progress`` without tqdm.
        KeyboardInterrupt: Ctrl-C.
    """
    out_dir = manifest.path.parent
    total = len(cells)
    todo = [c for c in cells if not manifest.done(c)]
    todo_files = {c.file for c in todo}
    for cell in cells:
        if cell.file not in todo_files:
            log(f"[{cell.index + 1}/{total}] {cell.label}: done before, skipped")
    # Each worker thread takes a client of its own from the pool (requests sessions are not
    # shared between threads).
    n_workers = min(args.concurrency, len(todo)) or 1
    pool: queue.SimpleQueue[StyleTransferClient] = queue.SimpleQueue()
    clients = [make_client() for _ in range(n_workers)] if todo else []
    for client in clients:
        pool.put(client)
    stop = threading.Event()

    def render(cell: Cell) -> Optional[Tuple[StylizeResult, float]]:
        if stop.is_set():
            return None  # an earlier cell failed: start nothing new
        client = pool.get()
        try:
            start = time.monotonic()
            result = client.stylize(cell.content, cell.style, **cell.request)
            elapsed = time.monotonic() - start
            tmp = out_dir / (cell.file + ".part" + Path(cell.file).suffix)
            result.save(tmp)
            os.replace(tmp, out_dir / cell.file)  # a half-written image never counts as done
            return result, elapsed
        except BaseException as exc:
            if not isinstance(exc, Exception) or stops(exc):
                stop.set()  # before this thread takes its next cell
            raise
        finally:
            pool.put(client)

    bar: Any = None
    if args.progress and todo:
        bar = require_tqdm()(total=len(todo), unit="cell", file=sys.stderr, dynamic_ncols=True)
        log = bar.write if not args.json else log
    outcome = Outcome({}, [])
    interrupted = False
    executor = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="nst-cells")
    try:
        pending: Dict[Future[Optional[Tuple[StylizeResult, float]]], Cell] = {
            executor.submit(render, cell): cell for cell in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                cell = pending.pop(fut)
                where = f"[{cell.index + 1}/{total}] {cell.label}"
                try:
                    answer = fut.result()
                except Exception as exc:
                    if stops(exc):
                        if outcome.error is None:
                            outcome.error = exc
                            stop.set()
                            log(f"{where}: failed: {exc}")
                        continue
                    outcome.failed.append((cell, exc))
                    manifest.record(cell, {"error": error_fields(exc)})
                    log(f"{where}: failed: {exc}")
                    if bar is not None:
                        bar.update(1)
                    continue
                if answer is None:
                    continue
                result, elapsed = answer
                effective = result_doc(result)
                effective["effective_params"] = effective.pop("params")
                outcome.rendered[cell.file] = manifest.record(cell, {**effective, "elapsed_s": round(elapsed, 3)})
                if bar is not None:
                    bar.update(1)
                log(f"{where} -> {out_dir / cell.file} in {elapsed:.1f} s: "
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
        for client in clients:
            client.close()
    return outcome


def _write_sheet(manifest: Manifest, cells: Sequence[Cell], *, row_labels: Sequence[str],
                 col_labels: Sequence[str], tile: int, title: str) -> Path:
    """Write DIR/sheet.png: each done cell's image at its row and column, scaled down (never
    up) to ``tile`` px; a cell not done shows as a grey "missing" tile.

    Returns:
        The sheet's path.

    Raises:
        OSError: An image or the sheet cannot be read or written.
    """
    from .sheets import fit_within, grid_sheet

    out_dir = manifest.path.parent
    tiles: List[List[Optional[Image.Image]]] = [[None] * len(col_labels) for _ in row_labels]
    for cell in cells:
        if manifest.done(cell):
            with Image.open(out_dir / cell.file) as img:
                # Scaled down at once, so that a batch of large images is never all in memory.
                tiles[cell.row][cell.col] = fit_within(img, tile, tile)
    path = out_dir / SHEET
    grid_sheet(tiles, row_labels=row_labels, col_labels=col_labels, tile=tile, title=title).image.save(path)
    return path

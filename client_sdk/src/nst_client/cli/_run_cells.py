"""The run of ``sweep`` and ``batch``: the cells not done yet sent ``--concurrency`` at a time
through the SDK's executor (:func:`nst_client.stylize_many`, over one client), each finished cell
recorded in the manifest at once, a progress bar and a log line per cell, then the contact sheet.

Each command decides which failures stop the run (``stops``): no further cell is started, the
cells in flight finish and are kept. The other failures are recorded in the manifest as the
cell's ``error`` and the run goes on. Ctrl-C starts no new cell and is raised (the requests in
flight run to their end in their threads; nothing more is recorded).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .._client import StyleTransferClient
from .._images import to_image_bytes
from .._many import StylizeCall, StylizeOutcome, stylize_many
from .._stream import require_tqdm
from ._cells import Cell
from ._contact_sheet import write_contact_sheet
from ._manifest import Manifest
from ._output import error_fields, fmt_losses, result_doc

__all__ = ["Outcome", "preflight", "run_cells"]


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
    manifest and write DIR/sheet.png (``args.tile``; see :func:`write_contact_sheet`), then raise
    the failure that stopped the run, if one did.

    Returns:
        The :class:`Outcome`, ``error`` ``None`` and ``sheet`` set.

    Raises:
        MissingDependencyError: ``args.progress`` without tqdm.
        KeyboardInterrupt: Ctrl-C (nothing more is written).
        Exception: The failure that stopped the run (``stops``), after the manifest and the sheet.
    """
    outcome = _render(args, cells, manifest, make_client, log, stops)
    manifest.save()
    outcome.sheet = write_contact_sheet(manifest, cells, row_labels=row_labels, col_labels=col_labels,
                                        tile=args.tile, title=title)
    if outcome.error is not None:
        raise outcome.error
    return outcome


def _render(args: argparse.Namespace, cells: Sequence[Cell], manifest: Manifest,
            make_client: Callable[[], StyleTransferClient], log: Callable[[str], None],
            stops: Callable[[Exception], bool]) -> Outcome:
    """Render each cell of ``cells`` not done yet (the others are logged as skipped),
    ``args.concurrency`` at a time over one client, each into its file in DIR, with a progress
    bar over them when ``args.progress``; record each in the manifest as it finishes.

    Raises:
        MissingDependencyError: ``args.progress`` without tqdm.
        KeyboardInterrupt: Ctrl-C.
    """
    todo: List[Cell] = []
    for cell in cells:
        if manifest.done(cell):
            log(f"[{cell.index + 1}/{len(cells)}] {cell.label}: done before, skipped")
        else:
            todo.append(cell)
    outcome = Outcome({}, [])
    if not todo:
        return outcome
    bar: Any = None
    if args.progress:
        bar = require_tqdm()(total=len(todo), unit="cell", file=sys.stderr, dynamic_ncols=True)
        log = bar.write if not args.json else log
    calls = [StylizeCall(c.content, c.style, c.request, save_to=manifest.dir / c.file, tag=c) for c in todo]
    try:
        with make_client() as client, \
                closing(stylize_many(client, calls, concurrency=args.concurrency, stop_on=stops)) as finished:
            for done in finished:
                if _record(done, outcome, manifest, log, stops, len(cells)) and bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return outcome


def _record(done: StylizeOutcome[Cell], outcome: Outcome, manifest: Manifest, log: Callable[[str], None],
            stops: Callable[[Exception], bool], total: int) -> bool:
    """Record one finished cell in ``outcome`` and the manifest, and log it. The first failure
    that ``stops`` the run becomes ``outcome.error`` (recorded nowhere else); one after it is
    dropped. Returns whether the cell counts on the progress bar (all but those)."""
    cell = done.call.tag
    assert cell is not None  # every call of _render has its cell
    where = f"[{cell.index + 1}/{total}] {cell.label}"
    if done.error is not None:
        if stops(done.error):
            if outcome.error is None:
                outcome.error = done.error
                log(f"{where}: failed: {done.error}")
            return False
        outcome.failed.append((cell, done.error))
        manifest.record(cell, {"error": error_fields(done.error)})
        log(f"{where}: failed: {done.error}")
        return True
    assert done.result is not None
    effective = result_doc(done.result)
    effective["effective_params"] = effective.pop("params")
    outcome.rendered[cell.file] = manifest.record(cell, {**effective, "elapsed_s": round(done.elapsed_s, 3)})
    log(f"{where} -> {manifest.dir / cell.file} in {done.elapsed_s:.1f} s: "
        f"iterations={done.result.iterations} losses[{fmt_losses(done.result.losses)}]")
    return True

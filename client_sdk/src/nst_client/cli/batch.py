"""``nst-client batch``: every content image of a directory or glob pattern in the style of each
STYLE, one image per (content, style) pair, a manifest that makes a rerun skip the pairs done
before with the same model, parameters and inputs, a labelled contact sheet (rows: contents,
columns: styles), and a summary of the pairs that failed: a failing pair does not stop the
others."""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .._client import StyleTransferClient
from .._exceptions import APIConnectionError, APITimeoutError, AuthenticationError, NotFoundError
from .._params import DRY_RUN
from ._cells import Cell, image_suffix, params_text, safe_name, sha256
from ._contact_sheet import SHEET
from ._exit import EXIT_CODES, EXIT_ERROR, ExitCode, exit_row
from ._flags import add_cell_args, add_cells_command, request_params, styles
from ._manifest import Manifest, read_json
from ._output import error_fields
from ._run_cells import Outcome, preflight, run_cells

__all__ = ["BATCH_MANIFEST", "BATCH_SHEET", "IMAGE_SUFFIXES", "add_parser", "find_contents", "run", "text"]

BATCH_MANIFEST = "batch.json"
BATCH_SHEET = SHEET
#: The suffixes (any case) of the files of a content directory that are taken as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif")
_MANIFEST_FORMAT = 1


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``batch`` command to the subparsers ``sub``."""
    b = add_cells_command(
        sub, common, "batch", summary="render many content images in the style of each STYLE into DIR",
        description="Render every content image of CONTENT_DIR_OR_GLOB in the style of each STYLE and "
                    "write one image per pair (CONTENTSTEM__STYLESTEM.png), a manifest (batch.json) "
                    "and a contact sheet (sheet.png: a row per content, a column per style) into DIR. "
                    "Resumable: a rerun skips every pair whose image exists and whose manifest entry "
                    "has this command's model, parameters and input images. A failing pair is "
                    "reported at the end and does not stop the others. Every other flag applies to "
                    "every pair; each pair has one style.",
        content=("CONTENT_DIR_OR_GLOB", "a directory (its files ending in " + ", ".join(IMAGE_SUFFIXES)
                 + ", any case) or a quoted glob pattern ('photos/*.jpg'; ** spans directories)"))
    add_cell_args(b.add_argument_group("batch"), "pairs")


def find_contents(pattern: str) -> List[Path]:
    """The content images named by CONTENT_DIR_OR_GLOB.

    Args:
        pattern: A directory, whose files ending in one of :data:`IMAGE_SUFFIXES` (any case)
            are taken, or a glob pattern (``**`` spans directories), whose matching files are
            taken whatever their suffix; a leading ``~`` is the home directory.

    Returns:
        The files, sorted by path.

    Raises:
        ValueError: Nothing matched (a usage error naming ``pattern``).
    """
    path = Path(pattern).expanduser()
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        what = f"no image file ({', '.join(IMAGE_SUFFIXES)}) in the directory {pattern!r}"
    else:
        found = [Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True) if Path(p).is_file()]
        what = f"no file matches {pattern!r}"
    if not found:
        raise ValueError(f"batch: {what}")
    return sorted(found)


def _digest(path: Path) -> Optional[str]:
    """The SHA-256 of a content image, or ``None`` when it cannot be read (its pairs then fail
    when they are sent, each with the reading's error)."""
    try:
        return sha256(str(path))
    except OSError:
        return None


def _pairs(args: argparse.Namespace, contents: Sequence[Path], paths: Sequence[str],
           base: Dict[str, Any]) -> List[Cell]:
    """One cell per (content, style) pair, row-major (a row per content).

    Raises:
        ValueError: ``--style-mask`` not given once per style, or two pairs that would write
            the same file.
        OSError: A style, mask or init image cannot be read.
    """
    masks = list(args.style_masks)
    if masks and len(masks) != len(paths):
        raise ValueError(f"batch: --style-mask: give one per style ({len(paths)}), not {len(masks)}; "
                         "each pair sends the mask of its style")
    style_sums = [sha256(s) for s in paths]
    mask_sums = [sha256(m) for m in masks]
    shared = {"init_image": sha256(args.init_image), "content_mask": sha256(args.content_mask)}
    suffix = image_suffix(base)
    cells: List[Cell] = []
    seen: Dict[str, Cell] = {}
    for r, content in enumerate(contents):
        content_sum = _digest(content)
        for c, style in enumerate(paths):
            images = {"init_image": args.init_image, "content_mask": args.content_mask,
                      "style_masks": [masks[c]] if masks else None}
            inputs = {"content": content_sum, "style": style_sums[c], **shared,
                      "style_mask": mask_sums[c] if masks else None}
            cell = Cell(len(cells), r, c, f"{safe_name(content.stem)}__{safe_name(Path(style).stem)}{suffix}",
                        f"{content.name} x {Path(style).name}", str(content), style, {**images, **base},
                        key={"model": args.model, "params": base, "inputs_sha256": inputs},
                        notes={"content": str(content), "style": str(style)})
            if cell.file in seen:
                raise ValueError(f"batch: {seen[cell.file].label} and {cell.label} would both be written to "
                                 f"{cell.file}; rename one of the files or narrow the pattern")
            seen[cell.file] = cell
            cells.append(cell)
    return cells


def _open_manifest(out_dir: Path) -> Manifest:
    """DIR's manifest: the pairs of earlier runs (each entry says what it was rendered with),
    or a new one. Creates DIR.

    Raises:
        ValueError: DIR holds a batch.json that is not a batch manifest.
    """
    path = out_dir / BATCH_MANIFEST
    doc: Dict[str, Any] = {"format": _MANIFEST_FORMAT, "pairs": {}}
    old = read_json(path)
    if old is not None:
        if not isinstance(old.get("pairs"), dict):
            raise ValueError(f"{path} is not a batch manifest (no \"pairs\"); move it away to start afresh")
        doc["pairs"] = dict(old["pairs"])
    out_dir.mkdir(parents=True, exist_ok=True)
    return Manifest(path, doc, "pairs")


def _stops_the_batch(exc: Exception) -> bool:
    """Whether ``exc`` would fail every other pair too, so the batch stops: a token refused,
    no such model or URL, no connection to the server (a timeout may be the pair's own)."""
    if isinstance(exc, APITimeoutError):
        return False
    return isinstance(exc, (AuthenticationError, NotFoundError, APIConnectionError))


def _exit_row(failures: Sequence[Exception]) -> ExitCode:
    """The exit code of a batch with ``failures``: theirs when they all have the same, else ``error`` (1)."""
    rows = {exit_row(exc) for exc in failures}
    return rows.pop() if len(rows) == 1 else next(row for row in EXIT_CODES if row.code == EXIT_ERROR)


def run(args: argparse.Namespace, make_client: Callable[[], StyleTransferClient],
        log: Callable[[str], None]) -> Dict[str, Any]:
    """Run ``batch``; return its JSON document (the text summary is :func:`text`'s).

    A document with failed pairs has ``"ok": false`` and the ``exit_code`` the command exits with.

    Raises:
        ValueError: No content matched, ``--dry-run``, masks that do not match the styles, two
            pairs with the same file name, or a batch.json that is not a batch manifest.
        OSError: A style, mask or init image cannot be read.
        MissingDependencyError: ``--progress`` without tqdm.
        NSTError: A failure that stops the batch (see :func:`_stops_the_batch`), after the
            finished pairs, the manifest and the sheet are written.
    """
    base = request_params(args)
    contents = find_contents(args.content)
    paths = styles(args)
    # A content image that cannot be read fails its own pairs only.
    preflight(args, "pair", dry_run=bool(base.get(DRY_RUN)),
              inputs=[(s, f"style[{i}]") for i, s in enumerate(paths)])
    cells = _pairs(args, contents, paths, base)
    manifest = _open_manifest(Path(args.output))
    fixed = params_text(base)
    outcome = run_cells(args, cells, manifest, make_client, log, stops=_stops_the_batch,
                        row_labels=[p.name for p in contents], col_labels=[Path(s).name for s in paths],
                        title=f"{args.content} in the style of {', '.join(Path(s).name for s in paths)}"
                              + (f"; {fixed}" if fixed else ""))
    return _document(manifest, contents, paths, cells, outcome)


def _document(manifest: Manifest, contents: Sequence[Path], paths: Sequence[str], cells: Sequence[Cell],
              outcome: Outcome) -> Dict[str, Any]:
    """The ``--json`` document of a batch that ran to its end."""
    failed = sorted(outcome.failed, key=lambda failure: failure[0].index)
    failed_files = {cell.file for cell, _ in failed}
    pairs_doc = []
    for cell in cells:
        status = ("rendered" if cell.file in outcome.rendered else "failed" if cell.file in failed_files
                  else "skipped")
        pairs_doc.append({"file": cell.file, "status": status, "row": cell.row, "col": cell.col,
                          **(manifest.entry(cell) or {})})
    doc: Dict[str, Any] = {
        "ok": not failed, "command": "batch", "dir": str(manifest.path.parent), "sheet": str(outcome.sheet),
        "manifest": str(manifest.path), "contents": [str(p) for p in contents], "styles": [str(s) for s in paths],
        "rendered": len(outcome.rendered), "skipped": len(cells) - len(outcome.rendered) - len(failed),
        "failed": len(failed), "pairs": pairs_doc,
        "failures": [{"file": cell.file, **cell.notes, "error": error_fields(exc)} for cell, exc in failed]}
    if failed:
        row = _exit_row([exc for _, exc in failed])
        types = {type(exc).__name__ for _, exc in failed}
        doc["exit_code"] = row.code
        doc["error"] = {"kind": row.name, "type": types.pop() if len(types) == 1 else "Exception",
                        "message": f"{len(failed)} of {len(cells)} pairs failed"}
    return doc


def text(doc: Dict[str, Any]) -> str:
    """The summary of a ``batch`` document: counts, files, and a line per failed pair."""
    lines = [f"wrote {doc['sheet']} ({len(doc['pairs'])} pairs: {doc['rendered']} rendered, "
             f"{doc['skipped']} skipped as done before, {doc['failed']} failed) and {doc['manifest']}"]
    for failure in doc["failures"]:
        error = failure["error"]
        lines.append(f"failed: {failure['content']} x {failure['style']}: {error['kind']}: {error['message']}")
    return "\n".join(lines)

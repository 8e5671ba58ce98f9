"""The contact sheet of ``sweep`` and ``batch``: DIR/sheet.png, each done cell's image at its
row and column (drawn by ``sheets.grid_sheet``)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from PIL import Image

from ._cells import Cell
from ._manifest import Manifest

__all__ = ["SHEET", "write_contact_sheet"]

#: The contact sheet's file name in DIR.
SHEET = "sheet.png"


def write_contact_sheet(manifest: Manifest, cells: Sequence[Cell], *, row_labels: Sequence[str],
                        col_labels: Sequence[str], tile: int, title: str) -> Path:
    """Write DIR/sheet.png: each done cell's image (see :meth:`Manifest.done`) at its row and
    column, scaled down (never up) to ``tile`` px; a cell not done shows as a grey "missing" tile.

    Returns:
        The sheet's path.

    Raises:
        OSError: An image or the sheet cannot be read or written.
    """
    from .sheets import fit_within, grid_sheet

    tiles: List[List[Optional[Image.Image]]] = [[None] * len(col_labels) for _ in row_labels]
    for cell in cells:
        if manifest.done(cell):
            with Image.open(manifest.dir / cell.file) as img:
                # Scaled down at once, so that a batch of large images is never all in memory.
                tiles[cell.row][cell.col] = fit_within(img, tile, tile)
    path = manifest.dir / SHEET
    grid_sheet(tiles, row_labels=row_labels, col_labels=col_labels, tile=tile, title=title).image.save(path)
    return path

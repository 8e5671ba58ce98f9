"""The manifest of ``sweep`` and ``batch``: a JSON file in DIR with an entry per cell's image,
rewritten (atomically) after every cell, that makes a rerun skip the cells already done.

A cell counts as done when its image exists and its entry holds the cell's ``key`` and no
``error``. Each command opens its own manifest (``sweep.json``, ``batch.json``: what the
document holds beside the entries is theirs); this room reads, compares and writes it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from ._cells import Cell

__all__ = ["Manifest", "read_json", "write_json"]


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
class Manifest:
    """A run's manifest: the JSON document ``doc`` of ``path``, whose member ``entries`` maps
    each cell's file name to its entry."""

    path: Path
    doc: Dict[str, Any]
    entries: str

    @property
    def dir(self) -> Path:
        """DIR: where the manifest and the cells' images are."""
        return self.path.parent

    def entry(self, cell: Cell) -> Optional[Dict[str, Any]]:
        """The manifest entry of ``cell``'s file, if any (one that is not a JSON object is none)."""
        found = self.doc[self.entries].get(cell.file)
        return found if isinstance(found, dict) else None

    def done(self, cell: Cell) -> bool:
        """Whether ``cell``'s image exists and its entry is a success with the cell's key."""
        entry = self.entry(cell)
        return (entry is not None and "error" not in entry and all(entry.get(k) == v for k, v in cell.key.items())
                and (self.dir / cell.file).is_file())

    def record(self, cell: Cell, fields: Dict[str, Any]) -> Dict[str, Any]:
        """Set ``cell``'s entry to its key, notes and ``fields``, rewrite the file; return the entry."""
        entry = {**cell.key, **cell.notes, **fields}
        self.doc[self.entries][cell.file] = entry
        self.save()
        return entry

    def save(self) -> None:
        """Rewrite the manifest file (atomically)."""
        write_json(self.path, self.doc)

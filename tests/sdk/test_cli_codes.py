"""The CLI's exit codes: docs/sdk.md's table, ``nst-client --help`` and the code agree, and each
documented error class exits with its documented code."""

from __future__ import annotations

import builtins
import re
import subprocess
import sys
from pathlib import Path

import nst_client
import PIL
import pytest
from nst_client import cli

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def _doc_rows() -> list[tuple[int, str, list[str]]]:
    """``(code, kind, [class names])`` of each row of the table under "### Exit codes"."""
    text = DOCS.read_text()
    section = text[text.index("### Exit codes"):]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].isdigit():
            continue
        classes = re.findall(r"`([A-Za-z]+)`", cells[2])
        rows.append((int(cells[0]), cells[1].strip("`"), classes))
    return rows


def _resolve(name: str) -> type:
    """An exception class by its documented name, from the SDK, builtins or Pillow (not from
    the CLI's own table, so a wrong name in the docs fails here)."""
    for namespace in (nst_client, builtins, PIL):
        cls = getattr(namespace, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            return cls
    raise AssertionError(f"docs/sdk.md names {name!r}, which is no exception class")


def _instance(cls: type[BaseException]) -> BaseException:
    if issubclass(cls, nst_client.APIStatusError):
        return cls("message", status_code=418)
    if cls is KeyboardInterrupt:
        return cls()
    return cls("message")


def test_the_docs_table_is_the_code_table():
    documented = _doc_rows()
    assert documented, "no exit-code table found under '### Exit codes' in docs/sdk.md"
    assert documented == [(row.code, row.name, [c.__name__ for c in row.classes]) for row in cli.EXIT_CODES]
    assert len({code for code, _, _ in documented}) == len(documented)  # one code per class of error


@pytest.mark.parametrize("code, kind, name", [(code, kind, name) for code, kind, names in _doc_rows()
                                              for name in names])
def test_each_documented_class_exits_with_its_code(code, kind, name):
    exc = _instance(_resolve(name))
    assert cli.exit_code(exc) == code, f"{name} should exit {code} ({kind})"


@pytest.mark.parametrize("exc, code", [
    (nst_client.ServiceUnavailableError("m", status_code=503), 5),  # a subclass of a listed class
    (nst_client.APITimeoutError("m"), 8),  # a timeout is an APIConnectionError, but has its own code
    (nst_client.MissingDependencyError("m"), 9),  # also an ImportError
    (PermissionError("m"), 1),  # an OSError
    (RuntimeError("m"), 1),
])
def test_subclasses_take_the_nearest_listed_class(exc, code):
    assert cli.exit_code(exc) == code


def test_help_epilog_lists_every_code():
    proc = subprocess.run([sys.executable, "-m", "nst_client", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for row in cli.EXIT_CODES:
        assert re.search(rf"^\s+{row.code}\s+{re.escape(row.name)}\s+\S", proc.stdout, re.M), row

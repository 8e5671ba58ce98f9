"""What the CLI prints: ``--json`` documents (one per command, an error included), usage errors
under ``--json``, and the text of a failure on stderr."""

from __future__ import annotations

import argparse
import contextvars
import json
import sys
from pathlib import Path
from typing import IO, Any, Dict, NoReturn, Optional, Union

from .._constants import DEFAULT_KEY_FILE, ENV_KEY_FILE, ENV_TOKEN
from .._exceptions import APIStatusError, AuthenticationError, NSTError
from .._results import StylizeResult
from ._exit import EXIT_USAGE, exit_code, exit_row

__all__ = ["JSON_ERRORS", "Parser", "print_json", "fail", "error_fields", "fmt_losses", "result_doc", "check_out_dir"]

# Set while main() runs with --json: usage errors are then printed as a JSON document too.
JSON_ERRORS: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("nst_client_cli_json", default=None)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors become a JSON document under ``--json``."""

    def error(self, message: str) -> NoReturn:
        command = JSON_ERRORS.get()
        if command is None:
            super().error(message)
        print_json(_error_doc(command or None, EXIT_USAGE, "usage", "UsageError", f"{self.prog}: {message}"))
        sys.exit(EXIT_USAGE)


def print_json(doc: Dict[str, Any], stream: Optional[IO[str]] = None) -> None:
    print(json.dumps(doc, indent=2, default=str), file=stream or sys.stdout)


def _error_doc(command: Optional[str], code: int, kind: str, type_name: str, message: str,
               **details: Any) -> Dict[str, Any]:
    error = {"kind": kind, "type": type_name, "message": message}
    error.update({k: v for k, v in details.items() if v is not None})
    return {"ok": False, "command": command, "exit_code": code, "error": error}


def _exc_doc(command: Optional[str], exc: BaseException) -> Dict[str, Any]:
    return {"ok": False, "command": command, "exit_code": exit_code(exc), "error": error_fields(exc)}


def error_fields(exc: BaseException) -> Dict[str, Any]:
    """The ``error`` object of a ``--json`` document for ``exc``: ``kind`` (its exit code's
    name), ``type``, ``message``, and for HTTP errors ``status_code``, ``code``, ``field`` and
    ``request_id`` when known, ``hint`` for authentication errors."""
    row = exit_row(exc)
    error: Dict[str, Any] = {"kind": row.name, "type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, APIStatusError):
        details = {"status_code": exc.status_code, "code": exc.code, "field": exc.field,
                   "request_id": exc.request_id, "message": exc.message}
        error.update({k: v for k, v in details.items() if v is not None})
    hint = _hint(exc)
    if hint:
        error["hint"] = hint
    return error


def _hint(exc: BaseException) -> Optional[str]:
    if isinstance(exc, AuthenticationError):
        return (f"pass --token, set ${ENV_TOKEN}, or point --key-file/${ENV_KEY_FILE} at "
                f"TorchServe's {DEFAULT_KEY_FILE}")
    return None


def fail(args: argparse.Namespace, exc: BaseException, message: Optional[str]) -> int:
    """Report ``exc`` (stderr text, or the JSON document on stdout) and return its exit code."""
    code = exit_code(exc)
    if args.json:
        doc = _exc_doc(args.command, exc)
        if message:
            doc["error"]["message"] = message
        print_json(doc)
        return code
    if message:
        print(f"nst-client: {message}", file=sys.stderr)
        return code
    label = "error" if isinstance(exc, (NSTError, OSError)) else type(exc).__name__
    print(f"nst-client: {label}: {exc}", file=sys.stderr)
    hint = _hint(exc)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return code


def fmt_losses(losses: Dict[str, Any]) -> str:
    """``"content=1 style=2.5 ..."`` (4 significant digits), ``"-"`` for none."""
    parts = []
    for k, v in losses.items():
        parts.append(f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}")
    return " ".join(parts) or "-"


#: What the one-line summaries add for each way a run can end early (``StylizeResult.stopped``).
STOP_NOTES = {
    "time_budget": "time budget spent",
    "cancelled": "cancelled: the image so far",
    "diverged": "the loss diverged; the best image so far",
}


def fmt_stopped(stopped: Optional[str]) -> str:
    """``" (time budget spent)"`` and the like for a run that ended early, ``""`` for one that
    ran all its iterations (or did not say); an unknown reason as ``" (stopped: <reason>)"``."""
    if stopped in (None, "iterations"):
        return ""
    return f" ({STOP_NOTES.get(str(stopped), f'stopped: {stopped}')})"


def result_doc(result: StylizeResult) -> Dict[str, Any]:
    """The fields of a result in a ``stylize`` document and a sweep cell."""
    return {
        "format": result.format, "width": result.width, "height": result.height,
        "iterations": result.iterations, "stopped": result.stopped, "losses": result.losses,
        "weights": result.weights, "device": result.device, "cache": result.cache,
        "timings_ms": result.timings_ms, "params": result.params,
    }



def check_out_dir(path: Union[str, Path], flag: str) -> Path:
    """``path`` as a Path, after checking its directory exists (so nothing is sent in vain)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"{flag} {p}: directory {parent} does not exist")
    return p

"""Exit codes of ``nst-client``: one per error class (:data:`EXIT_CODES`), printed by
``nst-client --help`` and tabled in docs/sdk.md (a test compares them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

from PIL import UnidentifiedImageError

from .._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    JobNotFinishedError,
    KeyFileError,
    MissingDependencyError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
)

__all__ = [
    "ExitCode", "EXIT_CODES", "exit_code", "exit_row", "exit_code_epilog",
    "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_AUTH", "EXIT_CONNECTION", "EXIT_SERVER", "EXIT_REJECTED",
    "EXIT_NOT_FOUND", "EXIT_TIMEOUT", "EXIT_MISSING_EXTRA", "EXIT_RATE_LIMITED", "EXIT_BAD_RESPONSE",
    "EXIT_NOT_FINISHED", "EXIT_INTERRUPTED",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_CONNECTION = 4
EXIT_SERVER = 5
EXIT_REJECTED = 6
EXIT_NOT_FOUND = 7
EXIT_TIMEOUT = 8
EXIT_MISSING_EXTRA = 9
EXIT_RATE_LIMITED = 10
EXIT_BAD_RESPONSE = 11
EXIT_NOT_FINISHED = 12
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class ExitCode:
    """One row of the exit-code table.

    Attributes:
        code: The process exit status.
        name: Short name (the ``error.kind`` of a ``--json`` error document).
        classes: The exception classes that exit with ``code`` (subclasses too, unless a
            subclass has a row of its own).
        meaning: When it happens.
    """

    code: int
    name: str
    classes: Tuple[type, ...]
    meaning: str


#: Every exit status of ``nst-client``, one per error class. The --help epilog and the table
#: in docs/sdk.md show exactly these rows (a test compares them).
EXIT_CODES: Tuple[ExitCode, ...] = (
    ExitCode(EXIT_OK, "ok", (), "the command did what it was asked"),
    ExitCode(EXIT_ERROR, "error", (Exception,),
             "anything not below, e.g. an output file that cannot be written (OSError); a batch whose "
             "pairs failed with different codes"),
    ExitCode(EXIT_USAGE, "usage",
             (FileNotFoundError, IsADirectoryError, UnidentifiedImageError, KeyFileError, ValueError, TypeError),
             "bad command line or local input: unknown flag, missing or unreadable image, malformed "
             "key file, an output suffix that cannot be written, a sweep directory holding another sweep"),
    ExitCode(EXIT_AUTH, "auth", (AuthenticationError,),
             "missing, wrong or expired token (401, 403, TorchServe's 400 InvalidKeyException)"),
    ExitCode(EXIT_CONNECTION, "connection", (APIConnectionError,),
             "no answer: connection refused or reset, DNS failure, a stream that broke off"),
    ExitCode(EXIT_SERVER, "server", (ServerError,),
             "the server or its worker failed (5xx: prediction failed, worker died, out of memory)"),
    ExitCode(EXIT_REJECTED, "rejected", (BadRequestError, PayloadTooLargeError, APIStatusError),
             "the server refused the request: a parameter out of range or of the wrong type "
             "(400/422), a body too large (413), another 4xx"),
    ExitCode(EXIT_NOT_FOUND, "not-found", (NotFoundError,),
             "404: no such model (--model) or wrong URL"),
    ExitCode(EXIT_TIMEOUT, "timeout", (APITimeoutError,),
             "connect or read timeout (--connect-timeout, --timeout, --time-budget)"),
    ExitCode(EXIT_MISSING_EXTRA, "missing-extra", (MissingDependencyError,),
             "a flag needs an optional extra that is not installed; the message names the pip install"),
    ExitCode(EXIT_RATE_LIMITED, "rate-limited", (RateLimitError,), "429: too many requests, after the retries"),
    ExitCode(EXIT_BAD_RESPONSE, "bad-response", (APIResponseValidationError,),
             "a 2xx answer that breaks the contract (no image, malformed stream, history asked for "
             "but not sent)"),
    ExitCode(EXIT_NOT_FINISHED, "not-finished", (JobNotFinishedError,),
             "409: the job has no image: not finished yet, or cancelled before it started"),
    ExitCode(EXIT_INTERRUPTED, "interrupted", (KeyboardInterrupt,), "Ctrl-C"),
)

_CODE_BY_CLASS: Dict[type, ExitCode] = {cls: row for row in EXIT_CODES for cls in row.classes}


def exit_row(exc: BaseException) -> ExitCode:
    """The :data:`EXIT_CODES` row of ``exc``: its most specific class that has one."""
    for cls in type(exc).__mro__:
        row = _CODE_BY_CLASS.get(cls)
        if row is not None:
            return row
    return _CODE_BY_CLASS[Exception]


def exit_code(exc: BaseException) -> int:
    """The process exit status for ``exc`` (see :data:`EXIT_CODES`).

    Args:
        exc: The error that ended the command.

    Returns:
        The code of the most specific class of ``exc`` in the table; ``1`` for any other.
    """
    return exit_row(exc).code


def exit_code_epilog() -> str:
    lines = ["exit codes:"]
    for row in EXIT_CODES:
        lines.append(f"  {row.code:>3}  {row.name:<13} {row.meaning}")
    lines.append("")
    lines.append("With --json every command prints one JSON document on stdout, errors included:")
    lines.append('  {"ok": false, "command": ..., "exit_code": N, "error": {"kind", "type", "message", ...}}')
    lines.append("Details: docs/sdk.md (CLI).")
    return "\n".join(lines)

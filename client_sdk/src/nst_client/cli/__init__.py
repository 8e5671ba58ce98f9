"""``nst-client`` command line: ``stylize``, ``sweep``, ``batch``, ``submit``, ``status``, ``wait``,
``cancel``, ``plan``, ``health`` and ``info``.

Every failure exits with the code of its error class (:data:`EXIT_CODES`, printed by
``nst-client --help`` and tabled in docs/sdk.md). With ``--json`` each command prints exactly
one JSON document on stdout, an error included.

Rooms: this module parses and dispatches; ``_exit`` holds the exit codes, ``_output`` the
``--json`` documents and error reports, ``_flags`` the shared flags (the request parameters'
derived from ``nst_client._params``); what ``sweep`` and ``batch`` share: ``_cells`` (a cell, its
names and key), ``_manifest`` (the resumable manifest), ``_contact_sheet`` (sheet.png) and
``_run_cells`` (the run, on the SDK's ``stylize_many``); one module per command (``stylize``, ``sweep``,
``batch``, ``info`` for ``health`` and ``info``, ``jobs`` for ``submit``, ``status``, ``wait`` and
``cancel``, ``plan`` for ``plan`` and the ``--dry-run`` of ``stylize`` and ``submit``);
``sheets`` and ``plots`` draw the pictures.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

from .._client import StyleTransferClient
from .._exceptions import NSTError
from .._version import __version__
from . import batch, info, jobs, plan, stylize, sweep
from ._exit import (
    EXIT_AUTH,
    EXIT_BAD_RESPONSE,
    EXIT_CODES,
    EXIT_CONNECTION,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_MISSING_EXTRA,
    EXIT_NOT_FINISHED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_RATE_LIMITED,
    EXIT_REJECTED,
    EXIT_SERVER,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    ExitCode,
    exit_code,
    exit_code_epilog,
)
from ._flags import common_parser
from ._output import JSON_ERRORS, Parser, fail, print_json
from .sweep import SWEEP_MANIFEST, SWEEP_SHEET

__all__ = [
    "main",
    "build_parser",
    "exit_code",
    "ExitCode",
    "EXIT_CODES",
    "EXIT_OK",
    "EXIT_ERROR",
    "EXIT_USAGE",
    "EXIT_AUTH",
    "EXIT_CONNECTION",
    "EXIT_SERVER",
    "EXIT_REJECTED",
    "EXIT_NOT_FOUND",
    "EXIT_TIMEOUT",
    "EXIT_MISSING_EXTRA",
    "EXIT_RATE_LIMITED",
    "EXIT_BAD_RESPONSE",
    "EXIT_NOT_FINISHED",
    "EXIT_INTERRUPTED",
    "SWEEP_MANIFEST",
    "SWEEP_SHEET",
    "StyleTransferClient",
]

Run = Callable[[argparse.Namespace, Callable[[], StyleTransferClient], Callable[[str], None]], Dict[str, Any]]


class _Command(NamedTuple):
    run: Run  # does the work; returns the --json document
    text: Callable[[Dict[str, Any]], str]  # the document as text, for stdout without --json


_COMMANDS: Dict[str, _Command] = {
    "stylize": _Command(stylize.run, stylize.text),
    "sweep": _Command(sweep.run, sweep.text),
    "batch": _Command(batch.run, batch.text),
    "submit": _Command(jobs.run_submit, jobs.status_text),
    "status": _Command(jobs.run_status, jobs.status_text),
    "wait": _Command(jobs.run_wait, jobs.wait_text),
    "cancel": _Command(jobs.run_cancel, jobs.status_text),
    "plan": _Command(plan.run, plan.text),
    "health": _Command(info.run_health, info.health_text),
    "info": _Command(info.run_info, info.info_text),
}


#: The commands that take CONTENT STYLE...
_TAKES_STYLES = ("stylize", "sweep", "batch", "submit", "plan")
#: The commands whose ``--dry-run`` runs ``plan`` instead, with the same inputs and flags.
_DRY_RUNS = ("stylize", "submit")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser.

    Returns:
        The ``argparse.ArgumentParser`` for ``nst-client``.
    """
    common = common_parser()
    parser = Parser(prog="nst-client", description="Client for the neural-style-transfer service.",
                    epilog=exit_code_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    stylize.add_parser(sub, common)
    sweep.add_parser(sub, common)
    batch.add_parser(sub, common)
    jobs.add_parsers(sub, common)
    plan.add_parser(sub, common)
    info.add_parsers(sub, common)
    return parser


def _guess_command(argv: Sequence[str]) -> str:
    for arg in argv:
        if arg in _COMMANDS:
            return arg
    return ""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI.

    Args:
        argv: Arguments without the program name; ``None`` means ``sys.argv[1:]``.

    Returns:
        The process exit code (:data:`EXIT_CODES`).

    Raises:
        SystemExit: A usage error (code 2, after argparse's message or, with ``--json``, the
            JSON document), ``--help`` or ``--version`` (code 0).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    reset = JSON_ERRORS.set(_guess_command(argv) if "--json" in argv else None)
    try:
        return _run(build_parser(), argv)
    finally:
        JSON_ERRORS.reset(reset)


def _run(parser: argparse.ArgumentParser, argv: List[str]) -> int:
    args, rest = parser.parse_known_args(argv)
    if rest:
        # argparse gives a "*" positional its (possibly empty) share at the first run of
        # positionals, so STYLEs placed after options (CONTENT -o OUT STYLE) end up here.
        if args.command not in _TAKES_STYLES or any(r.startswith("-") for r in rest):
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        args.styles = [*args.styles, *rest]
    if args.command in _TAKES_STYLES and not (args.styles or args.extra_styles):
        parser.error(f"{args.command}: at least one style image is required (STYLE or --style PATH)")
    if args.command == "stylize" and (args.progress_every is not None or args.preview_every is not None) \
            and not (args.progress or args.save_previews is not None or args.animate is not None):
        parser.error("stylize: --progress-every/--preview-every need --progress, --save-previews or --animate")

    def make_client() -> StyleTransferClient:
        extra = info.client_options(args) if args.command == "info" else {}
        return StyleTransferClient(
            base_url=args.url, model=args.model, token=args.token, key_file=args.key_file,
            timeout=args.timeout, connect_timeout=args.connect_timeout, max_retries=args.max_retries, **extra)

    # A dry run prints the plan: stylize's picture and stream flags, -o included, are left unused.
    command = _COMMANDS["plan" if args.command in _DRY_RUNS and getattr(args, "dry_run", None) else args.command]
    log: Callable[[str], None] = (lambda line: print(line, file=sys.stderr)) if args.json else print
    try:
        doc = command.run(args, make_client, log)
        text = command.text(doc)
    except KeyboardInterrupt as exc:
        return fail(args, exc, "interrupted")
    except (NSTError, OSError, TypeError, ValueError) as exc:
        return fail(args, exc, None)
    except Exception as exc:  # a bug: a traceback in text mode, still one document with --json
        if not args.json:
            raise
        return fail(args, exc, None)
    if args.json:
        print_json(doc)
    else:
        print(text)
    return int(doc.get("exit_code", EXIT_OK))  # a batch with failed pairs

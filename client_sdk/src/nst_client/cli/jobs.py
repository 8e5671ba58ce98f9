"""``nst-client submit | status | wait | cancel``: jobs, and :func:`stylize_as_job`, how
``stylize`` runs its request as a job so that Ctrl-C (or giving up) cancels it on the server."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, Dict

from .._client import StyleTransferClient
from .._constants import CLI_CANCEL_TIMEOUT, DEFAULT_JOB_POLL_S, DEFAULT_TIMEOUT
from .._exceptions import APITimeoutError, BadRequestError, NSTError
from .._images import StyleInput
from .._jobs import Job, JobStatus
from .._request import read_timeout_for
from .._results import StylizeResult
from ._flags import add_inputs, common_parser, request_args, style_input, styles
from ._output import check_out_dir, fmt_losses, fmt_stopped, result_doc

__all__ = ["add_parsers", "stylize_as_job", "run_submit", "run_status", "run_wait", "run_cancel",
           "status_text", "wait_text"]

Client = Callable[[], StyleTransferClient]
Log = Callable[[str], None]


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``submit``, ``status``, ``wait`` and ``cancel`` to the subparsers ``sub``."""
    submit = sub.add_parser(
        "submit", parents=[common], help="submit CONTENT in the style of STYLE(s) as a job; print its id",
        description="Submit the request stylize would send as a job: the server answers at once with "
                    "the job's id (printed first) and its place in the queue. Follow it with "
                    "status, wait or cancel. A job nobody polls for its lease_s seconds is cancelled "
                    "by the server.")
    add_inputs(submit)
    for name, text in (("status", "print a job's status (renews its lease)"),
                       ("cancel", "cancel a job (a running one stops within one iteration)")):
        p = sub.add_parser(name, parents=[common], help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("job_id", metavar="ID", help="the job's id, as submit printed it")
    # wait's --timeout is the whole wait; each status call keeps the default read timeout.
    wait = sub.add_parser(
        "wait", parents=[common_parser()], conflict_handler="resolve",
        help="wait for a job to finish and write its image",
        description="Poll the job's status (renewing its lease) until it is done, then fetch its "
                    "result and write the image to OUT like stylize. Giving up (--timeout) does not "
                    "cancel the job.")
    wait.add_argument("job_id", metavar="ID", help="the job's id, as submit printed it")
    wait.add_argument("-o", "--output", metavar="OUT",
                      help="output file; re-encoded by suffix if it differs from the server's format")
    waiting = wait.add_argument_group("waiting")
    waiting.add_argument("--timeout", dest="wait_timeout", type=float, default=None, metavar="S",
                         help="give up after S seconds in all (exit 8; the job goes on; default: no limit)")
    waiting.add_argument("--poll", type=float, default=DEFAULT_JOB_POLL_S, metavar="S",
                         help="seconds between two status calls (default: %(default)g)")
    wait.set_defaults(timeout=DEFAULT_TIMEOUT)


def stylize_as_job(client: StyleTransferClient, content: str, style: StyleInput,
                   kwargs: Dict[str, Any]) -> StylizeResult:
    """``stylize``'s request as a job: submit, then wait (within the read timeout a synchronous
    call would have had). On Ctrl-C or that timeout the job is cancelled (best effort) before
    the error goes on.

    A server without jobs (one older than them: 400 naming the ``job`` field) gets the plain
    synchronous request.
    """
    try:
        job = client.submit(content, style, **kwargs)
    except BadRequestError as exc:
        if exc.field != "job":
            raise
        return client.stylize(content, style, **kwargs)
    try:
        return job.wait(timeout=read_timeout_for(kwargs, client.timeout))
    except (KeyboardInterrupt, APITimeoutError):
        _cancel_quietly(job)
        raise


def _cancel_quietly(job: Job) -> None:
    """Cancel ``job``: one try within ``CLI_CANCEL_TIMEOUT`` seconds; a failure is only reported."""
    print(f"nst-client: cancelling job {job.id}", file=sys.stderr)
    try:
        job.cancel(timeout=CLI_CANCEL_TIMEOUT, max_retries=0)
    except (NSTError, KeyboardInterrupt) as exc:
        print(f"nst-client: could not cancel job {job.id}: {exc or type(exc).__name__}", file=sys.stderr)


def _status_doc(command: str, status: JobStatus) -> Dict[str, Any]:
    return {"ok": True, "command": command, "id": status.id, "job": status.to_dict()}


def run_submit(args: argparse.Namespace, make_client: Client, log: Log) -> Dict[str, Any]:
    """Run ``submit``; return its JSON document."""
    kwargs = request_args(args)
    with make_client() as client:
        job = client.submit(args.content, style_input(styles(args)), **kwargs)
    assert job.last_status is not None
    return _status_doc("submit", job.last_status)


def run_status(args: argparse.Namespace, make_client: Client, log: Log) -> Dict[str, Any]:
    """Run ``status``; return its JSON document."""
    with make_client() as client:
        return _status_doc("status", client.job(args.job_id).status())


def run_cancel(args: argparse.Namespace, make_client: Client, log: Log) -> Dict[str, Any]:
    """Run ``cancel``; return its JSON document."""
    with make_client() as client:
        return _status_doc("cancel", client.job(args.job_id).cancel())


def run_wait(args: argparse.Namespace, make_client: Client, log: Log) -> Dict[str, Any]:
    """Run ``wait``; return its JSON document."""
    output = None if args.output is None else check_out_dir(args.output, "-o")
    start = time.monotonic()
    with make_client() as client:
        job = client.job(args.job_id)
        result = job.wait(args.wait_timeout, poll_s=args.poll)
    files = {} if output is None else {"output": str(result.save(output))}
    status = job.last_status.to_dict() if job.last_status is not None else None
    return {"ok": True, "command": "wait", "id": job.id, **result_doc(result),
            "elapsed_s": round(time.monotonic() - start, 3), "files": files, "job": status}


def status_text(doc: Dict[str, Any]) -> str:
    """One line about a job (``status``, ``cancel``); ``submit`` prints the id on a line first."""
    job = doc["job"]
    state = str(job.get("state"))
    parts = [f"job {doc['id']}: {state}"]
    if state == "queued" and job.get("position") is not None:
        parts.append(f"position {job['position']}")
    if job.get("iteration") is not None:
        parts.append(f"iteration {job['iteration']}/{job.get('of') if job.get('of') is not None else '?'}")
    if job.get("eta_s") is not None:
        parts.append(f"eta {job['eta_s']:.0f} s")
    if job.get("losses"):
        parts.append(f"losses[{fmt_losses(job['losses'])}]")
    if job.get("cancel_requested") and state not in ("cancelled", "succeeded", "failed"):
        parts.append("cancel requested")
    error = job.get("error")
    if isinstance(error, dict):
        parts.append(f"error {error.get('code')}: {error.get('message')}")
    if job.get("lease_s") is not None:
        parts.append(f"lease {job['lease_s']:g} s")
    text = ", ".join(parts)
    return f"{doc['id']}\n{text}" if doc["command"] == "submit" else text


def wait_text(doc: Dict[str, Any]) -> str:
    """The summary of a ``wait`` document."""
    where = f"wrote {doc['files']['output']}" if "output" in doc["files"] else f"job {doc['id']} done"
    return (f"{where} ({doc['width']}x{doc['height']} {doc['format']}) after {doc['elapsed_s']:.1f} s: "
            f"iterations={doc['iterations']}{fmt_stopped(doc['stopped'])} losses[{fmt_losses(doc['losses'])}] "
            f"weights={doc['weights']} device={doc['device']}")

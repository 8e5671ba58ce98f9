"""``nst-client health`` (``GET /ping``) and ``nst-client info`` (the served model's description)."""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable, Dict

from .._client import StyleTransferClient

__all__ = ["add_parsers", "client_options", "run_health", "health_text", "run_info", "info_text"]


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``health`` and ``info`` commands to the subparsers ``sub``."""
    sub.add_parser("health", parents=[common], help="GET /ping and print the JSON",
                   description="Ask the inference API whether the server is healthy (GET /ping).")

    info = sub.add_parser(
        "info", parents=[common], help="describe the served model",
        description="Show the served model: weights provenance, device, limits, parameter defaults, "
                    "version and workers (TorchServe's management API, GET /models/MODEL?customized=true, "
                    "with the key file's management key).")
    info.add_argument("--management-url", default=None, metavar="URL",
                      help="management API root (default: $NST_MANAGEMENT_URL, else the --url host on port 8081)")
    info.add_argument("--management-token", default=None, metavar="TOKEN",
                      help="management key (default: $NST_MANAGEMENT_TOKEN, else the management key of the key file)")


def client_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The client arguments of ``info``'s own flags."""
    return {"management_url": args.management_url, "management_token": args.management_token}


def run_health(args: argparse.Namespace, make_client: Callable[[], StyleTransferClient],
               log: Callable[[str], None]) -> Dict[str, Any]:
    """Run ``health``; return its JSON document (the answer is in ``response``)."""
    with make_client() as client:
        body = client.health()
        return {"ok": True, "command": "health", "url": client.base_url, "response": body}


def health_text(doc: Dict[str, Any]) -> str:
    """The server's answer, as JSON on one line."""
    return json.dumps(doc["response"])


def run_info(args: argparse.Namespace, make_client: Callable[[], StyleTransferClient],
             log: Callable[[str], None]) -> Dict[str, Any]:
    """Run ``info``; return its JSON document."""
    with make_client() as client:
        info = client.info()
        return {"ok": True, "command": "info", "management_url": client.management_url, **info.to_dict(),
                "ready_workers": info.ready_workers}


def info_text(doc: Dict[str, Any]) -> str:
    """A readable summary of the ``info`` document."""
    def pairs(d: Dict[str, Any]) -> str:
        return " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in d.items()) or "-"

    states = ", ".join(str(w.get("status")) for w in doc["workers"])
    return "\n".join([
        f"model:    {doc['model']} (version {doc['version']}) at {doc['management_url']}",
        f"weights:  {pairs(doc['weights'])}",
        f"layers:   {', '.join(doc['layers']) or '-'}",
        f"device:   {doc['device']}",
        f"workers:  {len(doc['workers'])} ({states or 'none'}), {doc['ready_workers']} ready",
        f"limits:   {pairs(doc['limits'])}",
        f"defaults: {pairs(doc['defaults'])}",
    ])

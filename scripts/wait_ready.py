"""Wait until a TorchServe model has a READY worker (``make serve`` and the end-to-end tests use it).

``torchserve --start`` returns before any worker has loaded, so readiness is read from the
management API (``GET /models/<name>``), authorized with the management key from the key file.

Usage: ``python scripts/wait_ready.py [--management URL] [--model nst] [--key-file key_file.json] [--timeout 120]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import requests


def management_key(key_file: Path) -> str | None:
    """The management key in a TorchServe key file, or ``None`` if the file is not there (yet)."""
    try:
        return json.loads(key_file.read_text())["management"]["key"]
    except (OSError, ValueError, KeyError):
        return None


def wait_ready(management_url: str, model: str, key_file: Path, timeout: float = 120.0) -> dict:
    """Poll ``GET {management_url}/models/{model}`` until a worker is ``READY``.

    Args:
        management_url: e.g. ``http://127.0.0.1:8081``.
        model: model name.
        key_file: TorchServe's ``key_file.json`` (written where torchserve was started).
        timeout: seconds to wait in all.

    Returns:
        The model description TorchServe returned.

    Raises:
        TimeoutError: no READY worker within ``timeout`` seconds; the message has the last answer.
    """
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        key = management_key(key_file)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            resp = requests.get(f"{management_url}/models/{model}", headers=headers, timeout=5)
            last = f"HTTP {resp.status_code}: {resp.text[:300]}"
            if resp.ok:
                description = resp.json()[0]
                if any(w.get("status") == "READY" for w in description.get("workers", [])):
                    return description
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.5)
    raise TimeoutError(f"model {model!r} had no READY worker after {timeout:.0f} s; last answer: {last}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--management", default="http://127.0.0.1:8081")
    parser.add_argument("--model", default="nst")
    parser.add_argument("--key-file", type=Path, default=Path("key_file.json"))
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    try:
        description = wait_ready(args.management, args.model, args.key_file, args.timeout)
    except TimeoutError as exc:
        print(f"error: {exc}\nSee logs/model_log.log and logs/ts_log.log.", file=sys.stderr)
        return 1
    worker = next(w for w in description["workers"] if w.get("status") == "READY")
    print(f"model {args.model} READY (worker pid {worker.get('pid')}, gpu {worker.get('gpu')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

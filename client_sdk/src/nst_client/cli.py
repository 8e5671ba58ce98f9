"""``nst-client`` command line.

Exit codes: 0 success; 1 other error; 2 usage error, bad local input, or the server
rejected the request (400/404/413/422); 3 authentication; 4 connection failure or
timeout; 5 server error (5xx); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, Optional, Sequence, Tuple

from ._client import StyleTransferClient
from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEY_FILE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    ENV_BASE_URL,
    ENV_KEY_FILE,
    ENV_TOKEN,
)
from ._exceptions import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    KeyFileError,
    NotFoundError,
    NSTError,
    PayloadTooLargeError,
    ServerError,
)
from ._version import __version__

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_AUTH", "EXIT_CONNECTION", "EXIT_SERVER"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_CONNECTION = 4
EXIT_SERVER = 5
EXIT_INTERRUPTED = 130


def _parse_extra(text: str) -> Tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed: Any = json.loads(value)
    except json.JSONDecodeError:
        parsed = value  # plain string
    return (key, parsed)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser.

    Returns:
        The ``argparse.ArgumentParser`` for ``nst-client``.
    """
    common = argparse.ArgumentParser(add_help=False)
    conn = common.add_argument_group("connection")
    conn.add_argument("--url", default=None,
                      help=f"service root (default: ${ENV_BASE_URL}, else {DEFAULT_BASE_URL})")
    conn.add_argument("--model", default=DEFAULT_MODEL, help="model name (default: %(default)s)")
    conn.add_argument("--token", default=None,
                      help=f"bearer token (default: ${ENV_TOKEN}, else the inference key of the key file)")
    conn.add_argument("--key-file", default=None, metavar="PATH",
                      help=f"TorchServe key file (default: ${ENV_KEY_FILE}, else ./{DEFAULT_KEY_FILE})")
    conn.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                      help="read timeout in seconds (default: %(default)g)")
    conn.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT, metavar="S",
                      help="connect timeout in seconds (default: %(default)g)")
    conn.add_argument("--max-retries", type=int, default=DEFAULT_MAX_RETRIES, metavar="N",
                      help="retries on connection errors and 429/502/503/504 (default: %(default)d)")

    parser = argparse.ArgumentParser(prog="nst-client", description="Client for the neural-style-transfer service.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    st = sub.add_parser("stylize", parents=[common], help="render CONTENT in the style of STYLE",
                        description="Render CONTENT in the style of STYLE and write the result to OUT. "
                                    "Unset parameters are left to the server's defaults.")
    st.add_argument("content", metavar="CONTENT", help="content image file")
    st.add_argument("style", metavar="STYLE", help="style image file")
    st.add_argument("-o", "--output", required=True, metavar="OUT",
                    help="output file; re-encoded by suffix if it differs from the server's format")
    p = st.add_argument_group("request parameters")
    p.add_argument("--image-size", type=int, metavar="PX", help="long side of the output, in pixels")
    p.add_argument("--steps", type=int, metavar="N", help="L-BFGS iterations")
    p.add_argument("--content-weight", type=float, metavar="W", help="content loss weight")
    p.add_argument("--style-weight", type=float, metavar="W", help="style loss weight")
    p.add_argument("--tv-weight", type=float, metavar="W", help="total-variation loss weight")
    p.add_argument("--init", choices=["content", "noise"], help="starting image")
    p.add_argument("--seed", type=int, metavar="N", help="random seed")
    p.add_argument("--output-format", choices=["png", "jpeg"], help="format the server encodes")
    p.add_argument("--param", dest="extra", action="append", type=_parse_extra, default=[], metavar="KEY=VALUE",
                   help="extra server parameter (VALUE parsed as JSON if possible); repeatable")

    sub.add_parser("health", parents=[common], help="GET /ping and print the JSON")
    return parser


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, AuthenticationError):
        return EXIT_AUTH
    if isinstance(exc, (BadRequestError, NotFoundError, PayloadTooLargeError, KeyFileError,
                        FileNotFoundError, IsADirectoryError, TypeError, ValueError)):
        return EXIT_USAGE
    if isinstance(exc, APIConnectionError):
        return EXIT_CONNECTION
    if isinstance(exc, ServerError):
        return EXIT_SERVER
    return EXIT_ERROR


def _fmt_losses(losses: Dict[str, Any]) -> str:
    parts = []
    for k, v in losses.items():
        parts.append(f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}")
    return " ".join(parts) or "-"


def _stylize(client: StyleTransferClient, args: argparse.Namespace) -> int:
    params: Dict[str, Any] = dict(args.extra)
    for name in ("image_size", "steps", "content_weight", "style_weight", "tv_weight", "init", "seed", "output_format"):
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    start = time.monotonic()
    result = client.stylize(args.content, args.style, **params)
    elapsed = time.monotonic() - start
    out = result.save(args.output)
    print(
        f"wrote {out} ({result.width}x{result.height} {result.format}) in {elapsed:.1f} s: "
        f"iterations={result.iterations} losses[{_fmt_losses(result.losses)}] "
        f"weights={result.weights} device={result.device}"
    )
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI.

    Args:
        argv: Arguments without the program name; ``None`` means ``sys.argv[1:]``.

    Returns:
        The process exit code (see the module docstring).
    """
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        with StyleTransferClient(
            base_url=args.url, model=args.model, token=args.token, key_file=args.key_file,
            timeout=args.timeout, connect_timeout=args.connect_timeout, max_retries=args.max_retries,
        ) as client:
            if args.command == "stylize":
                return _stylize(client, args)
            print(json.dumps(client.health()))
            return EXIT_OK
    except KeyboardInterrupt:
        print("nst-client: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (NSTError, OSError, TypeError, ValueError) as exc:
        label = "error" if isinstance(exc, (NSTError, OSError)) else type(exc).__name__
        print(f"nst-client: {label}: {exc}", file=sys.stderr)
        if isinstance(exc, AuthenticationError):
            print(f"hint: pass --token, set ${ENV_TOKEN}, or point --key-file/${ENV_KEY_FILE} at "
                  f"TorchServe's {DEFAULT_KEY_FILE}", file=sys.stderr)
        return _exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())

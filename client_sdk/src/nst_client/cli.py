"""``nst-client`` command line: ``stylize``, ``sweep``, ``health`` and ``info``.

Every failure exits with the code of its error class (:data:`EXIT_CODES`, printed by
``nst-client --help`` and tabled in docs/sdk.md). With ``--json`` each command prints exactly
one JSON document on stdout, an error included.
"""

from __future__ import annotations

import argparse
import contextvars
import hashlib
import itertools
import json
import math
import os
import queue
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import (
    IO,
    Any,
    Callable,
    Dict,
    List,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
    get_args,
)

from PIL import Image, UnidentifiedImageError

from ._client import StyleTransferClient
from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_CLI_PREVIEW_EVERY,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEY_FILE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    ENV_BASE_URL,
    ENV_KEY_FILE,
    ENV_TOKEN,
    PREVIEW_FILENAME,
)
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    KeyFileError,
    MissingDependencyError,
    NotFoundError,
    NSTError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
)
from ._images import open_image, to_image_bytes
from ._stream import PreviewEvent, StreamEvent, consume, require_tqdm
from ._types import (
    ColorControl,
    ImageInput,
    InitMode,
    OptimizerName,
    OutputFormat,
    Pooling,
    RenderMode,
    StyleInput,
    StylizeResult,
)
from ._version import __version__

_T = TypeVar("_T")

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
    "EXIT_INTERRUPTED",
    "SWEEP_MANIFEST",
    "SWEEP_SHEET",
]

# ---------------------------------------------------------------------------------- exit codes

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
             "anything not below, e.g. an output file that cannot be written (OSError)"),
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
    ExitCode(EXIT_INTERRUPTED, "interrupted", (KeyboardInterrupt,), "Ctrl-C"),
)

_CODE_BY_CLASS: Dict[type, ExitCode] = {cls: row for row in EXIT_CODES for cls in row.classes}


def _exit_row(exc: BaseException) -> ExitCode:
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
    return _exit_row(exc).code


def _exit_code_epilog() -> str:
    lines = ["exit codes:"]
    for row in EXIT_CODES:
        lines.append(f"  {row.code:>3}  {row.name:<13} {row.meaning}")
    lines.append("")
    lines.append("With --json every command prints one JSON document on stdout, errors included:")
    lines.append('  {"ok": false, "command": ..., "exit_code": N, "error": {"kind", "type", "message", ...}}')
    lines.append("Details: docs/sdk.md (CLI).")
    return "\n".join(lines)


# --------------------------------------------------------------------------- --json and usage

# Set while main() runs with --json: usage errors are then printed as a JSON document too.
_JSON_ERRORS: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("nst_client_cli_json", default=None)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors become a JSON document under ``--json``."""

    def error(self, message: str) -> NoReturn:
        command = _JSON_ERRORS.get()
        if command is None:
            super().error(message)
        _print_json(_error_doc(command or None, EXIT_USAGE, "usage", "UsageError", f"{self.prog}: {message}"))
        sys.exit(EXIT_USAGE)


def _print_json(doc: Dict[str, Any], stream: Optional[IO[str]] = None) -> None:
    print(json.dumps(doc, indent=2, default=str), file=stream or sys.stdout)


def _error_doc(command: Optional[str], code: int, kind: str, type_name: str, message: str,
               **details: Any) -> Dict[str, Any]:
    error = {"kind": kind, "type": type_name, "message": message}
    error.update({k: v for k, v in details.items() if v is not None})
    return {"ok": False, "command": command, "exit_code": code, "error": error}


def _exc_doc(command: Optional[str], exc: BaseException) -> Dict[str, Any]:
    row = _exit_row(exc)
    details: Dict[str, Any] = {}
    if isinstance(exc, APIStatusError):
        details = {"status_code": exc.status_code, "code": exc.code, "field": exc.field,
                   "request_id": exc.request_id, "message": exc.message}
    doc = _error_doc(command, row.code, row.name, type(exc).__name__, str(exc))
    doc["error"].update({k: v for k, v in details.items() if v is not None})
    hint = _hint(exc)
    if hint:
        doc["error"]["hint"] = hint
    return doc


def _hint(exc: BaseException) -> Optional[str]:
    if isinstance(exc, AuthenticationError):
        return (f"pass --token, set ${ENV_TOKEN}, or point --key-file/${ENV_KEY_FILE} at "
                f"TorchServe's {DEFAULT_KEY_FILE}")
    return None


# ------------------------------------------------------------------------------- arg parsing


def _parse_extra(text: str) -> Tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return (key, _json_or_str(value))


def _json_or_str(value: str) -> Any:
    """``value`` parsed as JSON when it is JSON (numbers, true, lists...), else the string."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value  # plain string


def _split_top_level(text: str) -> List[str]:
    """``text`` split at commas outside ``[...]``, ``{...}`` and double quotes."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if quoted:
            quoted = ch != '"' or text[i - 1] == "\\"
        elif ch == '"':
            quoted = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _parse_axis(text: str) -> Tuple[str, List[Any]]:
    """``"style_weight=1e2,1e3"`` -> ``("style_weight", [100.0, 1000.0])``; a list value is
    written in JSON brackets: ``"scales=[128,256],[256,512]"``."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE[,VALUE...], got {text!r}")
    items = _split_top_level(values)
    if any(not item for item in items):
        raise argparse.ArgumentTypeError(f"empty value in {text!r}")
    parsed = [_json_or_str(item) for item in items]
    if len({json.dumps(v, sort_keys=True) for v in parsed}) != len(parsed):
        raise argparse.ArgumentTypeError(f"a value is repeated in {text!r}")
    return (key, parsed)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def _layer_name(text: str) -> str:
    if not text:
        raise ValueError("empty layer name")
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _comma_list(convert: Callable[[str], _T], what: str) -> Callable[[str], List[_T]]:
    """An argparse ``type`` parsing ``"a,b,c"`` into a list, each item through ``convert``."""

    def parse(text: str) -> List[_T]:
        items = [item.strip() for item in text.split(",")]
        try:
            return [convert(item) for item in items]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {what}, got {text!r}") from None

    return parse


def _scales(text: str) -> Union[int, List[int]]:
    """``"3"`` -> ``3`` (number of levels); ``"256,512"`` -> ``[256, 512]`` (long sides, px)."""
    if "," not in text:
        try:
            return int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer or a comma-separated list of integers, got {text!r}") from None
    return _comma_list(int, "integers")(text)


# Request parameters the CLI has a flag for (argparse dest == parameter name).
_PARAM_FLAGS = (
    "image_size", "steps", "content_weight", "style_weight", "tv_weight", "init", "seed",
    "output_format", "style_blend_weights", "style_scale", "color_control", "pooling",
    "content_layers", "style_layers", "style_layer_weights", "optimizer", "learning_rate",
    "lbfgs_history", "scales", "mode", "return_history", "time_budget_s",
)


def _add_request_args(parser: argparse.ArgumentParser) -> None:
    """The image and request-parameter flags shared by ``stylize`` and ``sweep``."""
    img = parser.add_argument_group("images")
    img.add_argument("--style", dest="extra_styles", action="append", default=[], metavar="PATH",
                     help="another style image, after the positional ones; repeatable")
    img.add_argument("--style-mask", dest="style_masks", action="append", default=[], metavar="PATH",
                     help="region mask for one style, in style order; repeatable (one per style)")
    img.add_argument("--content-mask", metavar="PATH",
                     help="content region mask: each distinct colour labels a region")
    img.add_argument("--init-image", metavar="PATH", help="starting image, used with --init image")
    p = parser.add_argument_group("request parameters")
    p.add_argument("--image-size", type=int, metavar="PX", help="long side of the output, in pixels")
    p.add_argument("--steps", type=int, metavar="N", help="optimiser iterations")
    p.add_argument("--content-weight", type=float, metavar="W", help="content loss weight")
    p.add_argument("--style-weight", type=float, metavar="W", help="style loss weight")
    p.add_argument("--tv-weight", type=float, metavar="W", help="total-variation loss weight")
    p.add_argument("--init", choices=get_args(InitMode), help="starting image")
    p.add_argument("--seed", type=int, metavar="N", help="random seed")
    p.add_argument("--output-format", choices=get_args(OutputFormat), help="format the server encodes")
    p.add_argument("--style-blend-weights", type=_comma_list(_finite_float, "numbers"), metavar="LIST",
                   help="relative weight of each style, e.g. 0.7,0.3")
    p.add_argument("--style-scale", type=float, metavar="F",
                   help="style image size relative to the output (factor)")
    p.add_argument("--color-control", choices=get_args(ColorControl), help="colour preservation")
    p.add_argument("--pooling", choices=get_args(Pooling), help="VGG19 pooling layers")
    p.add_argument("--content-layers", type=_comma_list(_layer_name, "layer names"), metavar="LIST",
                   help="VGG19 layers of the content loss, e.g. relu4_2")
    p.add_argument("--style-layers", type=_comma_list(_layer_name, "layer names"), metavar="LIST",
                   help="VGG19 layers of the style loss, e.g. relu1_1,relu2_1,relu3_1")
    p.add_argument("--style-layer-weights", type=_comma_list(_finite_float, "numbers"), metavar="LIST",
                   help="weight of each style layer, e.g. 1,1,1")
    p.add_argument("--optimizer", choices=get_args(OptimizerName), help="optimiser")
    p.add_argument("--learning-rate", type=float, metavar="F", help="optimiser step size (Adam)")
    p.add_argument("--lbfgs-history", type=int, metavar="N", help="L-BFGS history size")
    p.add_argument("--scales", type=_scales, metavar="N|LIST",
                   help="coarse-to-fine: number of levels (3) or long side of each level in px (256,512)")
    p.add_argument("--mode", choices=get_args(RenderMode), help="what to optimise for")
    p.add_argument("--return-history", action="store_true", default=None,
                   help="ask the server for per-iteration losses")
    p.add_argument("--time-budget", dest="time_budget_s", type=float, metavar="S",
                   help="stop the optimization after S seconds and return the image so far")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser.

    Returns:
        The ``argparse.ArgumentParser`` for ``nst-client``.
    """
    common = _Parser(add_help=False)
    conn = common.add_argument_group("connection and output")
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
    conn.add_argument("--json", action="store_true",
                      help="print one JSON document on stdout instead of text (errors too)")

    parser = _Parser(prog="nst-client", description="Client for the neural-style-transfer service.",
                     epilog=_exit_code_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    st = sub.add_parser(
        "stylize", parents=[common], help="render CONTENT in the style of STYLE(s)",
        description="Render CONTENT in the style of one or more STYLE images and write the result "
                    "to OUT. Unset parameters are left to the server's defaults; see docs/api.md "
                    "for what each one means. LIST values are comma-separated, e.g. 0.7,0.3.")
    st.add_argument("content", metavar="CONTENT", help="content image file")
    st.add_argument("styles", nargs="*", metavar="STYLE",
                    help="style image file(s); at least one in total with --style")
    st.add_argument("-o", "--output", required=True, metavar="OUT",
                    help="output file; re-encoded by suffix if it differs from the server's format")
    _add_request_args(st)
    st.add_argument_group("request parameters").add_argument(
        "--param", dest="extra", action="append", type=_parse_extra, default=[], metavar="KEY=VALUE",
        help="extra server parameter (VALUE parsed as JSON if possible); repeatable")

    pics = st.add_argument_group("pictures")
    pics.add_argument("--compare", metavar="SHEET",
                      help="also write a labelled sheet: content | style(s) | result (suffix picks the format)")
    pics.add_argument("--plot", metavar="LOSSES",
                      help="also plot content/style/TV/total loss per iteration, log scale (implies "
                           "--return-history; .png/.svg/.pdf...; needs the 'plot' extra: "
                           "pip install 'nst-client[plot]')")
    pics.add_argument("--animate", metavar="GIF",
                      help="also write the streamed previews as an animated GIF (streams the request; "
                           f"--preview-every defaults to {DEFAULT_CLI_PREVIEW_EVERY})")
    pics.add_argument("--history-out", metavar="PATH",
                      help="write the per-iteration losses as a JSON list to PATH (implies --return-history)")

    s = st.add_argument_group("streamed progress")
    s.add_argument("--progress", action="store_true",
                   help="show a progress bar on stderr while the server works (needs the "
                        "'progress' extra: pip install 'nst-client[progress]')")
    s.add_argument("--progress-every", type=int, metavar="N",
                   help="iterations between progress events (server default 10)")
    s.add_argument("--preview-every", type=int, metavar="N",
                   help=f"iterations between preview images (default {DEFAULT_CLI_PREVIEW_EVERY} "
                        "with --save-previews or --animate)")
    s.add_argument("--save-previews", metavar="DIR",
                   help=f"write each preview to DIR/{PREVIEW_FILENAME.replace('%', '%%')}")

    sw = sub.add_parser(
        "sweep", parents=[common], help="render a grid of parameter values into DIR, with a contact sheet",
        description="Render CONTENT in the style of STYLE(s) once per combination of the --param "
                    "values and write each image, a manifest (sweep.json) and a labelled contact "
                    "sheet (sheet.png) into DIR. The first --param gives the sheet's rows, the "
                    "others its columns. Resumable: a rerun skips every cell whose image and "
                    "manifest entry exist. Every other flag applies to every cell.")
    sw.add_argument("content", metavar="CONTENT", help="content image file")
    sw.add_argument("styles", nargs="*", metavar="STYLE",
                    help="style image file(s); at least one in total with --style")
    sw.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (created)")
    _add_request_args(sw)
    g = sw.add_argument_group("sweep")
    g.add_argument("--param", dest="axes", action="append", type=_parse_axis, default=[],
                   metavar="KEY=V1,V2,...", required=True,
                   help="a parameter and its values (each parsed as JSON if possible; a list value "
                        "in brackets: scales=[128,256],[256,512]); repeatable, one axis each; a single "
                        "value sends that parameter to every cell")
    g.add_argument("--concurrency", type=_positive_int, default=1, metavar="N",
                   help="requests in flight at once (default: %(default)d, one after the other)")
    g.add_argument("--tile", type=_positive_int, default=256, metavar="PX",
                   help="longest side of each image on the sheet, px (default: %(default)d; never enlarged)")
    g.add_argument("--progress", action="store_true",
                   help="show a progress bar over the cells on stderr (needs the 'progress' extra)")

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
    return parser


# ------------------------------------------------------------------------------ shared helpers


def _fmt_losses(losses: Dict[str, Any]) -> str:
    parts = []
    for k, v in losses.items():
        parts.append(f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}")
    return " ".join(parts) or "-"


def _request_params(args: argparse.Namespace) -> Dict[str, Any]:
    """The request parameters set by flags (those left unset are not sent)."""
    params: Dict[str, Any] = {}
    for name in _PARAM_FLAGS:
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    return params


def _styles(args: argparse.Namespace) -> List[str]:
    return [*args.styles, *args.extra_styles]


def _style_input(styles: List[str]) -> StyleInput:
    # One style keeps the original single-string request; several go as a list.
    return styles[0] if len(styles) == 1 else list(styles)


def _image_args(args: argparse.Namespace) -> Dict[str, Any]:
    return {
        "init_image": args.init_image,
        "content_mask": args.content_mask,
        "style_masks": list(args.style_masks) or None,
    }


def _check_out_dir(path: Union[str, Path], flag: str) -> Path:
    """``path`` as a Path, after checking its directory exists (so nothing is sent in vain)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"{flag} {p}: directory {parent} does not exist")
    return p


def _check_image_suffix(path: Path, flag: str) -> None:
    """Raise ValueError unless Pillow can write a file named ``path`` (format by suffix)."""
    if Image.registered_extensions().get(path.suffix.lower()) not in Image.SAVE:
        raise ValueError(f"{flag} {path.name}: Pillow cannot write a {path.suffix or 'suffix-less'} file; "
                         "use .png or .jpg")


def _load_picture(path: ImageInput, name: str) -> Image.Image:
    """A local input image, decoded (for the compare sheet)."""
    return open_image(to_image_bytes(path, name=name))


# ------------------------------------------------------------------------------------ stylize


def _stylize(client: StyleTransferClient, args: argparse.Namespace) -> Dict[str, Any]:
    """Run ``stylize``; return its JSON document (the text summary is printed by the caller)."""
    params: Dict[str, Any] = dict(args.extra)
    params.update(_request_params(args))
    if args.history_out is not None or args.plot is not None:
        params["return_history"] = True
    styles = _styles(args)
    images = _image_args(args)

    # Everything that can fail locally fails here, before a minutes-long job is started.
    output = _check_out_dir(args.output, "-o")
    compare = plot = animate = None
    pictures: Optional[Tuple[Image.Image, List[Image.Image]]] = None
    if args.compare is not None:
        compare = _check_out_dir(args.compare, "--compare")
        _check_image_suffix(compare, "--compare")
        pictures = (_load_picture(args.content, "content"),
                    [_load_picture(s, f"style[{i}]") for i, s in enumerate(styles)])
    if args.plot is not None:
        from ._plots import plot_formats

        plot = _check_out_dir(args.plot, "--plot")
        if plot.suffix.lower().lstrip(".") not in plot_formats():  # needs matplotlib: checks the extra too
            raise ValueError(f"--plot {plot.name}: use one of "
                             f"{', '.join('.' + s for s in sorted(plot_formats()))}")
    if args.animate is not None:
        animate = _check_out_dir(args.animate, "--animate")
        if animate.suffix.lower() != ".gif":
            raise ValueError(f"--animate {animate.name}: the animation is a GIF, name it *.gif")
    if args.history_out is not None:
        _check_out_dir(args.history_out, "--history-out")
    if args.progress:
        require_tqdm()

    previews: List[PreviewEvent] = []
    start = time.monotonic()
    if args.progress or args.save_previews is not None or animate is not None:
        preview_dir = None if args.save_previews is None else Path(args.save_previews)
        preview_every = args.preview_every
        if preview_dir is not None:
            preview_dir.mkdir(parents=True, exist_ok=True)
        if (preview_dir is not None or animate is not None) and preview_every is None:
            preview_every = DEFAULT_CLI_PREVIEW_EVERY

        def on_event(event: StreamEvent) -> None:
            if isinstance(event, PreviewEvent):
                if preview_dir is not None:
                    event.save(preview_dir / PREVIEW_FILENAME.format(iteration=event.iteration))
                if animate is not None:
                    previews.append(event)

        events = client.stylize_stream(
            args.content, _style_input(styles), progress_every=args.progress_every,
            preview_every=preview_every, **images, **params)
        result = consume(events, progress=args.progress, on_event=on_event)
    else:
        result = client.stylize(args.content, _style_input(styles), **images, **params)
    elapsed = time.monotonic() - start

    files: Dict[str, str] = {"output": str(result.save(output))}
    doc: Dict[str, Any] = {"ok": True, "command": "stylize", **_result_doc(result),
                           "elapsed_s": round(elapsed, 3), "files": files}
    if compare is not None and pictures is not None:
        caption = (f"{result.width}x{result.height}, {result.iterations} iterations, "
                   f"total loss {result.losses.get('total', float('nan')):.4g}, "
                   f"weights {result.weights} on {result.device}")
        from ._sheets import compare_sheet

        compare_sheet(pictures[0], pictures[1], result.image, caption=caption).image.save(compare)
        files["compare"] = str(compare)
    if plot is not None and result.history is not None:
        from ._plots import plot_history

        plot_history(result.history, plot, title=f"{Path(args.content).name}: losses per iteration "
                                                  f"(weights {result.weights})")
        files["plot"] = str(plot)
    if animate is not None:
        doc["animation_frames"] = _animate(previews, result, animate)
        files["animation"] = str(animate)
    if args.history_out is not None and result.history is not None:
        Path(args.history_out).write_text(json.dumps(result.history, indent=1) + "\n")
        files["history"] = str(args.history_out)
    if args.save_previews is not None:
        files["previews"] = str(args.save_previews)
    if (args.history_out is not None or plot is not None) and result.history is None:
        # The pictures that need no history are written, so the job is not lost.
        raise APIResponseValidationError(
            "return_history was sent but the answer has no history; wrote only " + ", ".join(files.values()))
    return doc


def _animate(previews: List[PreviewEvent], result: StylizeResult, path: Path) -> int:
    """Write the previews as a GIF, ending on the result (scaled down to the previews' size)
    unless the last preview already shows the final iteration; return the number of frames."""
    from ._sheets import fit_within, write_animation

    # Labels "iteration/total": short enough for the small previews of a small image.
    frames = [p.image for p in previews]
    labels = [f"{p.iteration}/{result.iterations}" for p in previews]
    if not previews or previews[-1].iteration != result.iterations:
        size = (max(p.width for p in previews), max(p.height for p in previews)) if previews else result.image.size
        frames.append(fit_within(result.image, *size))
        labels.append(f"{result.iterations}/{result.iterations}")
    write_animation(frames, path, labels=labels)
    return len(frames)


def _result_doc(result: StylizeResult) -> Dict[str, Any]:
    return {
        "format": result.format, "width": result.width, "height": result.height,
        "iterations": result.iterations, "stopped": result.stopped, "losses": result.losses,
        "weights": result.weights, "device": result.device, "cache": result.cache,
        "timings_ms": result.timings_ms, "params": result.params,
    }


def _stylize_text(doc: Dict[str, Any]) -> str:
    files = doc["files"]
    extra = "".join(f"\nwrote {files[k]} ({k})" for k in ("compare", "plot", "animation", "history") if k in files)
    budget = " (time budget spent)" if doc["stopped"] == "time_budget" else ""
    return (f"wrote {files['output']} ({doc['width']}x{doc['height']} {doc['format']}) in {doc['elapsed_s']:.1f} s: "
            f"iterations={doc['iterations']}{budget} losses[{_fmt_losses(doc['losses'])}] "
            f"weights={doc['weights']} device={doc['device']}{extra}")


# -------------------------------------------------------------------------------------- sweep

SWEEP_MANIFEST = "sweep.json"
SWEEP_SHEET = "sheet.png"
_MANIFEST_FORMAT = 1


def _value_name(value: Any) -> str:
    """A parameter value as it appears in a cell's file name (exact, JSON-like)."""
    if isinstance(value, list):
        return ",".join(_value_name(v) for v in value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _value_label(value: Any) -> str:
    """A parameter value as it appears on the sheet (short: 1e-05, 100, true)."""
    if isinstance(value, list):
        return "[" + ",".join(_value_label(v) for v in value) + "]"
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._,+-=" else "_" for ch in text)


def _cell_file(cell: Dict[str, Any], suffix: str) -> str:
    return _safe("__".join(f"{k}={_value_name(v)}" for k, v in cell.items())) + suffix


def _sha256(path: Optional[str]) -> Optional[str]:
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class _Cell:
    index: int  # position in the grid, row-major
    row: int
    col: int
    params: Dict[str, Any]  # the axis values of this cell
    file: str  # image file name inside DIR


def _write_json(path: Path, doc: Dict[str, Any]) -> None:
    """Write ``doc`` atomically (a temporary file renamed over ``path``)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def _sweep(args: argparse.Namespace, make_client: Callable[[], StyleTransferClient],
           log: Callable[[str], None]) -> Dict[str, Any]:
    """Run ``sweep``; return its JSON document."""
    axes: Dict[str, List[Any]] = {}
    for key, values in args.axes:
        if key in axes:
            raise ValueError(f"--param {key} is given twice; list all its values in one --param")
        axes[key] = values
    base = _request_params(args)
    both = sorted(set(base) & set(axes))
    if both:
        raise ValueError(f"{', '.join(both)}: set by a flag and by --param; use one of them")
    styles = _styles(args)
    images = _image_args(args)
    # Read every input before anything is sent or written (FileNotFoundError, a directory...).
    for i, path in enumerate([args.content, *styles]):
        to_image_bytes(path, name="content" if i == 0 else f"style[{i - 1}]")
    if args.progress:
        require_tqdm()

    # What must be the same for a rerun to reuse finished cells: the model, the fixed
    # parameters and the input images' contents (their paths may differ).
    inputs: Dict[str, Any] = {"content": _sha256(args.content), "styles": [_sha256(s) for s in styles]}
    paths: Dict[str, Any] = {"content": str(args.content), "styles": [str(s) for s in styles]}
    for key, value in images.items():
        if isinstance(value, list):
            inputs[key], paths[key] = [_sha256(v) for v in value], [str(v) for v in value]
        else:
            inputs[key], paths[key] = _sha256(value), value
    settings = {"model": args.model, "inputs_sha256": inputs, "params": base}

    out_dir = Path(args.output)
    manifest_path = out_dir / SWEEP_MANIFEST
    manifest: Dict[str, Any] = {"format": _MANIFEST_FORMAT, **settings, "inputs": paths, "axes": axes,
                                "cells": {}}
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{manifest_path} is not JSON ({exc}); move it away to start afresh") from exc
        for key, value in settings.items():
            if old.get(key) != value:
                raise ValueError(
                    f"{out_dir} holds a sweep with other settings ({key} differs from this command's); "
                    "use another -o DIR, or delete the directory to start afresh")
        manifest["cells"] = dict(old.get("cells") or {})
    out_dir.mkdir(parents=True, exist_ok=True)

    # The grid: the first axis gives the rows, the product of the others the columns.
    names = list(axes)
    row_values = axes[names[0]] if len(names) > 1 else [None]
    col_axes = names[1:] if len(names) > 1 else names
    col_values = list(itertools.product(*(axes[n] for n in col_axes)))
    cells: List[_Cell] = []
    for r, rv in enumerate(row_values):
        for c, cv in enumerate(col_values):
            params = {} if rv is None else {names[0]: rv}
            params.update(zip(col_axes, cv))
            suffix = ".jpg" if {**base, **params}.get("output_format") == "jpeg" else ".png"
            cells.append(_Cell(len(cells), r, c, params, _cell_file(params, suffix)))
    files = [c.file for c in cells]
    if len(set(files)) != len(files):
        raise ValueError("two cells would get the same file name; make the --param values differ "
                         "in more than punctuation")

    def finished(cell: _Cell) -> bool:
        entry = manifest["cells"].get(cell.file)
        return bool(entry) and entry.get("params") == cell.params and (out_dir / cell.file).is_file()

    todo = [c for c in cells if not finished(c)]
    total = len(cells)
    for cell in cells:
        if cell not in todo:
            log(f"[{cell.index + 1}/{total}] {_cell_text(cell)}: done before, skipped")

    # Each worker thread takes a client of its own from the pool (requests sessions are not
    # shared between threads).
    n_workers = min(args.concurrency, len(todo)) or 1
    pool: queue.SimpleQueue[StyleTransferClient] = queue.SimpleQueue()
    clients = [make_client() for _ in range(n_workers)] if todo else []
    for sweep_client in clients:
        pool.put(sweep_client)
    stop = threading.Event()

    def render(cell: _Cell) -> Optional[Tuple[StylizeResult, float]]:
        if stop.is_set():
            return None  # an earlier cell failed: start nothing new
        client = pool.get()
        try:
            start = time.monotonic()
            result = client.stylize(args.content, _style_input(styles), **images, **base, **cell.params)
            elapsed = time.monotonic() - start
            tmp = out_dir / (cell.file + ".part" + Path(cell.file).suffix)
            result.save(tmp)
            os.replace(tmp, out_dir / cell.file)  # a half-written image never counts as finished
            return result, elapsed
        except BaseException:
            stop.set()  # before this thread takes its next cell
            raise
        finally:
            pool.put(client)

    bar: Any = None
    if args.progress and todo:
        bar = require_tqdm()(total=len(todo), unit="cell", file=sys.stderr, dynamic_ncols=True)
        log = bar.write if not args.json else log
    rendered: List[Dict[str, Any]] = []
    error: Optional[BaseException] = None
    interrupted = False
    executor = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="nst-sweep")
    try:
        pending: Dict[Future[Optional[Tuple[StylizeResult, float]]], _Cell] = {executor.submit(render, cell): cell for cell in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                cell = pending.pop(fut)
                try:
                    outcome = fut.result()
                except Exception as exc:
                    if error is None:
                        error = exc
                        stop.set()
                        log(f"[{cell.index + 1}/{total}] {_cell_text(cell)}: failed: {exc}")
                    continue
                if outcome is None:
                    continue
                result, elapsed = outcome
                effective = _result_doc(result)
                effective["effective_params"] = effective.pop("params")
                entry = {"params": cell.params, **effective, "elapsed_s": round(elapsed, 3)}
                manifest["cells"][cell.file] = entry
                _write_json(manifest_path, manifest)
                rendered.append({"file": cell.file, **entry})
                if bar is not None:
                    bar.update(1)
                log(f"[{cell.index + 1}/{total}] {_cell_text(cell)} -> {out_dir / cell.file} in {elapsed:.1f} s: "
                    f"iterations={result.iterations} losses[{_fmt_losses(result.losses)}]")
    except KeyboardInterrupt:
        # Start no new cell; requests in flight are left to finish in their threads.
        interrupted = True
        stop.set()
        raise
    finally:
        executor.shutdown(wait=not interrupted, cancel_futures=True)
        if bar is not None:
            bar.close()
        for sweep_client in clients:
            sweep_client.close()

    _write_json(manifest_path, manifest)
    sheet = _sweep_sheet(args, cells, row_values, col_axes, col_values, names, manifest, out_dir)
    if error is not None:
        raise error
    cells_doc = []
    for cell in cells:
        entry = manifest["cells"][cell.file]
        status = "rendered" if any(r["file"] == cell.file for r in rendered) else "skipped"
        cells_doc.append({"file": cell.file, "status": status, "row": cell.row, "col": cell.col, **entry})
    return {"ok": True, "command": "sweep", "dir": str(out_dir), "sheet": str(sheet),
            "manifest": str(manifest_path), "axes": axes, "rendered": len(rendered),
            "skipped": total - len(rendered), "cells": cells_doc}


def _cell_text(cell: _Cell) -> str:
    return " ".join(f"{k}={_value_label(v)}" for k, v in cell.params.items())


def _sweep_sheet(args: argparse.Namespace, cells: List[_Cell], row_values: List[Any], col_axes: List[str],
                 col_values: List[Tuple[Any, ...]], names: List[str], manifest: Dict[str, Any],
                 out_dir: Path) -> Path:
    """Write DIR/sheet.png from the cells' files (a cell not finished shows as missing)."""
    from ._sheets import grid_sheet

    grid: List[List[Optional[Image.Image]]] = [[None] * len(col_values) for _ in row_values]
    for cell in cells:
        path = out_dir / cell.file
        if cell.file in manifest["cells"] and path.is_file():
            with Image.open(path) as img:
                img.load()
                grid[cell.row][cell.col] = img.copy()
    row_labels = ["" if v is None else f"{names[0]}={_value_label(v)}" for v in row_values]
    col_labels = [" ".join(f"{k}={_value_label(v)}" for k, v in zip(col_axes, cv)) for cv in col_values]
    fixed = " ".join(f"{k}={_value_label(v)}" for k, v in manifest["params"].items())
    title = (f"{Path(args.content).name} in the style of {', '.join(Path(s).name for s in _styles(args))}"
             + (f"; {fixed}" if fixed else ""))
    path = out_dir / SWEEP_SHEET
    grid_sheet(grid, row_labels=row_labels, col_labels=col_labels, tile=args.tile, title=title).image.save(path)
    return path


def _sweep_text(doc: Dict[str, Any]) -> str:
    return (f"wrote {doc['sheet']} ({len(doc['cells'])} cells: {doc['rendered']} rendered, "
            f"{doc['skipped']} skipped) and {doc['manifest']}")


# ------------------------------------------------------------------------------- health, info


def _info_doc(client: StyleTransferClient) -> Dict[str, Any]:
    info = client.info()
    return {"ok": True, "command": "info", "management_url": client.management_url, **info.to_dict(),
            "ready_workers": info.ready_workers}


def _info_text(doc: Dict[str, Any]) -> str:
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


# --------------------------------------------------------------------------------------- main


def _guess_command(argv: Sequence[str]) -> str:
    for arg in argv:
        if arg in ("stylize", "sweep", "health", "info"):
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
    reset = _JSON_ERRORS.set(_guess_command(argv) if "--json" in argv else None)
    try:
        return _run(build_parser(), argv)
    finally:
        _JSON_ERRORS.reset(reset)


def _run(parser: argparse.ArgumentParser, argv: List[str]) -> int:
    args, rest = parser.parse_known_args(argv)
    if rest:
        # argparse gives a "*" positional its (possibly empty) share at the first run of
        # positionals, so STYLEs placed after options (CONTENT -o OUT STYLE) end up here.
        if args.command not in ("stylize", "sweep") or any(r.startswith("-") for r in rest):
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        args.styles = [*args.styles, *rest]
    if args.command in ("stylize", "sweep") and not (args.styles or args.extra_styles):
        parser.error(f"{args.command}: at least one style image is required (STYLE or --style PATH)")
    if args.command == "stylize" and (args.progress_every is not None or args.preview_every is not None) \
            and not (args.progress or args.save_previews is not None or args.animate is not None):
        parser.error("stylize: --progress-every/--preview-every need --progress, --save-previews or --animate")

    def make_client() -> StyleTransferClient:
        extra: Dict[str, Any] = {}
        if args.command == "info":
            extra = {"management_url": args.management_url, "management_token": args.management_token}
        return StyleTransferClient(
            base_url=args.url, model=args.model, token=args.token, key_file=args.key_file,
            timeout=args.timeout, connect_timeout=args.connect_timeout, max_retries=args.max_retries, **extra)

    text: Optional[str]
    log: Callable[[str], None] = (lambda line: print(line, file=sys.stderr)) if args.json else print
    try:
        if args.command == "sweep":
            doc = _sweep(args, make_client, log)
            text = _sweep_text(doc)
        else:
            with make_client() as client:
                if args.command == "stylize":
                    doc = _stylize(client, args)
                    text = _stylize_text(doc)
                elif args.command == "health":
                    body = client.health()
                    doc = {"ok": True, "command": "health", "url": client.base_url, "response": body}
                    text = json.dumps(body)
                else:
                    doc = _info_doc(client)
                    text = _info_text(doc)
    except KeyboardInterrupt as exc:
        return _fail(args, exc, "interrupted")
    except (NSTError, OSError, TypeError, ValueError) as exc:
        return _fail(args, exc, None)
    except Exception as exc:  # a bug: a traceback in text mode, still one document with --json
        if not args.json:
            raise
        return _fail(args, exc, None)
    if args.json:
        _print_json(doc)
    else:
        print(text)
    return EXIT_OK


def _fail(args: argparse.Namespace, exc: BaseException, message: Optional[str]) -> int:
    """Report ``exc`` (stderr text, or the JSON document on stdout) and return its exit code."""
    code = exit_code(exc)
    if args.json:
        doc = _exc_doc(args.command, exc)
        if message:
            doc["error"]["message"] = message
        _print_json(doc)
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


if __name__ == "__main__":
    sys.exit(main())

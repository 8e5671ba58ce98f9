"""``nst-client`` command line.

Exit codes: 0 success; 1 other error; 2 usage error, bad local input, or the server
rejected the request (400/404/413/422); 3 authentication; 4 connection failure or
timeout; 5 server error (5xx); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union, get_args

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
    AuthenticationError,
    BadRequestError,
    KeyFileError,
    NotFoundError,
    NSTError,
    PayloadTooLargeError,
    ServerError,
)
from ._stream import PreviewEvent, StreamEvent, consume, require_tqdm
from ._types import ColorControl, ImageInput, InitMode, OptimizerName, OutputFormat, Pooling, RenderMode, StyleInput
from ._version import __version__

_T = TypeVar("_T")

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


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def _layer_name(text: str) -> str:
    if not text:
        raise ValueError("empty layer name")
    return text


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
    img = st.add_argument_group("images")
    img.add_argument("--style", dest="extra_styles", action="append", default=[], metavar="PATH",
                     help="another style image, after the positional ones; repeatable")
    img.add_argument("--style-mask", dest="style_masks", action="append", default=[], metavar="PATH",
                     help="region mask for one style, in style order; repeatable (one per style)")
    img.add_argument("--content-mask", metavar="PATH",
                     help="content region mask: each distinct colour labels a region")
    img.add_argument("--init-image", metavar="PATH", help="starting image, used with --init image")
    p = st.add_argument_group("request parameters")
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
    p.add_argument("--history-out", metavar="PATH",
                   help="write the per-iteration losses as a JSON list to PATH (implies --return-history)")
    p.add_argument("--param", dest="extra", action="append", type=_parse_extra, default=[], metavar="KEY=VALUE",
                   help="extra server parameter (VALUE parsed as JSON if possible); repeatable")

    s = st.add_argument_group("streamed progress")
    s.add_argument("--progress", action="store_true",
                   help="show a progress bar on stderr while the server works (needs the "
                        "'progress' extra: pip install 'nst-client[progress]')")
    s.add_argument("--progress-every", type=int, metavar="N",
                   help="iterations between progress events (server default 10)")
    s.add_argument("--preview-every", type=int, metavar="N",
                   help=f"iterations between preview images (default {DEFAULT_CLI_PREVIEW_EVERY} "
                        "with --save-previews)")
    s.add_argument("--save-previews", metavar="DIR",
                   help=f"write each preview to DIR/{PREVIEW_FILENAME.replace('%', '%%')}")

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


# Request parameters the CLI has a flag for (argparse dest == parameter name).
_PARAM_FLAGS = (
    "image_size", "steps", "content_weight", "style_weight", "tv_weight", "init", "seed",
    "output_format", "style_blend_weights", "style_scale", "color_control", "pooling",
    "content_layers", "style_layers", "style_layer_weights", "optimizer", "learning_rate",
    "lbfgs_history", "scales", "mode", "return_history", "time_budget_s",
)


def _stylize(client: StyleTransferClient, args: argparse.Namespace) -> int:
    params: Dict[str, Any] = dict(args.extra)
    for name in _PARAM_FLAGS:
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    if args.history_out is not None:
        params["return_history"] = True
    styles: List[ImageInput] = [*args.styles, *args.extra_styles]
    # One style keeps the original single-string request; several go as a list.
    style: StyleInput = styles[0] if len(styles) == 1 else styles
    images: Dict[str, Any] = {
        "init_image": args.init_image,
        "content_mask": args.content_mask,
        "style_masks": list(args.style_masks) or None,
    }
    start = time.monotonic()
    if args.progress or args.save_previews is not None:
        preview_dir = None if args.save_previews is None else Path(args.save_previews)
        preview_every = args.preview_every
        if args.progress:
            require_tqdm()  # before the job is started
        if preview_dir is not None:
            preview_dir.mkdir(parents=True, exist_ok=True)
            if preview_every is None:
                preview_every = DEFAULT_CLI_PREVIEW_EVERY

        def save_preview(event: StreamEvent) -> None:
            if preview_dir is not None and isinstance(event, PreviewEvent):
                event.save(preview_dir / PREVIEW_FILENAME.format(iteration=event.iteration))

        events = client.stylize_stream(
            args.content, style, progress_every=args.progress_every, preview_every=preview_every,
            **images, **params)
        result = consume(events, progress=args.progress, on_event=save_preview)
    else:
        result = client.stylize(args.content, style, **images, **params)
    elapsed = time.monotonic() - start
    out = result.save(args.output)
    print(
        f"wrote {out} ({result.width}x{result.height} {result.format}) in {elapsed:.1f} s: "
        f"iterations={result.iterations}{' (time budget spent)' if result.stopped == 'time_budget' else ''} "
        f"losses[{_fmt_losses(result.losses)}] "
        f"weights={result.weights} device={result.device}"
    )
    if args.history_out is not None:
        if result.history is None:
            print(f"nst-client: error: the server sent no history; {args.history_out} not written",
                  file=sys.stderr)
            return EXIT_ERROR
        Path(args.history_out).write_text(json.dumps(result.history, indent=1) + "\n")
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI.

    Args:
        argv: Arguments without the program name; ``None`` means ``sys.argv[1:]``.

    Returns:
        The process exit code (see the module docstring).
    """
    parser = build_parser()
    args, rest = parser.parse_known_args(list(argv) if argv is not None else None)
    if rest:
        # argparse gives a "*" positional its (possibly empty) share at the first run of
        # positionals, so STYLEs placed after options (CONTENT -o OUT STYLE) end up here.
        if args.command != "stylize" or any(r.startswith("-") for r in rest):
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        args.styles = [*args.styles, *rest]
    if args.command == "stylize" and not (args.styles or args.extra_styles):
        parser.error("stylize: at least one style image is required (STYLE or --style PATH)")
    if (args.command == "stylize" and not (args.progress or args.save_previews is not None)
            and (args.progress_every is not None or args.preview_every is not None)):
        parser.error("stylize: --progress-every/--preview-every need --progress or --save-previews")
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

"""Command-line flags shared by the commands: connection, images, and the request parameters,
whose flags are derived from the SDK's one declaration (``nst_client._params``): name, value
type, choices, metavar and help."""

from __future__ import annotations

import argparse
import collections.abc
import json
import math
from typing import Any, Callable, Dict, List, Literal, Sequence, Tuple, TypeVar, Union, get_args, get_origin

from .._constants import (
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
from .._images import StyleInput
from .._params import PARAMS, RENAMED, Param
from ._output import Parser

_T = TypeVar("_T")

__all__ = ["common_parser", "add_inputs", "add_request_args", "add_param_flag", "request_params", "styles", "style_input",
           "image_args", "request_args", "parse_extra", "parse_axis", "positive_int", "add_cells_command",
           "add_cell_args"]


def parse_extra(text: str) -> Tuple[str, Any]:
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


def parse_axis(text: str) -> Tuple[str, List[Any]]:
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


def _nonempty(text: str) -> str:
    if not text:
        raise ValueError("empty item")
    return text


def positive_int(text: str) -> int:
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


def _int_or_list(text: str) -> Union[int, List[int]]:
    """``"3"`` -> ``3``; ``"256,512"`` -> ``[256, 512]`` (``scales``: levels, or their long sides in px)."""
    if "," not in text:
        try:
            return int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer or a comma-separated list of integers, got {text!r}") from None
    return _comma_list(int, "integers")(text)


#: The items of a list flag: how each is converted, and what the error calls them.
_ITEMS: Dict[Any, Tuple[Callable[[str], Any], str]] = {
    float: (_finite_float, "numbers"), int: (int, "integers"), str: (_nonempty, "names")}


def _conversion(param: Param) -> Dict[str, Any]:
    """The ``add_argument`` keywords that parse ``param``'s value, from its declared type."""
    kind = param.type
    if get_origin(kind) is Literal:
        return {"choices": get_args(kind)}
    if kind is bool:
        return {"action": "store_true", "default": None}
    if kind in (int, float):
        return {"type": kind}
    if get_origin(kind) is Union:  # int or a list of ints (scales)
        return {"type": _int_or_list}
    if get_origin(kind) is collections.abc.Sequence:
        convert, what = _ITEMS[get_args(kind)[0]]
        return {"type": _comma_list(convert, param.cli.items or what)}
    raise TypeError(f"{param.name}: no command-line form for {kind!r}")


def add_param_flag(group: Any, param: Param) -> None:
    """Add the flag of one declared parameter (``--image-size`` for ``image_size``; ``dest`` is the name)."""
    flag = param.cli.flag or "--" + param.name.replace("_", "-")
    old = [f"--{o.replace('_', '-')}" for o, new in RENAMED.items() if new == param.name]  # still accepted
    extra = {} if param.cli.metavar is None else {"metavar": param.cli.metavar}
    help_ = param.cli.help + "".join(f" ({o}: its old spelling)" for o in old)
    group.add_argument(flag, *old, dest=param.name, help=help_, **extra, **_conversion(param))


def common_parser() -> argparse.ArgumentParser:
    """The connection and output flags every command takes (a ``parents=`` parser)."""
    common = Parser(add_help=False)
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
    return common


def add_request_args(parser: argparse.ArgumentParser, params: Sequence[Param] = PARAMS) -> None:
    """The image and request-parameter flags shared by ``stylize``, ``sweep``, ``submit`` and
    ``plan`` (``params``: which parameters get a flag; ``plan`` leaves out ``--dry-run``)."""
    img = parser.add_argument_group("images")
    img.add_argument("--style", dest="extra_styles", action="append", default=[], metavar="PATH",
                     help="another style image, after the positional ones; repeatable")
    img.add_argument("--style-mask", dest="style_masks", action="append", default=[], metavar="PATH",
                     help="region mask for one style, in style order; repeatable (one per style)")
    img.add_argument("--content-mask", metavar="PATH",
                     help="content region mask: each distinct colour labels a region")
    img.add_argument("--init-image", metavar="PATH", help="starting image, used with --init image")
    p = parser.add_argument_group("request parameters")
    for param in params:
        add_param_flag(p, param)


def add_inputs(parser: argparse.ArgumentParser, params: Sequence[Param] = PARAMS) -> None:
    """What a stylize request takes (``stylize``, ``submit``, ``plan``): CONTENT, STYLE(s), the
    image and request-parameter flags (of ``params``), and ``--param``."""
    parser.add_argument("content", metavar="CONTENT", help="content image file")
    parser.add_argument("styles", nargs="*", metavar="STYLE",
                        help="style image file(s); at least one in total with --style")
    add_request_args(parser, params)
    parser.add_argument_group("request parameters").add_argument(
        "--param", dest="extra", action="append", type=parse_extra, default=[], metavar="KEY=VALUE",
        help="extra server parameter (VALUE parsed as JSON if possible); repeatable")


def request_args(args: argparse.Namespace) -> Dict[str, Any]:
    """Every keyword of the request from the flags: ``--param`` extras, the declared parameters
    that are set, and the image fields."""
    return {**dict(args.extra), **request_params(args), **image_args(args)}


def request_params(args: argparse.Namespace) -> Dict[str, Any]:
    """The request parameters set by flags (those left unset, or without a flag in this
    command, are not sent)."""
    values = {param.name: getattr(args, param.name, None) for param in PARAMS}
    return {name: value for name, value in values.items() if value is not None}


def styles(args: argparse.Namespace) -> List[str]:
    """The style image files: the positional ones, then each ``--style``."""
    return [*args.styles, *args.extra_styles]


def style_input(paths: List[str]) -> StyleInput:
    """One style keeps the original single-string request; several go as a list."""
    return paths[0] if len(paths) == 1 else list(paths)


def image_args(args: argparse.Namespace) -> Dict[str, Any]:
    """The top-level image fields from their flags."""
    return {
        "init_image": args.init_image,
        "content_mask": args.content_mask,
        "style_masks": list(args.style_masks) or None,
    }


def add_cells_command(sub: Any, common: argparse.ArgumentParser, name: str, *, summary: str, description: str,
                      content: Tuple[str, str]) -> argparse.ArgumentParser:
    """Add ``sweep`` or ``batch`` (``name``) to the subparsers ``sub``: CONTENT (``content``: its
    metavar and help), STYLE(s), ``-o DIR`` and the request flags; return its parser."""
    parser: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=summary, description=description)
    parser.add_argument("content", metavar=content[0], help=content[1])
    parser.add_argument("styles", nargs="*", metavar="STYLE",
                        help="style image file(s); at least one in total with --style")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (created)")
    add_request_args(parser)
    return parser


def add_cell_args(group: Any, what: str) -> None:
    """Add ``--concurrency``, ``--tile`` and ``--progress`` to the argument group ``group``;
    ``what`` names the cells in their help (``"cells"``, ``"pairs"``)."""
    group.add_argument("--concurrency", type=positive_int, default=1, metavar="N",
                       help="requests in flight at once (default: %(default)d, one after the other)")
    group.add_argument("--tile", type=positive_int, default=256, metavar="PX",
                       help="longest side of each image on the sheet, px (default: %(default)d; never enlarged)")
    group.add_argument("--progress", action="store_true",
                       help=f"show a progress bar over the {what} on stderr (needs the 'progress' extra)")

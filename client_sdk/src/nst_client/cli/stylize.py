"""``nst-client stylize``: one request, its output file, and the pictures made from it
(compare sheet, loss plot, preview animation, history file)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from PIL import Image

from .._client import StyleTransferClient
from .._constants import DEFAULT_CLI_PREVIEW_EVERY, FULL_SIZE_PREVIEW, PREVIEW_FILENAME
from .._exceptions import APIResponseValidationError
from .._images import ImageInput, open_image, to_image_bytes
from .._params import STREAM_PARAMS
from .._results import StylizeResult
from .._stream import PreviewEvent, StreamEvent, consume, require_tqdm
from ._flags import add_inputs, add_param_flag, image_args, request_params, style_input, styles
from ._output import check_out_dir as _check_out_dir
from ._output import fmt_losses, fmt_stopped, result_doc
from .jobs import stylize_as_job

__all__ = ["add_parser", "run", "text"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``stylize`` command to the subparsers ``sub``."""
    st = sub.add_parser(
        "stylize", parents=[common], help="render CONTENT in the style of STYLE(s)",
        description="Render CONTENT in the style of one or more STYLE images and write the result "
                    "to OUT. Unset parameters are left to the server's defaults; see docs/api.md "
                    "for what each one means. LIST values are comma-separated, e.g. 0.7,0.3.")
    add_inputs(st)
    st.add_argument("-o", "--output", required=True, metavar="OUT",
                    help="output file; re-encoded by suffix if it differs from the server's format")

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
    for param in STREAM_PARAMS:
        add_param_flag(s, param)
    s.add_argument("--save-previews", metavar="DIR",
                   help=f"write each preview to DIR/{PREVIEW_FILENAME.replace('%', '%%')}")


def run(args: argparse.Namespace, make_client: Callable[[], StyleTransferClient],
        log: Callable[[str], None]) -> Dict[str, Any]:
    """Run ``stylize``; return its JSON document (the text summary is :func:`text`'s)."""
    with make_client() as client:
        return _stylize(client, args)


def _check_image_suffix(path: Path, flag: str) -> None:
    """Raise ValueError unless Pillow can write a file named ``path`` (format by suffix)."""
    if Image.registered_extensions().get(path.suffix.lower()) not in Image.SAVE:
        raise ValueError(f"{flag} {path.name}: Pillow cannot write a {path.suffix or 'suffix-less'} file; "
                         "use .png or .jpg")


def _load_picture(path: ImageInput, name: str) -> Image.Image:
    """A local input image, decoded (for the compare sheet)."""
    return open_image(to_image_bytes(path, name=name))


def _stylize(client: StyleTransferClient, args: argparse.Namespace) -> Dict[str, Any]:
    """Run ``stylize`` with ``client``; return its JSON document."""
    params: Dict[str, Any] = dict(args.extra)
    params.update(request_params(args))
    if args.history_out is not None or args.plot is not None:
        params["return_history"] = True
    paths = styles(args)
    images = image_args(args)

    # Everything that can fail locally fails here, before a minutes-long job is started.
    output = _check_out_dir(args.output, "-o")
    compare = plot = animate = None
    pictures: Optional[Tuple[Image.Image, List[Image.Image]]] = None
    if args.compare is not None:
        compare = _check_out_dir(args.compare, "--compare")
        _check_image_suffix(compare, "--compare")
        pictures = (_load_picture(args.content, "content"),
                    [_load_picture(s, f"style[{i}]") for i, s in enumerate(paths)])
    if args.plot is not None:
        from .plots import plot_formats

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
        if preview_dir is not None and params.get("preview_size") is None:
            params["preview_size"] = FULL_SIZE_PREVIEW  # full-size snapshots, as jcjohnson's -save_iter

        def on_event(event: StreamEvent) -> None:
            if isinstance(event, PreviewEvent):
                if preview_dir is not None:
                    event.save(preview_dir / PREVIEW_FILENAME.format(iteration=event.iteration))
                if animate is not None:
                    previews.append(event)

        events = client.stylize_stream(
            args.content, style_input(paths), progress_every=args.progress_every,
            preview_every=preview_every, **images, **params)
        result = consume(events, progress=args.progress, on_event=on_event)
    else:
        # A job, so that Ctrl-C cancels it on the server (a synchronous request would run on).
        result = stylize_as_job(client, args.content, style_input(paths), {**images, **params})
    elapsed = time.monotonic() - start

    files: Dict[str, str] = {"output": str(result.save(output))}
    doc: Dict[str, Any] = {"ok": True, "command": "stylize", **result_doc(result),
                           "elapsed_s": round(elapsed, 3), "files": files}
    if compare is not None and pictures is not None:
        caption = (f"{result.width}x{result.height}, {result.iterations} iterations, "
                   f"total loss {result.losses.get('total', float('nan')):.4g}, "
                   f"weights {result.weights} on {result.device}")
        from .sheets import compare_sheet

        compare_sheet(pictures[0], pictures[1], result.image, caption=caption).image.save(compare)
        files["compare"] = str(compare)
    if plot is not None and result.history is not None:
        from .plots import plot_history

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
    from .sheets import fit_within, write_animation

    # Labels "iteration/total": short enough for the small previews of a small image.
    frames = [p.image for p in previews]
    labels = [f"{p.iteration}/{result.iterations}" for p in previews]
    if not previews or previews[-1].iteration != result.iterations:
        size = (max(p.width for p in previews), max(p.height for p in previews)) if previews else result.image.size
        frames.append(fit_within(result.image, *size))
        labels.append(f"{result.iterations}/{result.iterations}")
    write_animation(frames, path, labels=labels)
    return len(frames)


def text(doc: Dict[str, Any]) -> str:
    """The one-line summary of a ``stylize`` document."""
    files = doc["files"]
    extra = "".join(f"\nwrote {files[k]} ({k})" for k in ("compare", "plot", "animation", "history") if k in files)
    return (f"wrote {files['output']} ({doc['width']}x{doc['height']} {doc['format']}) in {doc['elapsed_s']:.1f} s: "
            f"iterations={doc['iterations']}{fmt_stopped(doc['stopped'])} losses[{fmt_losses(doc['losses'])}] "
            f"weights={doc['weights']} device={doc['device']}{extra}")


"""Pictures made from results with Pillow alone: the compare sheet, the contact sheet of a
sweep or a batch, and the animation of streamed previews.

Every label is drawn with Pillow's default font (``ImageFont.load_default()``), so nothing
here needs a font file or another dependency. Pictures are never scaled up: a sheet's column is
as wide as its widest label, and a small image sits centred in it at its own size, so the
result shown on a compare sheet is pixel for pixel the image the server returned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "Box",
    "Sheet",
    "compare_sheet",
    "grid_sheet",
    "write_animation",
    "fit_within",
    "to_rgb",
]

#: ``(left, top, right, bottom)`` in pixels of the sheet, right and bottom exclusive (the
#: order ``Image.crop`` takes).
Box = Tuple[int, int, int, int]

BACKGROUND = (255, 255, 255)
TEXT_COLOR = (0, 0, 0)
MISSING_COLOR = (225, 225, 225)  # the tile of a sweep cell that has no image (yet)
PAD = 6  # pixels between tiles and around the sheet
LABEL_PAD = 3  # pixels above and below a line of label text
ELLIPSIS = "..."  # the default bitmap font of old Pillow versions is Latin-1 only
# Animation timing, in milliseconds per frame; the last frame is held longer so the loop
# visibly ends on the final image.
FRAME_MS = 200
LAST_FRAME_MS = 1500


@dataclass(frozen=True)
class Sheet:
    """A composed picture and where each image was placed in it.

    Attributes:
        image: The sheet, RGB.
        boxes: For a compare sheet, ``"content"``, ``"style"`` (or ``"style 1"``,
            ``"style 2"``, ... for several styles) and ``"result"``; for a grid sheet,
            ``(row, column)`` for each cell that had an image. Each value is the :data:`Box`
            the image occupies (its label is outside it).
    """

    image: Image.Image
    boxes: Dict[Union[str, Tuple[int, int]], Box]


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as RGB; transparent parts are composited onto white.

    Args:
        image: Any Pillow image (L, P, RGBA, CMYK, ...).

    Returns:
        An RGB image of the same size (``image`` itself if it already is RGB).
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def fit_within(image: Image.Image, width: int, height: int) -> Image.Image:
    """``image`` scaled down (never up), keeping its aspect ratio, to fit ``width`` x ``height`` px.

    Args:
        image: The picture.
        width: Largest width, pixels (>= 1).
        height: Largest height, pixels (>= 1).

    Returns:
        An RGB copy, at most ``width`` x ``height``, each side at least 1 px.
    """
    scale = min(1.0, width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    rgb = to_rgb(image)
    return rgb.resize(size, Image.Resampling.LANCZOS) if size != rgb.size else rgb.copy()


def _to_height(image: Image.Image, height: int) -> Image.Image:
    """``image`` resized to ``height`` px tall (up or down), aspect ratio kept, as RGB."""
    width = max(1, round(image.width * height / image.height))
    rgb = to_rgb(image)
    return rgb.resize((width, height), Image.Resampling.LANCZOS) if rgb.size != (width, height) else rgb.copy()


class _Text:
    """Measures and draws single lines of text in the default font."""

    def __init__(self) -> None:
        self.font = ImageFont.load_default()
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        self._probe = probe
        left, top, right, bottom = probe.textbbox((0, 0), "Ag|", font=self.font)
        self.line_height = int(bottom - top) + 2 * LABEL_PAD  # pixels of one label line

    def width(self, text: str) -> int:
        """Width of ``text`` in pixels."""
        if not text:
            return 0
        left, _, right, _ = self._probe.textbbox((0, 0), text, font=self.font)
        return int(right - min(0, left))

    def fit(self, text: str, width: int) -> str:
        """``text``, cut and ended with ``...`` if it is wider than ``width`` pixels."""
        if self.width(text) <= width:
            return text
        while text and self.width(text + ELLIPSIS) > width:
            text = text[:-1]
        return text + ELLIPSIS if text else ""

    def draw(self, draw: ImageDraw.ImageDraw, box: Box, text: str) -> None:
        """Draw ``text`` centred in ``box`` (cut to its width)."""
        left, top, right, bottom = box
        text = self.fit(text, right - left)
        if not text:
            return
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=self.font)
        x = left + (right - left - (x1 - x0)) // 2 - x0
        y = top + (bottom - top - (y1 - y0)) // 2 - y0
        draw.text((x, y), text, fill=TEXT_COLOR, font=self.font)


def compare_sheet(
    content: Image.Image,
    styles: Sequence[Image.Image],
    result: Image.Image,
    *,
    caption: Optional[str] = None,
) -> Sheet:
    """One row: content | style(s) | result, each labelled underneath, and an optional caption.

    The result is placed at its own size, unchanged; the content and the styles are resized to
    the result's height (aspect ratio kept), so all three read at the same scale.

    Args:
        content: The content image.
        styles: The style image(s), in request order (at least one).
        result: The stylized image.
        caption: One line of text under the row (e.g. parameters and losses); the sheet is
            made wide enough for it.

    Returns:
        The :class:`Sheet`; ``boxes`` has ``"content"``, ``"style"`` (one style) or
        ``"style 1"``, ``"style 2"``, ... (several) and ``"result"``.

    Raises:
        ValueError: ``styles`` is empty.
    """
    if not styles:
        raise ValueError("compare_sheet: at least one style image is required")
    height = result.height
    names = ["style"] if len(styles) == 1 else [f"style {i + 1}" for i in range(len(styles))]
    tiles: List[Tuple[str, Image.Image]] = [("content", _to_height(content, height))]
    tiles += [(name, _to_height(style, height)) for name, style in zip(names, styles)]
    tiles.append(("result", to_rgb(result)))

    text = _Text()
    columns = [max(img.width, text.width(name) + 2 * LABEL_PAD) for name, img in tiles]
    row_width = PAD + sum(c + PAD for c in columns)
    # The sheet is wide enough for the whole caption; the row is centred in it.
    width = max(row_width, text.width(caption) + 2 * (PAD + LABEL_PAD) if caption else 0)
    caption_h = text.line_height if caption else 0
    sheet_h = PAD + height + text.line_height + caption_h + PAD
    sheet = Image.new("RGB", (width, sheet_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    boxes: Dict[Union[str, Tuple[int, int]], Box] = {}
    x = PAD + (width - row_width) // 2
    for (name, img), col in zip(tiles, columns):
        left = x + (col - img.width) // 2
        sheet.paste(img, (left, PAD))
        boxes[name] = (left, PAD, left + img.width, PAD + img.height)
        text.draw(draw, (x, PAD + height, x + col, PAD + height + text.line_height), name)
        x += col + PAD
    if caption:
        top = PAD + height + text.line_height
        text.draw(draw, (PAD, top, width - PAD, top + caption_h), caption)
    return Sheet(sheet, boxes)


def grid_sheet(
    cells: Sequence[Sequence[Optional[Image.Image]]],
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    tile: int = 256,
    title: Optional[str] = None,
    missing_label: str = "missing",
) -> Sheet:
    """A labelled contact sheet: ``cells[r][c]`` under column label ``c``, right of row label ``r``.

    Each image is scaled down (never up) to fit a ``tile`` x ``tile`` square and centred in its
    cell; a cell of ``None`` is drawn as a grey tile saying ``missing_label``. The label column
    is left out when every row label is empty (a one-axis sweep).

    Args:
        cells: Rows of images (each row as long as ``col_labels``); ``None`` for a missing one.
        row_labels: One label per row (e.g. ``"style_weight=100"``), drawn left of the row.
        col_labels: One label per column, drawn above it.
        tile: Longest side of a cell's picture, in pixels (>= 16).
        title: One line of text above everything; the sheet is made wide enough for it.
        missing_label: Text of a missing cell's tile.

    Returns:
        The :class:`Sheet`; ``boxes[(r, c)]`` is where cell ``(r, c)``'s image was placed.

    Raises:
        ValueError: No cells, a row of the wrong length, label counts that do not match, or
            ``tile`` < 16.
    """
    if tile < 16:
        raise ValueError(f"tile must be >= 16 px, got {tile}")
    if not cells or not col_labels:
        raise ValueError("grid_sheet: no cells")
    if len(row_labels) != len(cells):
        raise ValueError(f"grid_sheet: {len(cells)} rows but {len(row_labels)} row labels")
    for r, row in enumerate(cells):
        if len(row) != len(col_labels):
            raise ValueError(f"grid_sheet: row {r} has {len(row)} cells but there are {len(col_labels)} columns")

    fitted = [[None if img is None else fit_within(img, tile, tile) for img in row] for row in cells]
    present = [img for row in fitted for img in row if img is not None]
    # Every cell of the grid is as large as the largest fitted picture (the tile when none is).
    cell_w = max((img.width for img in present), default=tile)
    cell_h = max((img.height for img in present), default=tile)

    text = _Text()
    line = text.line_height
    col_w = [max(cell_w, text.width(label) + 2 * LABEL_PAD) for label in col_labels]
    label_w = max((text.width(label) + 2 * LABEL_PAD for label in row_labels), default=0)
    label_w = label_w + PAD if any(row_labels) else 0
    title_h = line if title else 0
    grid_w = PAD + label_w + sum(w + PAD for w in col_w)
    # The sheet is wide enough for the whole title; the grid is centred under it.
    width = max(grid_w, text.width(title) + 2 * (PAD + LABEL_PAD) if title else 0)
    height = PAD + title_h + line + len(cells) * (cell_h + PAD)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        text.draw(draw, (PAD, PAD, width - PAD, PAD + title_h), title)

    header_top = PAD + title_h
    xs: List[int] = []
    x0_grid = (width - grid_w) // 2
    x = x0_grid + PAD + label_w
    for label, w in zip(col_labels, col_w):
        xs.append(x)
        text.draw(draw, (x, header_top, x + w, header_top + line), label)
        x += w + PAD

    boxes: Dict[Union[str, Tuple[int, int]], Box] = {}
    y = header_top + line
    for r, (row, label) in enumerate(zip(fitted, row_labels)):
        if label_w:
            text.draw(draw, (x0_grid + PAD, y, x0_grid + label_w, y + cell_h), label)
        for c, img in enumerate(row):
            x0 = xs[c] + (col_w[c] - cell_w) // 2  # the cell, centred in its column
            if img is None:
                draw.rectangle((x0, y, x0 + cell_w - 1, y + cell_h - 1), fill=MISSING_COLOR)
                text.draw(draw, (x0, y, x0 + cell_w, y + cell_h), missing_label)
                continue
            left = x0 + (cell_w - img.width) // 2
            top = y + (cell_h - img.height) // 2
            sheet.paste(img, (left, top))
            boxes[(r, c)] = (left, top, left + img.width, top + img.height)
        y += cell_h + PAD
    return Sheet(sheet, boxes)


def write_animation(
    frames: Sequence[Image.Image],
    path: Union[str, os.PathLike[str]],
    *,
    labels: Optional[Sequence[str]] = None,
    frame_ms: int = FRAME_MS,
    last_frame_ms: int = LAST_FRAME_MS,
) -> Path:
    """Write ``frames`` as a looping animated GIF.

    Frames of different sizes (previews of coarse-to-fine levels are smaller) are scaled to the
    largest frame's size. With ``labels``, each frame gets its label in a strip underneath.
    Pillow merges a frame identical to the one before it into that one (adding its duration),
    so the file can hold fewer frames than were given only when consecutive frames are equal.

    Args:
        frames: The pictures, in order (at least one).
        path: Destination; its suffix must be ``.gif`` and its parent directory must exist.
        labels: One line of text per frame (e.g. ``"iteration 10/300"``), or ``None``.
        frame_ms: How long each frame shows, in milliseconds (>= 20).
        last_frame_ms: How long the last frame shows, in milliseconds (>= 20).

    Returns:
        The path written, as a ``Path``.

    Raises:
        ValueError: No frames, ``labels`` of another length, a suffix other than ``.gif``, or
            a duration below 20 ms.
        OSError: The file cannot be written.
    """
    path = Path(path)
    if not frames:
        raise ValueError("write_animation: no frames")
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"write_animation: {len(frames)} frames but {len(labels)} labels")
    if path.suffix.lower() != ".gif":
        raise ValueError(f"an animation is written as GIF: the file name must end in .gif, got {path.name!r}")
    if min(frame_ms, last_frame_ms) < 20:
        raise ValueError("frame durations must be >= 20 ms (browsers slow shorter GIF frames down)")
    width = max(f.width for f in frames)
    height = max(f.height for f in frames)
    text = _Text()
    strip = text.line_height if labels is not None else 0
    out: List[Image.Image] = []
    for i, frame in enumerate(frames):
        rgb = to_rgb(frame)
        if rgb.size != (width, height):
            rgb = rgb.resize((width, height), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", (width, height + strip), BACKGROUND)
        canvas.paste(rgb, (0, 0))
        if labels is not None:
            text.draw(ImageDraw.Draw(canvas), (0, height, width, height + strip), labels[i])
        out.append(canvas)
    durations = [frame_ms] * (len(out) - 1) + [last_frame_ms]
    out[0].save(path, format="GIF", save_all=True, append_images=out[1:], duration=durations, loop=0,
                optimize=False)
    return path

"""A contact sheet of a bundle's images: one row per class, class names on the left, optional captions
(e.g. the projector's top-k labels of each image)."""

import math
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

_PAD = 4
_MIN_CELL = 64    # smaller images are scaled up by a whole factor to at least this many pixels a side
_MAX_CELL = 256   # larger ones are scaled down to at most this: the sheet's size is its rows and columns
_MAX_NAME_WIDTH = 220
_MAX_CAPTION_WIDTH = 160   # a column is as wide as its image, or its widest caption up to this
_BACKGROUND, _INK = (255, 255, 255), (20, 20, 20)
# the largest sheet drawn: twice Pillow's decompression-bomb threshold, past which Pillow itself refuses to
# open an image (1,000 classes of a 224-px bundle, 10 a class, made a 2,548 x 262,004 sheet: 2 GB to draw)
MAX_SHEET_PIXELS = 2 * 89_478_485
# the widest side a format's Pillow writer takes (JPEG's libjpeg 65,500, WebP 16,383, GIF 16-bit): past it,
# JPEG failed with "broken data stream when writing image file" after the whole sheet was drawn
MAX_SHEET_SIDE = {"JPEG": 65_500, "WEBP": 16_383, "GIF": 65_535}


def first_per_class(labels: torch.Tensor, classes: int, per_class: int) -> torch.Tensor:
    """The indices of the first ``per_class`` images of each of the first ``classes`` classes, class by class:
    the images a contact sheet shows."""
    return torch.tensor([i for _, row in _rows(labels.tolist(), classes, per_class) for i in row], dtype=torch.long)


def _rows(labels: list[int], classes: int, per_class: int) -> list[tuple[int, list[int]]]:
    """(class, the positions of its first ``per_class`` images) for each class below ``classes`` that has
    one, in class order: one pass over the labels (a scan per class was 50M steps for 1,000 classes of 50)."""
    rows: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        if 0 <= y < classes:
            row = rows.setdefault(y, [])
            if len(row) < per_class:
                row.append(i)
    return sorted(rows.items())


def sheet_size(image_shape, labels: torch.Tensor, class_names: list[str], *, per_class: int = 10,
               caption_lines: int = 0) -> tuple[int, int]:
    """The (width, height) of the sheet ``render_grid`` draws for images of ``image_shape`` (..., H, W)
    with these labels: exact without captions, at most this with captions of up to ``caption_lines``
    lines (their width is not known yet), so a sheet too large to write is refused before it is labelled."""
    return _layout(image_shape, labels.detach().cpu().tolist(), class_names, per_class, None, caption_lines).size


def sheet_refusal(width: int, height: int, image_format: str | None = None, *, at_most: bool = False) -> str | None:
    """Why a sheet of ``width`` x ``height`` (``at_most``: up to that, as ``sheet_size`` bounds a captioned
    one) is not drawn (as ``image_format``), or None."""
    size = f"the sheet would be {'up to ' if at_most else ''}{width:,}x{height:,} pixels"
    side = MAX_SHEET_SIDE.get(image_format)
    if side is not None and max(width, height) > side:
        return f"{size}, more than {image_format}'s {side:,} a side"
    if width * height > MAX_SHEET_PIXELS:
        return f"{size}, more than the {MAX_SHEET_PIXELS:,} an image viewer (Pillow included) opens"
    return None


def _font() -> ImageFont.ImageFont:
    """DejaVu Sans where installed (wide Unicode coverage), else Pillow's built-in font."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", 12)
    except OSError:
        pass
    try:
        return ImageFont.load_default(size=12)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text``, or its longest prefix plus an ellipsis that fits ``width`` pixels: found by bisection,
    so a long name from a file costs a few measurements, not one per character."""
    if draw.textlength(text, font=font) <= width:
        return text
    low, high = 0, len(text) - 1   # text[:low] + "…" fits (or low is 0); text[:high + 1] + "…" does not
    while low < high:
        middle = (low + high + 1) // 2
        if draw.textlength(text[:middle] + "…", font=font) <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low] + "…"


def _cell(height: int, width: int) -> tuple[int, int]:
    """A cell's (width, height): the image scaled up by a whole factor to ``_MIN_CELL``, or down to
    ``_MAX_CELL`` a side (a file's 1 x 8,192 images would otherwise make a sheet of a billion pixels)."""
    side = max(height, width)
    if side > _MAX_CELL:
        return max(1, width * _MAX_CELL // side), max(1, height * _MAX_CELL // side)
    scale = max(1, _MIN_CELL // side)
    return width * scale, height * scale


def render_grid(images: torch.Tensor, labels: torch.Tensor, class_names: list[str],
                captions: list[str] | None = None, per_class: int = 10) -> Image.Image:
    """Grid of up to ``per_class`` images per class (uint8 [N, C, H, W], C = 1 or 3).

    ``captions`` (one string per image, may hold several lines, e.g. a labeller's top-k) are drawn
    under each image. Classes without images are skipped.
    """
    images = images.detach().cpu()
    labels = labels.detach().cpu().tolist()
    if captions is not None and len(captions) != len(labels):
        raise ValueError(f"captions has {len(captions)} entries for {len(labels)} images")
    _, _, height, width = images.shape
    layout = _layout(images.shape, labels, class_names, per_class, captions, 0)
    refusal = sheet_refusal(*layout.size)
    if refusal:
        raise ValueError(refusal)
    font, line_h, (cell_w, cell_h), column_w = layout.font, layout.line_h, layout.cell, layout.column_w
    sheet = Image.new("RGB", layout.size, _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for r, (c, indices) in enumerate(layout.rows):
        top = _PAD + r * layout.row_h
        draw.text((_PAD, top + cell_h // 2 - line_h // 2), _fit(draw, class_names[c], font, layout.name_w - 2 * _PAD),
                  fill=_INK, font=font)
        for k, i in enumerate(indices):
            left = layout.name_w + k * (column_w + _PAD)
            pixels = images[i].numpy().transpose(1, 2, 0)
            tile = Image.fromarray(np.ascontiguousarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels))
            resample = Image.NEAREST if cell_w >= width else Image.BOX
            sheet.paste(tile.convert("RGB").resize((cell_w, cell_h), resample), (left, top))
            for j, line in enumerate((captions[i].splitlines() if captions else [])):
                draw.text((left, top + cell_h + j * line_h), _fit(draw, line, font, column_w), fill=_INK, font=font)
    return sheet


class _Layout(NamedTuple):
    """Where render_grid draws: its rows ((class, image positions)), font and sizes in pixels."""

    rows: list[tuple[int, list[int]]]
    font: ImageFont.ImageFont
    line_h: int
    cell: tuple[int, int]      # (width, height) of an image's tile
    name_w: int
    column_w: int
    row_h: int
    size: tuple[int, int]      # the sheet's (width, height)


def _layout(image_shape, labels: list[int], class_names: list[str], per_class: int, captions: list[str] | None,
            caption_lines: int) -> _Layout:
    """render_grid's layout; without ``captions``, room for ``caption_lines`` lines of the widest caption a
    column shows."""
    height, width = image_shape[-2:]
    cell_w, cell_h = _cell(height, width)
    rows = _rows(labels, len(class_names), per_class)
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = int(font.getbbox("Ag")[3]) + 2
    if captions:
        caption_lines = max((len(c.splitlines()) for c in captions), default=0)
        lines = [line for caption in captions for line in caption.splitlines()]
        column_w = max(cell_w, min(_MAX_CAPTION_WIDTH, max((int(probe.textlength(line, font=font)) + 1
                                                            for line in lines), default=0)))
    else:
        caption_lines = 0 if captions is not None else caption_lines
        column_w = max(cell_w, _MAX_CAPTION_WIDTH) if caption_lines else cell_w
    name_w = min(_MAX_NAME_WIDTH, max((int(probe.textlength(class_names[c], font=font)) + 1 for c, _ in rows),
                                      default=0)) + 2 * _PAD
    row_h = cell_h + caption_lines * line_h + _PAD
    columns = max((len(idx) for _, idx in rows), default=0)
    size = (name_w + columns * (column_w + _PAD) + _PAD, max(1, len(rows)) * row_h + _PAD)
    return _Layout(rows, font, line_h, (cell_w, cell_h), name_w, column_w, row_h, size)


def topk_captions(logits: torch.Tensor, class_names: list[str], k: int) -> list[str]:
    """One caption per row of ``logits``: its ``k`` most probable classes, one "87% name" per line."""
    probabilities = logits.detach().float().softmax(dim=1).cpu()
    values, indices = probabilities.topk(min(k, probabilities.shape[1]), dim=1)
    return ["\n".join(f"{p:.0%} {class_names[c]}" for p, c in zip(row_values, row_indices))
            for row_values, row_indices in zip(values.tolist(), indices.tolist())]


# the float32 copies of stored images given to the projector at once (at least one image): it resizes them
# to the base's size, but a file's images may be 8,192 px a side, 805 MB each as float32 RGB
LABEL_CHUNK_BYTES = 256 * 2**20


def projector_captions(bundle, images: torch.Tensor, k: int, *, checkpoint: str | None = None,
                       batch_size: int = 64, allow_remote_base: bool = False) -> list[str]:
    """Top-``k`` captions from the bundle's own projector on stored uint8 images [N, C, H, W] (on the CPU),
    ``batch_size`` at a time and at most ``LABEL_CHUNK_BYTES`` of them as float32.

    Raises BaseModelError when the base cannot be created (e.g. not downloadable offline).
    """
    from hello_format.projector import Projector  # open_clip: loaded only when labels are asked for

    projector = Projector.from_bundle(bundle, checkpoint=checkpoint, allow_remote_base=allow_remote_base)
    rows = max(1, min(batch_size, LABEL_CHUNK_BYTES // (math.prod(images.shape[1:]) * 4)))
    logits = [projector.label(chunk.float().div_(255).expand(-1, 3, -1, -1))  # grey images as RGB
              for chunk in images.split(rows)]
    return topk_captions(torch.cat(logits), bundle.class_names, k)

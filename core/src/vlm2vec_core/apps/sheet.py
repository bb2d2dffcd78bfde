"""Contact sheets: the query over a grid of hits, labelled with file, page or time, and score.

A page's tile shows the top of the page, its margins trimmed, at a scale where body text reads at a glance; the
page is rendered again from its PDF for that (its display thumbnail is too small), the thumbnail standing in when
the PDF is gone. A clip's tile is a 2x2 storyboard of frames from its video; an image's the whole image.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ..index.store import Hit
from ..media.documents import full_image

log = logging.getLogger(__name__)

TILE = 480  # a letter page's text column is about 470 px wide here: 10 pt text has a 5 px x-height
LABEL = 40
HEADER = 40  # the query's band above the grid (only with a query)
FRAMES = 4
MAX_UPSCALE = 2.0
_INK = 235  # a pixel darker than this (0-255 grey) is content, not page background


def contact_sheet(
    hits: Sequence[Hit],
    out: str | Path,
    *,
    columns: int = 4,
    tile: int = TILE,
    query: str | None = None,
    password: str | None = None,
) -> Path:
    """Write a PNG grid with one tile a hit, under a band showing ``query`` when given, and return its path.

    ``password``: for hits from an encrypted PDF (its pages are rendered again)."""
    if not hits:
        raise ValueError("no hits to draw")
    columns = max(1, min(columns, len(hits)))
    rows = math.ceil(len(hits) / columns)
    top = HEADER if query is not None else 0
    sheet = Image.new("RGB", (columns * tile, top + rows * (tile + LABEL)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    if query is not None:
        heading = ImageFont.load_default(size=20)
        draw.rectangle([0, 0, sheet.width - 1, HEADER - 1], fill=(242, 242, 242))
        text = _fit_text(draw, f"query: {query}", heading, sheet.width - 16)
        draw.text((8, HEADER // 2), text, fill="black", font=heading, anchor="lm")
    for n, hit in enumerate(hits):
        x, y = (n % columns) * tile, top + (n // columns) * (tile + LABEL)
        picture = _tile(hit, tile, password)
        sheet.paste(picture, (x + (tile - picture.width) // 2, y + (tile - picture.height) // 2))
        draw.rectangle([x, y, x + tile - 1, y + tile + LABEL - 1], outline=(200, 200, 200))
        label = _fit_text(draw, f"{n + 1}. {hit.label}", font, tile - 12)
        draw.text((x + 6, y + tile + 4), label, fill="black", font=font)
        draw.text((x + 6, y + tile + 21), f"score {hit.score:.3f}", fill=(90, 90, 90), font=font)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """``text``, cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _tile(hit: Hit, size: int, password: str | None) -> Image.Image:
    inner = size - 8
    frames = hit.clip_frames(FRAMES)
    if frames is not None:
        return _strip(frames, size)
    if hit.kind == "page":
        picture = _page_picture(hit, inner, password)
        if picture is not None:
            return _top_of_page(picture, inner)
    else:
        picture = _image_of(hit, password)
    if picture is None:  # the page's PDF and its thumbnail, or the image file, are gone: a blank tile says so
        blank = Image.new("RGB", (inner, inner), (235, 235, 235))
        ImageDraw.Draw(blank).text((inner // 2, inner // 2), "image missing", fill=(120, 120, 120), anchor="mm")
        return blank
    picture = picture.copy()
    picture.thumbnail((inner, inner))  # an image, or a clip's thumbnail when its video is gone
    return picture


def _image_of(hit: Hit, password: str | None) -> Image.Image | None:
    try:
        return full_image(hit.metadata, password=password)
    except (ValueError, OSError) as exc:  # InputError is a ValueError: the file is gone or broken
        log.info("no full image for %s (%s): showing its thumbnail", hit.label, exc)
        picture: Image.Image | None = hit.image()
        return picture


def _page_picture(hit: Hit, width: int, password: str | None) -> Image.Image | None:
    """The page as the tile needs it: its thumbnail when that is large enough once trimmed, else rendered again
    from the PDF (the thumbnail again when the PDF is gone)."""
    thumb: Image.Image | None = hit.image()
    if thumb is not None and thumb.size != (0, 0):
        left, _top, right, _bottom = _content_box(thumb)
        if right - left >= width:
            return thumb
    try:
        return full_image(hit.metadata, password=password)
    except (ValueError, OSError) as exc:
        log.info("cannot render %s again (%s): showing its thumbnail", hit.label, exc)
        return thumb


def _content_box(image: Image.Image) -> tuple[int, int, int, int]:
    """The box around what is printed on a page (its white margins trimmed, a little air kept)."""
    grey = image.convert("L")
    ink = grey.point(lambda v: 255 if v < _INK else 0).getbbox()
    if ink is None:  # a blank page
        return (0, 0, image.width, image.height)
    left, top, right, bottom = ink
    pad = max(2, round(0.015 * image.width))
    return (max(0, left - pad), max(0, top - pad), min(image.width, right + pad), min(image.height, bottom + pad))


def _top_of_page(page: Image.Image, size: int) -> Image.Image:
    """The page's content at the tile's width, cropped to the top when it is taller than the tile (a page read
    from the top: its title and first lines); a short or wide page fits whole."""
    box = _content_box(page)
    content = page.crop(box)
    scale = min(size / content.width, MAX_UPSCALE)
    if content.height * scale > size:  # taller than the tile: keep the top
        content = content.crop((0, 0, content.width, max(1, round(size / scale))))
    else:
        scale = min(scale, size / content.height)
    target = (max(1, round(content.width * scale)), max(1, min(size, round(content.height * scale))))
    return content.resize(target, Image.Resampling.LANCZOS)


def _strip(frames: Sequence[Image.Image], size: int) -> Image.Image:
    """Frames in a 2x2 grid (a clip read as a storyboard)."""
    cell = (size - 8) // 2
    strip = Image.new("RGB", (cell * 2, cell * 2), "black")
    for i, frame in enumerate(frames[:4]):
        thumb = frame.copy()
        thumb.thumbnail((cell, cell))
        strip.paste(thumb, ((i % 2) * cell + (cell - thumb.width) // 2, (i // 2) * cell + (cell - thumb.height) // 2))
    return strip

"""Contact sheets: thumbnails of hit pages and clip frames, labelled with file, page or time, and score."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .store import Hit

TILE = 240
LABEL = 40
FRAMES = 4


def contact_sheet(hits: Sequence[Hit], out: str | Path, *, columns: int = 4, tile: int = TILE) -> Path:
    """Write a PNG grid with one tile a hit (a clip's tile is a strip of frames) and return its path."""
    if not hits:
        raise ValueError("no hits to draw")
    columns = max(1, min(columns, len(hits)))
    rows = math.ceil(len(hits) / columns)
    sheet = Image.new("RGB", (columns * tile, rows * (tile + LABEL)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    for n, hit in enumerate(hits):
        x, y = (n % columns) * tile, (n // columns) * (tile + LABEL)
        picture = _tile(hit, tile)
        sheet.paste(picture, (x + (tile - picture.width) // 2, y + (tile - picture.height) // 2))
        draw.rectangle([x, y, x + tile - 1, y + tile + LABEL - 1], outline=(200, 200, 200))
        draw.text((x + 6, y + tile + 4), f"{n + 1}. {hit.label}", fill="black", font=font)
        draw.text((x + 6, y + tile + 21), f"score {hit.score:.3f}", fill=(90, 90, 90), font=font)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def _tile(hit: Hit, size: int) -> Image.Image:
    frames = hit.clip_frames(FRAMES)
    if frames is not None:
        return _strip(frames, size)
    image = hit.image()  # a page, an image, or the thumbnail of a clip whose video is gone
    if image is None:  # the cached page image or the image file is gone: a blank tile says so
        image = Image.new("RGB", (size - 8, size - 8), (235, 235, 235))
        ImageDraw.Draw(image).text((size // 2, size // 2), "image missing", fill=(120, 120, 120), anchor="mm")
        return image
    image = image.copy()
    image.thumbnail((size - 8, size - 8))
    return image


def _strip(frames: Sequence[Image.Image], size: int) -> Image.Image:
    """Frames in a 2x2 grid (a clip read as a storyboard)."""
    cell = (size - 8) // 2
    strip = Image.new("RGB", (cell * 2, cell * 2), "black")
    for i, frame in enumerate(frames[:4]):
        thumb = frame.copy()
        thumb.thumbnail((cell, cell))
        strip.paste(thumb, ((i % 2) * cell + (cell - thumb.width) // 2, (i // 2) * cell + (cell - thumb.height) // 2))
    return strip

"""Image and frame preparation: decoding, colour conversion, and Qwen2-VL's pixel limits.

Pure helpers (no torch): the local encoder and the remote client both use them, so the pixels the model
sees are the same wherever the model runs.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from ..errors import InputError

PATCH_FACTOR = 28  # 14 px patches merged 2x2: one visual token per 28x28 pixels
MIN_PIXELS = 3136  # 4 tokens
MAX_PIXELS = 1_003_520  # 1,280 tokens
TINY_SIDE = 28  # upstream enlarges images with a side under this...
TINY_SIZE = (56, 56)  # ...to 56x56 before anything else
MAX_ASPECT_RATIO = 200
MAX_DECODE_PIXELS = 100_000_000  # refuse to decode larger images (decompression bombs)
RESAMPLE = Image.Resampling.BICUBIC


def smart_resize(
    height: int,
    width: int,
    *,
    factor: int = PATCH_FACTOR,
    min_pixels: int = MIN_PIXELS,
    max_pixels: int = MAX_PIXELS,
    extremes: str = "squash",
) -> tuple[int, int]:
    """Qwen2-VL's resize rule: sides multiples of ``factor``, area within [min_pixels, max_pixels], aspect kept.

    ``extremes`` says what happens to a side under ``factor`` or an aspect ratio over 200:1: ``"squash"`` (what
    VLM2Vec's own smart resize does: a square of side max(height, width, factor), then the caps) or ``"raise"``
    (what qwen-vl-utils does, for the Qwen-trained families: a ValueError, with only the aspect ratio checked).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image has a zero side ({width}x{height})")
    ratio = max(height, width) / min(height, width)
    if extremes == "squash":
        if height < factor or width < factor or ratio > MAX_ASPECT_RATIO:
            height = width = max(factor, height, width)
    elif extremes == "raise":
        if ratio > MAX_ASPECT_RATIO:
            raise ValueError(f"aspect ratio {ratio:.0f}:1 is over {MAX_ASPECT_RATIO}:1 ({width}x{height})")
    else:
        raise ValueError(f"extremes must be 'squash' or 'raise', not {extremes!r}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_to(image: Image.Image, size_hw: tuple[int, int]) -> Image.Image:
    """PIL bicubic to (height, width); the image itself when it already has that size."""
    height, width = size_hw
    return image if image.size == (width, height) else image.resize((width, height), RESAMPLE)


def visual_tokens(height: int, width: int, frames: int = 1, *, factor: int = PATCH_FACTOR) -> int:
    """Tokens the language model sees for an image (frames=1) or a video already resized to height x width."""
    temporal = max(1, math.ceil(frames / 2))
    return temporal * (height // factor) * (width // factor)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: alpha composited on white, 16-bit scaled, CMYK and palettes mapped."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if (mode.startswith("I;16") or arr.max(initial=0) > 255) else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(src: Any, *, name: str | None = None, max_decode_pixels: int = MAX_DECODE_PIXELS) -> Image.Image:
    """Open a PIL image, a path or bytes as an upright RGB image, or raise InputError naming it and why."""
    label = name or _describe(src)
    if isinstance(src, Image.Image):
        image = src
    elif isinstance(src, (str, Path)):
        path = Path(src)
        if not path.is_file():
            raise InputError("no such image file", source=path)
        image = _open(path, label)
    elif isinstance(src, (bytes, bytearray, memoryview)):
        if not len(src):
            raise InputError("empty image data", source=label)
        image = _open(io.BytesIO(bytes(src)), label)
    else:
        raise TypeError(f"an image must be a PIL image, a path or bytes, not {type(src).__name__}")
    width, height = image.size
    if width == 0 or height == 0:
        raise InputError(f"image has a zero side ({width}x{height})", source=label)
    if width * height > max_decode_pixels:
        raise InputError(
            f"image is {width}x{height} = {width * height:,} pixels, over the limit of {max_decode_pixels:,} "
            "(a decompression bomb or a scan far too large)",
            source=label,
        )
    try:
        image.load()
        if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:  # exif_transpose copies even an upright image
            image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"cannot decode image: {exc}", source=label) from exc


def _open(fp: Any, label: str | None) -> Image.Image:
    try:
        return Image.open(fp)  # reads the header only
    except Image.DecompressionBombError as exc:
        raise InputError(f"image is too large to decode safely (a decompression bomb?): {exc}", source=label) from exc
    except UnidentifiedImageError as exc:
        raise InputError("not an image, or an image format Pillow cannot read", source=label) from exc
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's ValueError for truncated IHDR/tRNS chunks
        raise InputError(f"cannot open image: {exc}", source=label) from exc


def _describe(src: Any) -> str | None:
    if isinstance(src, (str, Path)):
        return str(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes of image data>"
    return getattr(src, "filename", "") or None


def fit_image(image: Image.Image, *, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Resize an RGB image as upstream does: tiny ones to 56x56 first, then smart resize, bicubic."""
    if min(image.size) < TINY_SIDE:
        image = image.resize(TINY_SIZE, RESAMPLE)
    width, height = image.size
    new_h, new_w = smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
    if (new_w, new_h) == (width, height):
        return image
    return image.resize((new_w, new_h), RESAMPLE)


def as_frame(frame: Any, *, name: str, position: int) -> Image.Image:
    """One video frame (PIL image or HxWx3 uint8 array) as an RGB PIL image."""
    if isinstance(frame, Image.Image):
        return to_rgb(frame)
    if isinstance(frame, np.ndarray):
        if frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
            raise InputError(f"frame {position} has shape {frame.shape}, expected HxWx3", source=name)
        if frame.dtype != np.uint8:
            raise InputError(f"frame {position} has dtype {frame.dtype}, expected uint8", source=name)
        return Image.fromarray(np.ascontiguousarray(frame), mode="RGB")
    raise TypeError(f"a video frame must be a PIL image or an HxWx3 uint8 array, not {type(frame).__name__}")


def fit_frames(
    frames: Sequence[Image.Image], *, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS
) -> list[Image.Image]:
    """Resize every frame to the size smart resize gives for frame 0 (one video input needs one frame size).

    Frames get no 56x56 enlargement (upstream does that for images only): a frame with a side under 28 px or an
    aspect ratio over 200:1 is squashed to a square by smart resize itself, so a 20x100 frame becomes 112x112.
    """
    if not frames:
        raise ValueError("a video needs at least one frame")
    width, height = frames[0].size
    size = smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
    return [resize_to(f, size) for f in frames]


def to_data_url(image: Any, *, max_side: int | None = None, format: str = "JPEG", quality: int = 90) -> str:
    """An image (PIL, path or bytes) as a ``data:`` URL, e.g. for a multimodal chat model's content blocks.

    ``max_side`` shrinks larger images (aspect kept) to keep prompts small; JPEG for photos and pages, PNG
    when the pixels must survive exactly.
    """
    import base64

    img = load_image(image)
    if max_side is not None and max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), RESAMPLE)
    buf = io.BytesIO()
    fmt = format.upper()
    try:
        if fmt == "JPEG":
            img.save(buf, format="JPEG", quality=quality)
        else:
            img.save(buf, format=fmt)
    except (OSError, ValueError) as exc:  # e.g. JPEG stops at 65,535 px a side: pass max_side
        raise InputError(f"cannot encode the image as {fmt} ({exc})", source=_describe(image)) from exc
    mime = "image/jpeg" if fmt == "JPEG" else f"image/{fmt.lower()}"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def from_data_url(url: str, *, name: str = "data URL") -> bytes:
    """The bytes of a base64 ``data:`` URL (InputError when it is not one)."""
    import base64
    import binascii

    head, sep, payload = url.partition(",")
    if not (url.startswith("data:") and sep and head.endswith(";base64")):
        raise InputError("not a base64 data: URL", source=name)
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error as exc:
        raise InputError(f"bad base64 in data: URL ({exc})", source=name) from exc

"""Pure media helpers: pixel limits, resizing rules, colour conversion, decoding errors (no weights)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlm2vec_core import InputError
from vlm2vec_core.media.images import (
    MAX_PIXELS,
    MIN_PIXELS,
    fit_frames,
    fit_image,
    load_image,
    smart_resize,
    to_rgb,
    visual_tokens,
)


@pytest.mark.parametrize(
    ("h", "w", "expected"),
    [
        (224, 224, (224, 224)),
        (100, 100, (112, 112)),  # rounded to multiples of 28
        (10, 10, (56, 56)),  # under min_pixels: enlarged to >= 3136 px
        (3000, 4000, (840, 1148)),  # over max_pixels: scaled down, aspect kept
        (792 * 2, 612 * 2, (1120, 868)),  # a letter page at 144 dpi
    ],
)
def test_smart_resize(h: int, w: int, expected: tuple[int, int]):
    out = smart_resize(h, w)
    assert out == expected
    assert out[0] % 28 == 0 and out[1] % 28 == 0
    assert MIN_PIXELS <= out[0] * out[1] <= MAX_PIXELS


def test_smart_resize_custom_limits_and_bad_shapes():
    h, w = smart_resize(1000, 1000, max_pixels=28 * 28 * 16)
    assert h * w <= 28 * 28 * 16
    with pytest.raises(ValueError, match="zero side"):
        smart_resize(0, 10)
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(30, 7000, extremes="raise")  # qwen-vl-utils' rule, for the Qwen-trained families


@pytest.mark.parametrize(
    ("h", "w", "expected"),
    [
        (20, 100, (112, 112)),  # a side under 28: a square of side max(h, w), then rounded
        (10, 5000, (980, 980)),  # over 200:1: squashed to 5000x5000, then capped at 1,280 tokens
        (30, 7000, (980, 980)),
        (27, 27, (56, 56)),  # squashed to 28x28 (side at least the factor), then enlarged to the minimum
    ],
)
def test_extreme_shapes_are_squashed_as_upstream_does(h: int, w: int, expected: tuple[int, int]):
    # VLM2Vec's own smart_resize: `height = width = max(factor, height, width)`, then the caps, never an error.
    assert smart_resize(h, w) == expected


def test_frames_with_a_tiny_side_are_squashed_not_enlarged_to_56():
    frames = [Image.new("RGB", (20, 100), "red")] * 3  # 20 px wide, 100 px high
    assert [f.size for f in fit_frames(frames)] == [(112, 112)] * 3


def test_tiny_images_are_enlarged_to_56_first():
    img = Image.new("RGB", (20, 300), "red")  # a side under 28 px
    assert fit_image(img).size == (56, 56)


def test_fit_image_caps_pixels_and_keeps_fitting_images_untouched():
    big = Image.new("RGB", (2000, 1500), "blue")
    fitted = fit_image(big)
    assert fitted.width * fitted.height <= MAX_PIXELS
    assert visual_tokens(fitted.height, fitted.width) <= 1280
    ok = Image.new("RGB", (280, 140))
    assert fit_image(ok) is ok


def test_frames_all_take_frame_zeros_size():
    frames = [Image.new("RGB", (640, 360)), Image.new("RGB", (300, 300)), Image.new("RGB", (1000, 200))]
    fitted = fit_frames(frames)
    size = fit_image(frames[0]).size
    assert [f.size for f in fitted] == [size] * 3
    assert visual_tokens(size[1], size[0], 8) == 4 * (size[0] // 28) * (size[1] // 28)


def test_video_tokens_capped_at_5120():
    frames = [Image.new("RGB", (3000, 3000))] * 8
    fitted = fit_frames(frames)
    assert visual_tokens(fitted[0].height, fitted[0].width, 8) <= 5120


@pytest.mark.parametrize("mode", ["CMYK", "P", "RGBA", "LA", "L", "1", "I;16", "I", "F", "YCbCr"])
def test_modes_are_converted_not_rejected(mode: str):
    img = Image.new("RGB", (40, 30), (200, 30, 90)).convert(mode)
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == (40, 30)


def test_alpha_is_composited_on_white_and_16_bit_scaled():
    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert to_rgb(clear).getpixel((0, 0)) == (255, 255, 255)
    grey16 = Image.fromarray(np.full((4, 4), 128 * 257, dtype=np.uint16))
    assert to_rgb(grey16).getpixel((0, 0)) == (128, 128, 128)
    palette = Image.new("P", (4, 4), 3)
    palette.info["transparency"] = 3
    assert to_rgb(palette).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (60, 30), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    assert load_image(buf.getvalue()).size == (30, 60)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size (a decompression bomb's signature)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat = zlib.compress(b"\0" * 16)
    idat_chunk = b"IDAT" + idat
    data += struct.pack(">I", len(idat)) + idat_chunk + struct.pack(">I", zlib.crc32(idat_chunk))
    return b"\x89PNG\r\n\x1a\n" + data


@pytest.mark.parametrize("size", [(12_000, 10_000), (30_000, 30_000)])
def test_decompression_bombs_are_refused_before_decoding(size: tuple[int, int], tmp_path: Path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(*size))
    with pytest.raises(InputError, match=r"bomb\.png.*(over the limit|too large)"):
        load_image(path)


def test_bad_images_name_the_file_and_reason(tmp_path: Path):
    missing = tmp_path / "missing.png"
    with pytest.raises(InputError, match="missing.png: no such image file"):
        load_image(missing)
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    with pytest.raises(InputError, match="notes.png: not an image"):
        load_image(text)
    good = io.BytesIO()
    Image.new("RGB", (64, 64), "green").save(good, format="PNG")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.getvalue()[:60])
    with pytest.raises(InputError, match="cut.png: cannot decode"):
        load_image(truncated)
    with pytest.raises(InputError, match="zero side"):
        load_image(Image.new("RGB", (0, 10)))
    with pytest.raises(InputError, match="empty image data"):
        load_image(b"")
    with pytest.raises(InputError, match="over the limit"):
        load_image(Image.new("RGB", (200, 200)), max_decode_pixels=1000)


def test_data_urls_round_trip():
    from vlm2vec_core.media.images import from_data_url, to_data_url

    img = Image.new("RGB", (400, 200), (10, 200, 30))
    url = to_data_url(img, max_side=100, format="PNG")
    assert url.startswith("data:image/png;base64,")
    back = load_image(from_data_url(url))
    assert back.size == (100, 50) and back.getpixel((5, 5)) == (10, 200, 30)
    assert to_data_url(img).startswith("data:image/jpeg;base64,")
    with pytest.raises(InputError, match="not a base64 data: URL"):
        from_data_url("http://example.invalid/x.png")
    with pytest.raises(InputError, match="bad base64"):
        from_data_url("data:image/png;base64,@@@")


def _png_with_chunk(mode: str, kind: bytes, payload: bytes) -> bytes:
    """An 8x8 PNG by Pillow with one more chunk (``kind``, ``payload``, its CRC right) before the image data."""
    buf = io.BytesIO()
    Image.new(mode, (8, 8)).save(buf, format="PNG")
    data = buf.getvalue()
    at = data.index(b"IDAT") - 4
    chunk = struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    return data[:at] + chunk + data[at:]


@pytest.mark.parametrize(("mode", "trns"), [("L", b"\x01"), ("RGB", b"\x00\x01\x00"), ("RGB", b"")])
def test_a_truncated_transparency_chunk_is_an_input_error_naming_the_image(
    mode: str, trns: bytes, tmp_path: Path
) -> None:
    forged = _png_with_chunk(mode, b"tRNS", trns)
    with pytest.raises(ValueError, match="Truncated tRNS"):  # what Pillow itself raises
        Image.open(io.BytesIO(forged))
    path = tmp_path / "forged.png"
    path.write_bytes(forged)
    with pytest.raises(InputError, match=r"forged\.png: cannot open image: Truncated tRNS chunk"):
        load_image(path)
    with pytest.raises(InputError, match=r"<\d+ bytes of image data>: cannot open image"):
        load_image(forged)


def test_a_data_url_of_an_image_jpeg_cannot_hold_is_an_input_error() -> None:
    from vlm2vec_core.media.images import to_data_url

    wide = Image.new("RGB", (65_536, 2))
    with pytest.raises(InputError, match="cannot encode the image as JPEG"):
        to_data_url(wide)
    assert to_data_url(wide, max_side=1024).startswith("data:image/jpeg;base64,")

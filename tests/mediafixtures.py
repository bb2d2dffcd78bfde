"""Small, deterministic media files for tests and benchmarks: PDFs, images and videos, made locally."""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, overload

from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    import av

_PALETTE: tuple[tuple[int, int, int], ...] = (
    (220, 40, 40),
    (40, 160, 60),
    (40, 80, 220),
    (230, 180, 20),
    (150, 50, 180),
    (20, 170, 180),
    (240, 120, 30),
    (90, 90, 90),
)


def _colour(i: int) -> tuple[int, int, int]:
    return _PALETTE[i % len(_PALETTE)]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _page_image(number: int, size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A page with a big coloured shape (different per page), a few random boxes and its number."""
    width, height = size
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    shape = number % 3
    box = (width // 8, height // 8, width * 7 // 8, height * 5 // 8)
    colour = _colour(number)
    if shape == 0:
        draw.ellipse(box, fill=colour)
    elif shape == 1:
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(box[0], box[3]), ((box[0] + box[2]) // 2, box[1]), (box[2], box[3])], fill=colour)
    side = max(min(width, height) // 10, 2)
    for _ in range(4):
        x = rng.randrange(max(width - side, 1))
        y = rng.randrange(height * 5 // 8, max(height - side, height * 5 // 8 + 1))
        draw.rectangle((x, y, x + side, y + side), fill=_colour(rng.randrange(len(_PALETTE))))
    draw.text((width // 2, height * 3 // 4), str(number), fill=(0, 0, 0), font=_font(height // 6), anchor="mm")
    return image


def make_pdf(path: str | Path, n_pages: int = 3, size: tuple[int, int] = (612, 792), seed: int = 0) -> Path:
    """Write an image-only PDF of ``n_pages`` distinct pages (``size`` in points) and return its path."""
    out = Path(path)
    out.write_bytes(pdf_bytes(n_pages, size, seed))
    return out


def pdf_bytes(n_pages: int = 3, size: tuple[int, int] = (612, 792), seed: int = 0) -> bytes:
    """The bytes of the PDF that :func:`make_pdf` writes."""
    if n_pages < 1:
        raise ValueError("n_pages must be at least 1 (Pillow cannot write an empty PDF)")
    rng = random.Random(seed)
    pages = [_page_image(i + 1, size, rng) for i in range(n_pages)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="PDF", save_all=True, append_images=pages[1:], resolution=72.0)
    return buffer.getvalue()


def write_raw_pdf(path: str | Path, objects: Sequence[bytes] | dict[int, bytes]) -> Path:
    """A PDF written byte by byte from its objects' bodies (numbered from 1, in order; the catalog first), with
    an exact cross-reference table: for page trees and streams Pillow cannot write."""
    numbered = dict(enumerate(objects, 1)) if not isinstance(objects, dict) else objects
    out, offsets = bytearray(b"%PDF-1.4\n"), {}
    for number in sorted(numbered):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + numbered[number] + b"\nendobj\n"
    xref, size = len(out), max(numbered) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % offsets[n] for n in range(1, size))
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    target = Path(path)
    target.write_bytes(bytes(out))
    return target


def make_encrypted_pdf(path: str | Path, password: str, n_pages: int = 2) -> Path:
    """Write a PDF encrypted with ``password`` (needs the ``pypdf`` test dependency)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(n_pages))))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
    out = Path(path)
    with out.open("wb") as handle:
        writer.write(handle)
    return out


@overload
def make_image(
    path_or_none: None = None, size: tuple[int, int] = ..., seed: int = ..., mode: str = ...
) -> Image.Image: ...


@overload
def make_image(path_or_none: str | Path, size: tuple[int, int] = ..., seed: int = ..., mode: str = ...) -> Path: ...


def make_image(
    path_or_none: str | Path | None = None,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    mode: str = "RGB",
) -> Image.Image | Path:
    """A deterministic picture: saved to ``path_or_none`` (format from the suffix) and its path returned,
    or returned as an image when no path is given."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, _colour(seed))
    draw = ImageDraw.Draw(image)
    width, height = size
    for _ in range(6):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(8, max(9, width // 2)), y0 + rng.randrange(8, max(9, height // 2))
        draw.rectangle((x0, y0, x1, y1), fill=_colour(rng.randrange(len(_PALETTE))))
    if mode != "RGB":
        image = image.convert(mode)
    if path_or_none is None:
        return image
    out = Path(path_or_none)
    image.save(out)
    return out


def video_frame(second: int, frame_in_second: int, fps: int, size: tuple[int, int]) -> Image.Image:
    """The frame drawn at ``second``: colour and shape change each second, a bar moves within it."""
    width, height = size
    image = Image.new("RGB", size, _colour(second))
    draw = ImageDraw.Draw(image)
    box = (width // 4, height // 4, width * 3 // 4, height * 3 // 4)
    fill = _colour(second + 3)
    if second % 2 == 0:
        draw.ellipse(box, fill=fill)
    else:
        draw.rectangle(box, fill=fill)
    x = (frame_in_second * width) // max(fps, 1)
    draw.rectangle((x, height - height // 8, x + max(width // 16, 2), height - 1), fill=(255, 255, 255))
    return image


def make_video(
    path: str | Path,
    seconds: float = 3.0,
    fps: int = 10,
    size: tuple[int, int] = (160, 120),
    seed: int = 0,
    codec: str = "libx264",
    faststart: bool = False,
) -> Path:
    """Write a video (yuv420p; container from the suffix) where each second looks different; return its path.

    ``seed`` shifts the colour sequence; sizes should be even. ``faststart`` puts an mp4's index (moov) first,
    so that a truncated copy keeps its metadata and loses frame data instead.
    """
    out = Path(path)
    n_frames = round(seconds * fps)
    with _open_output(out, faststart) as container:
        stream = _video_stream(container, codec, fps, size)
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "g": str(fps)}
        for i in range(n_frames):
            second, within = divmod(i, fps)
            frame = _to_av_frame(video_frame(second + seed, within, fps, size))
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out


def write_frames(path: str | Path, frames: Sequence[Image.Image], fps: int = 10) -> Path:
    """Write the given frames as an mp4 (libx264, yuv420p)."""
    out = Path(path)
    width, height = frames[0].size
    with _open_output(out) as container:
        stream = _video_stream(container, "libx264", fps, (width, height))
        for i, image in enumerate(frames):
            frame = _to_av_frame(image)
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out


def truncate(path: str | Path, fraction: float) -> Path:
    """Cut a file to ``fraction`` of its size in place (for broken-file tests)."""
    target = Path(path)
    data = target.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def _open_output(path: Path, faststart: bool = False) -> av.container.OutputContainer:
    import av

    return av.open(str(path), mode="w", options={"movflags": "faststart"} if faststart else None)


def _video_stream(
    container: av.container.OutputContainer, codec: str, fps: int, size: tuple[int, int]
) -> av.VideoStream:
    import av

    stream = container.add_stream(codec, rate=fps)
    if not isinstance(stream, av.VideoStream):
        raise TypeError(f"{codec} is not a video codec")
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.time_base = Fraction(1, fps)
    return stream


def make_frameless_video(path: str | Path) -> Path:
    """An mp4 that declares an H.264 stream but holds no frames."""
    import av

    out = Path(path)
    container = av.open(str(out), mode="w")
    _video_stream(container, "libx264", 10, (160, 120))
    container.start_encoding()
    container.close()
    return out


def make_audio(path: str | Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    """An audio-only mp4 (AAC silence)."""
    import av
    import numpy as np

    out = Path(path)
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        assert isinstance(stream, av.AudioStream)
        for i in range(max(1, int(seconds * rate) // 1024)):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out


def zero_tail(path: str | Path, fraction: float = 0.5) -> Path:
    """Overwrite the bytes after ``fraction`` of a file with zeros (size kept): corrupt frame data."""
    target = Path(path)
    data = bytearray(target.read_bytes())
    start = int(len(data) * fraction)
    data[start:] = bytes(len(data) - start)
    target.write_bytes(bytes(data))
    return target


def _to_av_frame(image: Image.Image) -> av.VideoFrame:
    import av

    return av.VideoFrame.from_image(image)


def make_coded_video(
    path: str | Path,
    n_frames: int = 40,
    fps: int = 10,
    size: tuple[int, int] = (160, 120),
    codec: str = "libx264",
    options: dict[str, str] | None = None,
    pix_fmt: str = "yuv420p",
    textured: bool = False,
    first_pts: int = 0,
) -> Path:
    """A video with the encoder ``options`` given (a GOP layout: ``{"g": "250"}``, B-frames: ``{"preset":
    "medium", "bf": "3"}``, an open GOP: ``{"x264-params": "open-gop=1"}``); container from the suffix.
    ``textured`` puts seeded noise in the top-left quarter so that every frame costs bits to code. A negative
    ``first_pts`` makes the first frames come before time 0: an mp4 then gets an edit list that hides them."""
    import av
    import numpy as np

    out = Path(path)
    rng = np.random.default_rng(n_frames)
    width, height = size
    with _open_output(out) as container:
        stream = container.add_stream(codec, rate=fps)
        if not isinstance(stream, av.VideoStream):
            raise TypeError(f"{codec} is not a video codec")
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = Fraction(1, fps)
        if options:
            stream.options = dict(options)
        for i in range(n_frames):
            second, within = divmod(i, fps)
            pixels = np.array(video_frame(second, within, fps, size))
            if textured:
                pixels[: height // 2, : width // 2] = rng.integers(0, 256, (height // 2, width // 2, 3))
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = first_pts + i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out


def make_vfr_video(path: str | Path, times_ms: Sequence[int], size: tuple[int, int] = (160, 120)) -> Path:
    """An H.264 video (mp4 or mkv, by the suffix) whose frames start at ``times_ms`` (variable frame rate)."""

    out = Path(path)
    with _open_output(out) as container:
        stream = _video_stream(container, "libx264", 30, size)
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.time_base = Fraction(1, 1000)
        stream.options = {"preset": "ultrafast", "g": "12"}
        for t in times_ms:
            frame = _to_av_frame(video_frame(t // 1000, (t % 1000) // 100, 10, size))
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out


def make_tagged_video(path: str | Path, title: bytes, seconds: float = 1.0, fps: int = 10) -> Path:
    """An mp4 whose ``title`` metadata holds the raw bytes ``title`` (e.g. Latin-1, not UTF-8)."""
    import av

    out = Path(path)
    placeholder = b"T" * len(title)
    with av.open(str(out), mode="w") as container:
        container.metadata["title"] = placeholder.decode()
        stream = _video_stream(container, "libx264", fps, (160, 120))
        stream.options = {"preset": "ultrafast", "g": str(fps)}
        for i in range(round(seconds * fps)):
            frame = _to_av_frame(video_frame(i // fps, i % fps, fps, (160, 120)))
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    data = out.read_bytes()
    if data.count(placeholder) != 1:
        raise ValueError("the title placeholder is not unique in the file")
    out.write_bytes(data.replace(placeholder, title))
    return out


def patch_u32(path: str | Path, offset: int, value: int, big_endian: bool) -> Path:
    """Overwrite the 32-bit unsigned integer at ``offset`` of a file (a forged header field)."""
    target = Path(path)
    data = bytearray(target.read_bytes())
    data[offset : offset + 4] = value.to_bytes(4, "big" if big_endian else "little")
    target.write_bytes(bytes(data))
    return target


def mp4_box_offset(path: str | Path, box: bytes) -> int:
    """Offset of the first ``box`` (e.g. ``b"stts"``) in an mp4: where its 4-byte type starts."""
    at = Path(path).read_bytes().find(box)
    if at < 4:
        raise ValueError(f"no {box!r} box")
    return at


def forge_mp4_sample_count(path: str | Path, count: int) -> Path:
    """Make the mp4's first ``stts`` entry claim ``count`` samples (the header then declares that many)."""
    at = mp4_box_offset(path, b"stts")
    return patch_u32(path, at + 12, count, big_endian=True)  # type, version+flags, entry count, then samples


def forge_mp4_sample_delta(path: str | Path, delta: int) -> Path:
    """Make every sample of the mp4's first ``stts`` entry last ``delta`` ticks (absurd timing)."""
    at = mp4_box_offset(path, b"stts")
    return patch_u32(path, at + 16, delta, big_endian=True)


def avi_strh_offset(path: str | Path) -> int:
    """Offset of the data of the first ``strh`` chunk (the video stream's header) in an AVI."""
    at = Path(path).read_bytes().find(b"strh")
    if at < 0:
        raise ValueError("no strh chunk")
    return at + 8  # fourcc, size


def forge_avi_frame_count(path: str | Path, count: int) -> Path:
    """Make the AVI's video stream header (``strh`` dwLength) and main header (``avih`` dwTotalFrames) claim
    ``count`` frames."""
    data = Path(path).read_bytes()
    patch_u32(path, data.find(b"avih") + 8 + 16, count, big_endian=False)
    return patch_u32(path, avi_strh_offset(path) + 32, count, big_endian=False)


def forge_avi_rate(path: str | Path, scale: int, rate: int) -> Path:
    """Set the AVI video stream's frame rate to ``rate / scale`` (``strh`` dwScale and dwRate)."""
    strh = avi_strh_offset(path)
    patch_u32(path, strh + 20, scale, big_endian=False)
    return patch_u32(path, strh + 24, rate, big_endian=False)


def slow_pdf(path: Path, draws: int = 200_000, side: int = 64) -> Path:
    """A valid one-page PDF that draws one image ``draws`` times: 20 KB that take pdfium a minute or more."""
    import zlib

    pixels = zlib.compress(bytes(range(256)) * (side * side * 3 // 256))
    content = zlib.compress(b"q 612 0 0 792 0 0 cm /Im0 Do Q\n" * draws, 9)
    image = b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB /BitsPerComponent 8"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /Im0 5 0 R >> >> "
        b"/Contents 4 0 R >>",
        b"<< /Filter /FlateDecode /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        image % (side, side) + b" /Filter /FlateDecode /Length %d >>\nstream\n" % len(pixels) + pixels + b"\nendstream",
    ]
    return write_raw_pdf(path, objects)

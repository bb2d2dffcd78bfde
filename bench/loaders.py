"""Loader benchmarks: PDF page rendering beside pdftoppm, clip sampling beside decoding every frame.

Run ``python bench/loaders.py`` (with ``vlm2vec_core`` importable) to generate a 30-page PDF and 60 s 640x360
videos with short and long GOPs in a temp dir and print the timings; ``video_clips_vs_pyav_decode_all`` sums up
the clip-sampling ratios (10 s clips, 8 frames each, beside decoding and converting every frame with PyAV).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlm2vec_core.media.pdf import pdf_pages
from vlm2vec_core.media.video import video_clips

_COLOURS = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (230, 180, 20), (150, 50, 180), (20, 170, 180)]


def make_bench_pdf(path: Path, n_pages: int = 30, size: tuple[int, int] = (612, 792)) -> Path:
    """A letter-size PDF of ``n_pages`` pages with shapes and lines of text (raster, via Pillow)."""
    font = ImageFont.load_default(size=14)
    pages = []
    for number in range(1, n_pages + 1):
        page = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(page)
        draw.rectangle((60, 60, 552, 260), fill=_COLOURS[number % len(_COLOURS)])
        for line in range(28):
            draw.text(
                (60, 290 + 16 * line),
                f"Page {number}, line {line}: lorem ipsum dolor sit amet",
                fill="black",
                font=font,
            )
        pages.append(page)
    pages[0].save(path, format="PDF", save_all=True, append_images=pages[1:], resolution=72.0)
    return path


def make_bench_video(
    path: Path,
    seconds: float = 60.0,
    fps: int = 30,
    size: tuple[int, int] = (640, 360),
    gop: int | None = None,
    preset: str = "ultrafast",
) -> Path:
    """An H.264 mp4 whose colour changes every second, with a moving bar; a keyframe every ``gop`` frames
    (default 2 s). ``preset="medium"`` adds B-frames, as most real encodes have."""
    import av

    width, height = size
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        keyint = str(gop or 2 * fps)
        stream.options = {"preset": preset, "g": keyint, "keyint_min": keyint, "sc_threshold": "0"}
        for i in range(round(seconds * fps)):
            frame = np.empty((height, width, 3), dtype=np.uint8)
            frame[:] = _COLOURS[(i // fps) % len(_COLOURS)]
            x = (i * 7) % (width - 40)
            frame[height - 60 : height - 20, x : x + 40] = 255
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = i
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    return path


def bench_pdf(pdf_path: str | Path, dpi: int = 144) -> dict[str, Any]:
    """pdf_pages throughput beside ``pdftoppm -r dpi`` (PPM output) on the same file."""
    pdf_path = Path(pdf_path)
    start = time.perf_counter()
    n_pages = sum(1 for _ in pdf_pages(pdf_path, dpi=dpi))
    ours = time.perf_counter() - start
    result: dict[str, Any] = {
        "pages": n_pages,
        "dpi": dpi,
        "pdf_pages_s": round(ours, 3),
        "pdf_pages_pages_per_s": round(n_pages / ours, 1),
    }
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        result["pdftoppm"] = "skipped: pdftoppm not found (apt-get install poppler-utils)"
        return result
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([pdftoppm, "-r", str(dpi), str(pdf_path), f"{out}/page"], check=True)
        theirs = time.perf_counter() - start
    result.update(
        pdftoppm_s=round(theirs, 3),
        pdftoppm_pages_per_s=round(n_pages / theirs, 1),
        speedup_vs_pdftoppm=round(theirs / ours, 2),
    )
    return result


def bench_video(video_path: str | Path, clip_seconds: float = 10.0, repeat: int = 5) -> dict[str, Any]:
    """video_clips (8 frames per clip, only those decoded) beside decoding every frame with PyAV and converting
    it to RGB (the issue's baseline), and beside decoding every frame without converting any; they run in turn
    ``repeat`` times and the fastest run of each counts (the machine is shared)."""
    import av

    video_path = Path(video_path)
    ours, every, bare = [], [], []
    for _ in range(repeat):
        start = time.perf_counter()
        clips = list(video_clips(video_path, clip_seconds=clip_seconds))
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        with av.open(str(video_path)) as container:
            frames = sum(1 for frame in container.decode(video=0) if frame.to_ndarray(format="rgb24").size)
        every.append(time.perf_counter() - start)
        start = time.perf_counter()
        with av.open(str(video_path)) as container:
            sum(1 for _ in container.decode(video=0))
        bare.append(time.perf_counter() - start)
    return {
        "clips": len(clips),
        "frames_sampled": sum(len(c.frames) for c in clips),
        "frames_in_video": frames,
        "video_clips_s": round(min(ours), 3),
        "pyav_decode_all_s": round(min(every), 3),
        "speedup_vs_decode_all": round(min(every) / min(ours), 2),
        # the floor without seeking: decode every frame, convert none (long GOPs leave little to skip)
        "pyav_decode_only_s": round(min(bare), 3),
        "speedup_vs_decode_only": round(min(bare) / min(ours), 2),
    }


# name -> make_bench_video options: short GOPs (a keyframe every 2 s, as the default above), long GOPs (x264's
# default keyint of 250 frames, 8.3 s), and long GOPs with B-frames.
VIDEO_CASES: dict[str, dict[str, Any]] = {
    "short_gop_60": {"gop": 60},
    "long_gop_250": {"gop": 250},
    "long_gop_250_bframes": {"gop": 250, "preset": "medium"},
}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pdf = make_bench_pdf(Path(tmp) / "bench.pdf")
        videos = {name: make_bench_video(Path(tmp) / f"{name}.mp4", **opts) for name, opts in VIDEO_CASES.items()}
        result: dict[str, Any] = {"pdf": bench_pdf(pdf)}
        result.update({f"video_{name}": bench_video(path) for name, path in videos.items()})
        result["video_clips_vs_pyav_decode_all"] = {
            name: result[f"video_{name}"]["speedup_vs_decode_all"] for name in videos
        }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

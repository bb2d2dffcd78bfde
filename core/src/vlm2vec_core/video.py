"""Video loading: uniform frame sampling, whole videos and fixed-length clips (decord, probed with PyAV).

decord is old native code that can hang or fail opaquely on broken files, so every file is first probed with
PyAV (a container with a decodable video stream and at least one frame) before decord touches it; only
the frames that are needed are decoded, one clip at a time.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, report
from .types import VideoClip

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "Sampler",
    "read_video_frames",
    "sampled_frame_indices",
    "two_stage_frame_indices",
    "uniform_frame_indices",
    "video_clips",
]

logger = logging.getLogger(__name__)

# FFmpeg demuxers that read a single still image; a PNG renamed .mp4 opens as one of these.
_IMAGE_FORMATS = ("image2", "_pipe")
# decord prefixes native errors with "[hh:mm:ss] /path/file.cc:123: "; keep the message only.
_NATIVE_PREFIX = re.compile(r"(\[[0-9:]+\] )?\S+\.(cc|h|cpp):\d+: ")
_TIME_DECIMALS = 6  # container timestamps come as float32: round them to the microsecond


def uniform_frame_indices(total: int, num_frames: int = 8) -> list[int]:
    """``num_frames`` indices spread uniformly over ``range(total)``; all of them when there are fewer."""
    if total <= 0:
        return []
    if total < num_frames:
        return list(range(total))
    return [int(i) for i in np.linspace(0, total - 1, num_frames).astype(int)]


FIRST_STAGE_FRAMES = 64  # upstream evaluations first extract 64 frames of each video or clip
MAX_CLIPS_PER_FRAME = 1000  # a slideshow video may hold a frame for minutes; more clips than this is a bad header


def sampled_frame_indices(total: int, count: int = FIRST_STAGE_FRAMES) -> list[int]:
    """``floor(i * total / count)`` for i in 0..count-1 (how upstream extracts frames); all when fewer."""
    if total <= 0:
        return []
    if total <= count:
        return list(range(total))
    return [i * total // count for i in range(count)]


def two_stage_frame_indices(total: int, num_frames: int = 8, first: int = FIRST_STAGE_FRAMES) -> list[int]:
    """VLM2Vec's evaluation sampling: ``first`` frames at ``floor(i * total / first)``, then ``num_frames`` of those
    at ``linspace(0, first - 1, num_frames)``. A 270-frame video gives 0, 37, 75, 113, 151, 189, 227, 265."""
    stage_one = sampled_frame_indices(total, first)
    return [stage_one[i] for i in uniform_frame_indices(len(stage_one), num_frames)]


# How many of ``total`` frames to use, as indices into them (a family's video sampler).
Sampler = Callable[[int], list[int]]


def _default_sampler(num_frames: int) -> Sampler:
    return lambda total: two_stage_frame_indices(total, num_frames)


@dataclass(frozen=True)
class _Timeline:
    """Start time (seconds) of every frame, and the video's duration."""

    starts: np.ndarray  # float64, non-decreasing, one per frame
    duration: float
    frame_interval: float


def video_clips(
    path: str | PathLike[str],
    *,
    clip_seconds: float = 10.0,
    stride_seconds: float | None = None,
    num_frames: int = 8,
    errors: list[InputError] | None = None,
    sampler: Sampler | None = None,
) -> Generator[VideoClip, None, None]:
    """Yield the video at ``path`` as clips of ``clip_seconds``, one every ``stride_seconds`` (default:
    ``clip_seconds``, so no overlap).

    Clip ``k`` covers ``[k * stride, min(k * stride + clip_seconds, duration))``; the last, shorter clip is
    kept. Each clip holds ``num_frames`` RGB frames picked among the frames that start inside it as VLM2Vec's
    evaluation picks them (``two_stage_frame_indices``), or all of them when there are fewer; ``sampler`` (frame
    count -> indices) replaces that rule, e.g. with a model family's own. Only those frames are decoded, one clip
    at a time.
    Bad input raises :class:`InputError`; when ``errors`` is a list, failures are appended to it instead and
    iteration carries on with the next clip (or yields nothing for a bad file).
    """
    stride = clip_seconds if stride_seconds is None else stride_seconds
    if not clip_seconds > 0:
        raise ValueError(f"clip_seconds must be positive, got {clip_seconds!r}")
    if not stride > 0:
        raise ValueError(f"stride_seconds must be positive, got {stride_seconds!r}")
    _check_num_frames(num_frames)
    pick = sampler or _default_sampler(num_frames)
    return _iter_clips(Path(path), float(clip_seconds), float(stride), pick, errors)


def read_video_frames(
    path: str | PathLike[str], num_frames: int = 8, *, sampler: Sampler | None = None
) -> list[Image.Image]:
    """``num_frames`` RGB frames of the whole video, picked as VLM2Vec's evaluation picks them
    (``two_stage_frame_indices``; all frames when fewer), or by ``sampler`` (frame count -> indices)."""
    _check_num_frames(num_frames)
    pick = sampler or _default_sampler(num_frames)
    frames, _, _ = read_frames_at(path, lambda count, _fps: pick(count))
    return frames


def read_frames_at(
    path: str | PathLike[str], pick: Callable[[int, float], list[int]]
) -> tuple[list[Image.Image], list[int], float]:
    """The frames ``pick(frame_count, average_fps)`` chooses, their indices and the video's average frame rate."""
    source = Path(path)
    reader, count = _open(source)
    fps = float(reader.get_avg_fps())
    indices = [min(max(int(i), 0), count - 1) for i in pick(count, fps)]
    return _decode(reader, source, indices, location=None), indices, fps


def _check_num_frames(num_frames: int) -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be an int >= 1, got {num_frames!r}")


def _iter_clips(
    source: Path, clip_seconds: float, stride: float, pick: Sampler, errors: list[InputError] | None
) -> Generator[VideoClip, None, None]:
    try:
        reader, count = _open(source)
        timeline = _timeline(reader, source, count)
        clips = math.ceil(timeline.duration / stride)
        if clips > MAX_CLIPS_PER_FRAME * count:  # a damaged header's timing would make the clip loop endless
            raise InputError(
                f"implausible timing: {count} frames over {timeline.duration:.3g} s would make {clips:.3g} clips "
                "(a damaged header?)",
                source=source,
            )
    except InputError as err:
        report(err, errors)
        return
    for index, (start, end) in enumerate(_clip_spans(timeline.duration, clip_seconds, stride)):
        indices = _clip_frame_indices(timeline, start, end, pick)
        location = f"{start:.2f}-{end:.2f} s"
        try:
            frames = _decode(reader, source, indices, location=location)
        except InputError as err:
            report(err, errors)
            continue
        yield VideoClip(
            source=source,
            index=index,
            start=start,
            end=end,
            frames=tuple(frames),
            frame_indices=tuple(indices),
        )


def _clip_spans(duration: float, clip_seconds: float, stride: float) -> Iterator[tuple[float, float]]:
    """``(start, end)`` of every clip; starts are computed as ``k * stride`` to avoid drift."""
    k = 0
    while (start := k * stride) < duration:
        yield start, min(start + clip_seconds, duration)
        k += 1


def _clip_frame_indices(timeline: _Timeline, start: float, end: float, pick: Sampler) -> list[int]:
    """Absolute indices of the frames sampled for ``[start, end)``.

    A frame belongs to the clip its start time falls in, with a tolerance of a quarter frame for the
    rounding in container timestamps. A clip shorter than one frame gets the frame on screen at its start.
    """
    tol = timeline.frame_interval / 4
    first = int(np.searchsorted(timeline.starts, start - tol, side="left"))
    stop = int(np.searchsorted(timeline.starts, end - tol, side="left"))
    if stop <= first:
        on_screen = max(int(np.searchsorted(timeline.starts, start + tol, side="right")) - 1, 0)
        return [on_screen]
    return [first + i for i in pick(stop - first)]


def _open(source: Path) -> tuple[Any, int]:
    """Probe the file safely, then open it with decord; return the reader and its usable frame count."""
    import decord

    packets = _probe(source)
    try:
        reader = decord.VideoReader(str(source), ctx=decord.cpu(0))
    except (decord.DECORDError, RuntimeError) as exc:
        reason = f"cannot read the video: truncated or corrupt ({_short(exc)})"
        raise InputError(reason, source=source) from exc
    count = len(reader)
    if count <= 0:
        raise InputError("the video has no frames", source=source)
    if packets < count:
        # The container claims more frames than it holds (a truncated file): decord can hang seeking
        # to frames that do not exist, so never ask for them.
        logger.warning("%s: header says %d frames but only %d are present; using %d", source, count, packets, packets)
        count = packets
    return reader, count


def _probe(source: Path) -> int:
    """Check with PyAV that the file holds a video stream with frames; return its packet count."""
    import av

    _check_file(source)
    try:
        with av.open(str(source)) as container:
            format_name = container.format.name
            streams = container.streams.video
            if not streams:
                kinds = sorted({stream.type for stream in container.streams})
                what = f"only {', '.join(kinds)}" if kinds else "no streams: not a video or truncated"
                raise InputError(f"no video stream ({what})", source=source)
            if any(marker in format_name for marker in _IMAGE_FORMATS):
                raise InputError(f"an image ({format_name}), not a video", source=source)
            packets = sum(1 for packet in container.demux(streams[0]) if packet.size)
    except av.FFmpegError as exc:
        reason = f"not a readable video: not a video, or a truncated or corrupt one ({exc.strerror or exc})"
        raise InputError(reason, source=source) from exc
    except UnicodeDecodeError as exc:  # PyAV on container metadata that is not UTF-8
        raise InputError(f"not a readable video: its metadata is not text ({exc.reason})", source=source) from exc
    if packets == 0:
        raise InputError("the video stream has no frames", source=source)
    return packets


def _check_file(source: Path) -> None:
    try:
        size = source.stat().st_size
    except FileNotFoundError as exc:
        raise InputError("file not found", source=source) from exc
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror or exc})", source=source) from exc
    if not source.is_file():
        raise InputError("not a regular file", source=source)
    if size == 0:
        raise InputError("empty file (0 bytes), not a video", source=source)


def _timeline(reader: Any, source: Path, count: int) -> _Timeline:
    """Frame start times from the container, or from the frame rate when the timestamps are unusable."""
    import decord

    try:
        raw = reader.get_frame_timestamp(list(range(count)))
        stamps = np.round(np.asarray(raw, dtype=np.float64), _TIME_DECIMALS)
    except (decord.DECORDError, RuntimeError, IndexError) as exc:
        logger.debug("%s: no frame timestamps (%s), using the frame rate", source, exc)
        stamps = np.empty((0, 2), dtype=np.float64)
    if _usable(stamps, count):
        starts = stamps[:, 0]
        intervals = np.diff(stamps[:, 0]) if count > 1 else stamps[:, 1] - stamps[:, 0]
        interval = float(np.median(intervals))
        duration = max(float(stamps[-1, 1]), float(starts[-1]) + interval)
        return _Timeline(starts=starts, duration=duration, frame_interval=interval)
    fps = float(reader.get_avg_fps())
    if not (math.isfinite(fps) and fps > 0):
        raise InputError("the video has neither frame timestamps nor a frame rate", source=source)
    return _Timeline(starts=np.arange(count) / fps, duration=count / fps, frame_interval=1 / fps)


def _usable(stamps: np.ndarray, count: int) -> bool:
    if stamps.shape != (count, 2) or not np.all(np.isfinite(stamps)):
        return False
    starts = stamps[:, 0]
    return bool(starts[0] >= 0 and np.all(np.diff(starts) > 0) and stamps[-1, 1] > starts[-1])


def _decode(reader: Any, source: Path, indices: list[int], location: str | None) -> list[Image.Image]:
    """Decode exactly ``indices`` (one batch) into RGB PIL images."""
    import decord
    from PIL import Image

    try:
        batch = reader.get_batch(indices).asnumpy()
    except (decord.DECORDError, RuntimeError) as exc:
        raise InputError(f"frames failed to decode ({_short(exc)})", source=source, location=location) from exc
    return [Image.fromarray(np.ascontiguousarray(frame)) for frame in batch]


def _short(exc: BaseException) -> str:
    """The last line of a native error, without decord's source-file prefixes."""
    lines = str(exc).strip().splitlines()
    text = _NATIVE_PREFIX.sub("", lines[-1]) if lines else type(exc).__name__
    return text[:300]


def read_clip_frames(
    path: str | PathLike[str], start: float, end: float, num_frames: int = 8, *, sampler: Sampler | None = None
) -> tuple[list[Image.Image], list[int]]:
    """The frames of ``[start, end)`` sampled as :func:`video_clips` samples a clip, and their indices."""
    _check_num_frames(num_frames)
    if not (0 <= start < end):
        raise ValueError(f"need 0 <= start < end, got {start!r} and {end!r}")
    source = Path(path)
    reader, count = _open(source)
    timeline = _timeline(reader, source, count)
    if start >= timeline.duration:
        raise InputError(
            f"the clip starts after the end of the video ({timeline.duration:.2f} s)",
            source=source,
            location=f"{start:.2f}-{end:.2f} s",
        )
    pick = sampler or _default_sampler(num_frames)
    indices = _clip_frame_indices(timeline, start, min(end, timeline.duration), pick)
    return _decode(reader, source, indices, location=f"{start:.2f}-{end:.2f} s"), indices

"""Video loading: uniform frame sampling, whole videos and fixed-length clips, all decoded with PyAV.

How frames are found and decoded (PyAV only; decord is no longer used):

* Every file is first demuxed once without decoding (the probe): the real packets of its video stream give the
  frame count, each frame's presentation time and the keyframes. Nothing the header declares (an AVI ``strh``
  frame count, an MP4 ``stts`` total, a duration) is trusted: a declared count larger than what the file holds
  is reported once (a truncated file, or a forged header) and only the frames present are used. decord sized its
  frame table from the declared count, so a header claiming 2^31 frames aborted the process (``std::bad_alloc``);
  PyAV never allocates from it.
* Frame ``i`` is the ``i``-th frame in presentation order, as decord numbered them, so the frames each sampler
  picks are the ones it picked before. Frame times come from the container's per-frame timestamps in MP4/MOV and
  Matroska/WebM; elsewhere (AVI, MPEG program/transport streams) from the packets only when no frame is reordered
  (FFmpeg derives those times from the decoding order), else from the frame rate, as decord's timestamps gave them.
* Decoding reads only what the wanted frames need: in MP4/MOV and Matroska/WebM (which index their keyframes) it
  seeks to the keyframe at or before a wanted frame and decodes forward to it, frames being matched by their
  timestamps; when the next wanted frame lies in the same group of pictures it just decodes on. Frames that no
  other frame references and no clip wants (most B-frames) are dropped by the decoder (``skip_frame=NONREF``),
  which leaves every other frame unchanged. Only the wanted frames are converted to RGB, with one converter per
  file (the conversion costs more than decoding). Other containers are decoded forward from the start, frames
  matched by their order. Each frame wanted by several overlapping clips is decoded once. A seek that lands far
  before or after its keyframe (a container without a usable index) stops seeking for that file.
* Frames an MP4 edit list hides (decoded as references, never shown) are not frames, as in a plain decode.
* The RGB pixels are FFmpeg's ``rgb24`` conversion of the decoded frame, the same that decord returned: equal
  byte for byte for 8-bit video (tests/core/test_video_hardening.py compares both on a matrix of GOP layouts,
  B-frames, open GOPs, variable frame rates, MP4/MKV/WebM/AVI, MJPEG, 4:2:0/4:2:2/4:4:4, full-range BT.709).
  For 10-bit video the two FFmpeg builds round the colour conversion differently (about a third of the bytes
  differ, both equally close to the source); decord cannot be matched there and is not kept for it. decord's
  random access in AVI and MPEG-PS files returned wrong frames (other than a plain decode gives); these are right.

Why PyAV entirely: it is already needed to probe files, it decodes and seeks per packet under our control (so
every loop is bounded by the packets really present), and its errors are Python exceptions rather than aborts.
Native decoding in-process can still crash on a hostile file: callers that index untrusted folders run loaders
in worker processes with a per-file time limit. ``bench/loaders.py`` prints the ratios to decoding every frame.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, report
from ..types import VideoClip

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "Sampler",
    "read_clip_frames",
    "read_frames_at",
    "read_video_frames",
    "sampled_frame_indices",
    "two_stage_frame_indices",
    "uniform_frame_indices",
    "video_clips",
]

logger = logging.getLogger(__name__)

# FFmpeg demuxers that read a single still image; a PNG renamed .mp4 opens as one of these.
_IMAGE_FORMATS = ("image2", "_pipe")
# Containers that store a timestamp per frame and index their keyframes: seek in them, match frames by time.
_INDEXED_FORMATS = ("mov", "mp4", "matroska", "webm")
_TIME_DECIMALS = 6  # container timestamps: round them to the microsecond
_LEADING_FRAMES = 16  # open-GOP frames shown before their keyframe come out after it: at most this many


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
    clips: tuple[int, int | None] | None = None,
) -> Generator[VideoClip, None, None]:
    """Yield the video at ``path`` as clips of ``clip_seconds``, one every ``stride_seconds`` (default:
    ``clip_seconds``, so no overlap).

    Clip ``k`` covers ``[k * stride, min(k * stride + clip_seconds, duration))``; the last, shorter clip is
    kept. Each clip holds ``num_frames`` RGB frames picked among the frames that start inside it as VLM2Vec's
    evaluation picks them (``two_stage_frame_indices``), or all of them when there are fewer; ``sampler`` (frame
    count -> indices) replaces that rule, e.g. with a model family's own. Only those frames are decoded (seeking
    to the keyframe before each), one clip at a time.

    Bad input raises :class:`InputError`; when ``errors`` is a list, failures are appended to it instead and
    iteration carries on with the next clip (or yields nothing for a bad file). A run of consecutive clips that
    fail to decode is one error (its location spans them); a file that holds fewer frames than its header declares
    (truncated) yields the clips it holds, then one error naming the time it stops at.

    ``clips=(first, stop)``: only clips ``first`` to ``stop - 1`` (0-based; ``stop`` None: to the end), the same
    clips (times, frames, indices) a run over the whole video gives them, so that workers can share a long video.
    """
    stride = clip_seconds if stride_seconds is None else stride_seconds
    if not clip_seconds > 0:
        raise ValueError(f"clip_seconds must be positive, got {clip_seconds!r}")
    if not stride > 0:
        raise ValueError(f"stride_seconds must be positive, got {stride_seconds!r}")
    _check_num_frames(num_frames)
    pick = sampler or _default_sampler(num_frames)
    first, stop = clips if clips is not None else (0, None)
    if first < 0 or (stop is not None and stop < first):
        raise ValueError(f"clips must be (first, stop) with 0 <= first <= stop, got {clips!r}")
    return _iter_clips(Path(path), float(clip_seconds), float(stride), pick, errors, (first, stop))


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
    """The frames ``pick(frame_count, average_fps)`` chooses, their indices and the video's average frame rate.

    A truncated file (fewer frames than its header declares) raises InputError: a sample of the whole video
    cannot be taken from part of it.
    """
    source = Path(path)
    reader, count = _open(source)
    with reader:
        if reader.truncation is not None:
            raise reader.truncation
        fps = reader.fps
        indices = [min(max(int(i), 0), count - 1) for i in pick(count, fps)]
        return _decode(reader, source, indices, location=None), indices, fps


def read_clip_frames(
    path: str | PathLike[str], start: float, end: float, num_frames: int = 8, *, sampler: Sampler | None = None
) -> tuple[list[Image.Image], list[int]]:
    """The frames of ``[start, end)`` sampled as :func:`video_clips` samples a clip, and their indices."""
    _check_num_frames(num_frames)
    if not (0 <= start < end):
        raise ValueError(f"need 0 <= start < end, got {start!r} and {end!r}")
    source = Path(path)
    location = f"{start:.2f}-{end:.2f} s"
    reader, count = _open(source)
    with reader:
        timeline = _timeline(reader, source, count)
        if start >= timeline.duration:
            if reader.truncation is not None:
                raise reader.truncation
            raise InputError(
                f"the clip starts after the end of the video ({timeline.duration:.2f} s)",
                source=source,
                location=location,
            )
        if end > timeline.duration + timeline.frame_interval / 2 and reader.truncation is not None:
            raise reader.truncation
        pick = sampler or _default_sampler(num_frames)
        indices = _clip_frame_indices(timeline, start, min(end, timeline.duration), pick)
        return _decode(reader, source, indices, location=location), indices


def _check_num_frames(num_frames: int) -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be an int >= 1, got {num_frames!r}")


def _iter_clips(
    source: Path,
    clip_seconds: float,
    stride: float,
    pick: Sampler,
    errors: list[InputError] | None,
    chosen: tuple[int, int | None] = (0, None),
) -> Generator[VideoClip, None, None]:
    try:
        reader, count = _open(source)
    except InputError as err:
        report(err, errors)
        return
    with reader:
        try:
            timeline = _timeline(reader, source, count)
            clips = math.ceil(timeline.duration / stride)
            if clips > MAX_CLIPS_PER_FRAME * count:  # a damaged header's timing would make the clip loop endless
                raise InputError(
                    f"implausible timing: {count} frames over {timeline.duration:.3g} s would make {clips:.3g} "
                    "clips (a damaged header?)",
                    source=source,
                )
        except InputError as err:
            report(err, errors)
            return
        spans = list(_clip_spans(timeline.duration, clip_seconds, stride))
        first, stop = chosen
        numbered = list(enumerate(spans))[first:stop]
        wanted = [_clip_frame_indices(timeline, start, end, pick) for _, (start, end) in numbered]
        reader.plan(i for indices in wanted for i in indices)
        failed = _FailedRun(source)
        for (index, (start, end)), indices in zip(numbered, wanted, strict=True):
            try:
                frames = _decode(reader, source, indices, location=f"{start:.2f}-{end:.2f} s")
            except InputError as err:
                if errors is None:
                    raise
                failed.add(err, start, end)
                continue
            failed.flush(errors)
            yield VideoClip(
                source=source,
                index=index,
                start=start,
                end=end,
                frames=tuple(frames),
                frame_indices=tuple(indices),
            )
        failed.flush(errors)
        if reader.truncation is not None:
            report(reader.truncation, errors)


class _FailedRun:
    """Consecutive clips that failed to decode, reported as one error (a corrupt tail is one problem)."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.first: InputError | None = None
        self.start = self.end = 0.0
        self.clips = 0

    def add(self, err: InputError, start: float, end: float) -> None:
        if self.first is None:
            self.first, self.start = err, start
        self.end, self.clips = end, self.clips + 1

    def flush(self, errors: list[InputError] | None) -> None:
        if self.first is None:
            return
        err = self.first
        if self.clips > 1:
            err = InputError(
                f"{err.reason} (in {self.clips} consecutive clips)",
                source=self.source,
                location=f"{self.start:.2f}-{self.end:.2f} s",
            )
            err.__cause__ = self.first.__cause__
        report(err, errors)
        self.first, self.clips = None, 0


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


# --- probing ---------------------------------------------------------------------------------------------


@dataclass
class _Probe:
    """What demuxing the video stream (no decoding) found: one entry per real frame, in presentation order."""

    stream_index: int
    format_name: str
    time_base: Any  # fractions.Fraction, or None
    pts: list[int] | None  # per frame, sorted; None when the container stores no usable per-frame times
    ends: list[int] | None  # pts + packet duration, per frame
    keyframes: list[int]  # presentation indices of the keyframes, ascending
    seek_points: dict[int, int]  # keyframe index -> its pts, to seek to
    count: int
    declared: int  # the header's frame count (0: none)
    fps: float
    indexed: bool  # frames are matched by their timestamps (else by their order from the start)


def _open(source: Path) -> tuple[_Reader, int]:
    """Probe the file (bounded by the packets it really holds) and return a reader and its frame count."""
    probe = _probe(source)
    return _Reader(source, probe), probe.count


def _av_open(source: Path) -> Any:
    import av

    # metadata_errors: PyAV decodes container metadata as UTF-8 and raises UnicodeDecodeError on other bytes
    return av.open(str(source), metadata_errors="ignore")


def _probe(source: Path) -> _Probe:
    """Check with PyAV that the file holds a video stream with frames, and index its frames from the packets."""
    import av

    _check_file(source)
    try:
        with _av_open(source) as container:
            format_name = container.format.name
            stream = _video_stream(container, source)
            if any(marker in format_name for marker in _IMAGE_FORMATS):
                raise InputError(f"an image ({format_name}), not a video", source=source)
            if stream.codec_context is None:  # FFmpeg has no decoder for the codec its header names
                raise InputError("no decoder for its video codec (unknown or damaged codec id)", source=source)
            rows = []  # (pts, dts, duration, keyframe, corrupt) per packet, in file order
            hidden = 0
            for packet in container.demux(stream):
                if packet.size:
                    row = (packet.pts, packet.dts, packet.duration or 0, packet.is_keyframe, packet.is_corrupt)
                    if packet.is_discard:  # decoded but never shown (cut by an MP4 edit list): not a frame
                        hidden += 1
                    else:
                        rows.append(row)
            declared = max(int(stream.frames or 0) - hidden, 0)
            fps = _rate(stream)
            time_base = stream.time_base
            index = stream.index
    except av.FFmpegError as exc:
        reason = f"not a readable video: not a video, or a truncated or corrupt one ({exc.strerror or exc})"
        raise InputError(reason, source=source) from exc
    except UnicodeDecodeError as exc:  # metadata_errors="ignore" covers the metadata; anything left is the same
        raise InputError(f"not a readable video: text in it is not UTF-8 ({exc.reason})", source=source) from exc
    while rows and rows[-1][4]:  # a truncated file's last packet is cut short: its frame would be garbage
        rows.pop()
    if not rows:
        raise InputError("the video stream has no frames", source=source)
    count = len(rows)
    pts: list[int] | None = None
    ends: list[int] | None = None
    keyframes: list[int] = []
    seek_points: dict[int, int] = {}
    stamps = [row[0] for row in rows]
    has_times = time_base is not None and None not in stamps and len(set(stamps)) == count
    indexed = any(name in format_name.split(",") for name in _INDEXED_FORMATS)
    if has_times and (indexed or all(row[0] == row[1] for row in rows)):
        # Per-frame times: stored by MP4/MOV and Matroska; elsewhere (AVI, MPEG-PS) FFmpeg derives pts from the
        # decoding order, which is only right when frames are not reordered (pts == dts), as decord took them.
        order = sorted(range(count), key=lambda k: stamps[k])
        pts = [stamps[k] for k in order]
        ends = [stamps[k] + rows[k][2] for k in order]
        if indexed:  # seek and match frames by time only where the container indexes them
            rank = {k: i for i, k in enumerate(order)}
            for k, row in enumerate(rows):
                if row[3]:
                    keyframes.append(rank[k])
                    seek_points[rank[k]] = row[0]
            keyframes.sort()
    return _Probe(index, format_name, time_base, pts, ends, keyframes, seek_points, count, declared, fps, indexed)


def _video_stream(container: Any, source: Path) -> Any:
    streams = [s for s in container.streams.video if not s.disposition & _attached_pic()]
    if not streams:
        kinds = sorted({stream.type for stream in container.streams})
        if container.streams.video:
            kinds = ["a cover picture"]
        what = f"only {', '.join(kinds)}" if kinds else "no streams: not a video or truncated"
        raise InputError(f"no video stream ({what})", source=source)
    return streams[0]


def _attached_pic() -> int:
    import av

    return int(av.stream.Disposition.attached_pic)


def _rate(stream: Any) -> float:
    """The stream's average frame rate (what decord's get_avg_fps gave), else FFmpeg's guess; nan if none."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return math.nan


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


def _timeline(reader: _Reader, source: Path, count: int) -> _Timeline:
    """Frame start times from the container, or from the frame rate when the timestamps are unusable."""
    stamps = reader.stamps()
    if stamps is not None and _usable(stamps, count):
        starts = stamps[:, 0]
        intervals = np.diff(stamps[:, 0]) if count > 1 else stamps[:, 1] - stamps[:, 0]
        interval = float(np.median(intervals))
        duration = max(float(stamps[-1, 1]), float(starts[-1]) + interval)
        return _Timeline(starts=starts, duration=duration, frame_interval=interval)
    fps = reader.fps
    if not (math.isfinite(fps) and fps > 0):
        raise InputError("the video has neither frame timestamps nor a frame rate", source=source)
    return _Timeline(starts=np.arange(count) / fps, duration=count / fps, frame_interval=1 / fps)


def _usable(stamps: np.ndarray, count: int) -> bool:
    if stamps.shape != (count, 2) or not np.all(np.isfinite(stamps)):
        return False
    starts = stamps[:, 0]
    return bool(starts[0] >= 0 and np.all(np.diff(starts) > 0) and stamps[-1, 1] > starts[-1])


# --- decoding --------------------------------------------------------------------------------------------


class _Missing(Exception):
    """A wanted frame did not come out of the decoder (``seconds``: where it is shown, when known)."""

    def __init__(self, reason: str, seconds: float | None = None) -> None:
        super().__init__(reason)
        self.seconds = seconds


class _Reader:
    """Decodes the frames asked for, in any order, reading as little of the file as it can.

    Frames are numbered in presentation order (``_Probe``). ``plan`` announces the frames later calls will ask
    for: a frame passed on the way to another that is in the plan is kept (as RGB) until it has been used, so
    overlapping clips decode it once and forward seeks never skip it.
    """

    def __init__(self, source: Path, probe: _Probe) -> None:
        self.source = source
        self.probe = probe
        self.count = probe.count
        self.fps = probe.fps
        self.by_time = probe.indexed and probe.pts is not None
        self._index = {p: i for i, p in enumerate(probe.pts)} if self.by_time and probe.pts else {}
        self._users: dict[int, int] = {}
        self._planned: list[int] = []
        self._kept: dict[int, np.ndarray] = {}
        self._container: Any = None
        self._frames: Iterator[tuple[int, Any]] | None = None
        self._last = -1  # index of the last frame out of the decoder since the last seek (-1: none)
        self._floor = 0  # frames before this one are not trusted since the last seek (open-GOP leading frames)
        self._fresh = False  # no frame at or after the floor came out since the last seek
        self._landing = False  # no frame at all came out since the last seek
        self._seekable = self.by_time and bool(probe.keyframes)
        self._problem = ""  # the last decoder error, for the message when a frame is missing
        self._converter: Any = None
        self.truncation: InputError | None = None
        if probe.declared > probe.count:
            stop = float(self.stamps_end())
            self.truncation = InputError(
                f"truncated or a damaged header: it declares {probe.declared} frames but holds {probe.count}, "
                f"which end at {stop:.2f} s",
                source=source,
                location=f"{stop:.2f} s",
            )

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._frames = None
        if self._container is not None:
            self._container.close()
            self._container = None

    def stamps(self) -> np.ndarray | None:
        """``(start, end)`` seconds per frame from the container's timestamps, or None when it has none."""
        probe = self.probe
        if probe.pts is None or probe.ends is None:
            return None
        base = float(probe.time_base)
        stamps = np.column_stack([np.asarray(probe.pts, dtype=np.float64), np.asarray(probe.ends, dtype=np.float64)])
        return np.round(stamps * base, _TIME_DECIMALS)

    def stamps_end(self) -> float:
        """Where the frames present end, in seconds (for messages)."""
        stamps = self.stamps()
        if stamps is not None and _usable(stamps, self.count):
            return float(max(stamps[-1, 1], stamps[-1, 0]))
        return self.count / self.fps if math.isfinite(self.fps) and self.fps > 0 else 0.0

    def _rgb(self, frame: Any) -> np.ndarray:
        """The frame as RGB (FFmpeg's rgb24 conversion, one converter kept for the file: same pixels as
        ``frame.to_ndarray(format="rgb24")``, without setting up a new converter for every frame)."""
        if self._converter is None:
            from av.video.reformatter import VideoReformatter

            self._converter = VideoReformatter()
        return self._converter.reformat(frame, format="rgb24").to_ndarray()

    def frame_time(self, index: int) -> float:
        """When frame ``index`` is shown, in seconds (for messages)."""
        stamps = self.stamps()
        if stamps is not None and _usable(stamps, self.count):
            return float(stamps[index, 0])
        return index / self.fps if math.isfinite(self.fps) and self.fps > 0 else 0.0

    def plan(self, indices: Iterator[int] | Sequence[int]) -> None:
        for i in indices:
            self._users[i] = self._users.get(i, 0) + 1
        self._planned = sorted(self._users)

    def frames(self, indices: Sequence[int]) -> list[np.ndarray]:
        """The RGB frames at ``indices`` (uint8, height x width x 3), in that order. Raises _Missing."""
        got: dict[int, np.ndarray] = {}
        for target in set(indices):  # wanted now, even without a plan (frames not wanted may be skipped)
            self._users[target] = max(self._users.get(target, 0), indices.count(target))
        try:
            for target in sorted(set(indices)):
                kept = self._kept.get(target)
                got[target] = kept if kept is not None else self._fetch(target)
                if self._users.get(target, 0) > indices.count(target):  # a later call wants it too
                    self._kept[target] = got[target]
        finally:
            for target in indices:
                users = self._users.get(target, 1) - 1
                if users > 0:
                    self._users[target] = users
                else:
                    self._users.pop(target, None)
                    self._kept.pop(target, None)
        return [got[i] for i in indices]

    def _fetch(self, target: int) -> np.ndarray:
        self._position_for(target)
        assert self._frames is not None
        for index, frame in self._frames:
            if self._landing and index >= 0:
                self._landing = False
                if index < self._floor - _LEADING_FRAMES and self._seekable:
                    # The seek landed well before the keyframe asked for (a container without a keyframe index):
                    # seeking gains nothing here, so decode forward from now on rather than seek again and again.
                    logger.debug("%s: seeking lands early (frame %d for %d); decoding on", self.source, index, target)
                    self._seekable = False
            if index < self._floor or index >= self.count:
                continue
            first, self._fresh = self._fresh, False
            self._last = max(self._last, index)
            if index == target:
                return self._rgb(frame)
            if index > target:
                if first and self._seekable and self._floor > 0:  # the seek landed after the keyframe asked for
                    logger.debug("%s: seeking overshot frame %d; decoding from the start", self.source, target)
                    self._seekable = False
                    self._restart()
                    return self._fetch(target)
                if self._users.get(index):  # the next one wanted, perhaps: keep it rather than seek back
                    self._kept[index] = self._rgb(frame)
                break
            if self._users.get(index) and index not in self._kept:
                self._kept[index] = self._rgb(frame)
        seconds = self.frame_time(target)
        reason = f"frame {target} ({seconds:.2f} s) did not decode"
        raise _Missing(f"{reason} ({self._problem})" if self._problem else reason, seconds)

    def _position_for(self, target: int) -> None:
        """Seek, restart or go on so that decoding forward reaches ``target``."""
        if self._frames is None or target <= self._last:  # nothing open yet, or going back
            if self._seekable:
                self._seek(self._key_before(target))
            else:
                self._restart()
            return
        if not self._seekable:
            return
        key = self._key_before(target)
        if key > self._last + 1 and not self._planned_between(self._last, key):
            self._seek(key)

    def _key_before(self, target: int) -> int:
        keys = self.probe.keyframes
        at = bisect.bisect_right(keys, target) - 1
        return keys[at] if at >= 0 else 0

    def _planned_between(self, low: int, high: int) -> bool:
        """Is a frame some later call needs strictly between ``low`` and ``high`` (and not yet kept)?"""
        at = bisect.bisect_right(self._planned, low)
        while at < len(self._planned) and self._planned[at] < high:
            index = self._planned[at]
            if self._users.get(index) and index not in self._kept:
                return True
            at += 1
        return False

    def _restart(self) -> None:
        """Decode from the start of the file again."""
        import av

        self.close()
        try:
            self._container = _av_open(self.source)
        except av.FFmpegError as exc:  # gone or changed since it was probed
            raise _Missing(f"cannot read the file again ({exc.strerror or exc})") from exc
        self._start_decoding(floor=0)

    def _seek(self, key: int) -> None:
        if key <= 0 or key not in self.probe.seek_points:
            self._restart()
            return
        import av

        if self._container is None:
            self._restart()
        stream = self._container.streams[self.probe.stream_index]
        try:
            self._container.seek(self.probe.seek_points[key], stream=stream, backward=True, any_frame=False)
        except av.FFmpegError as exc:
            logger.debug("%s: seeking failed (%s); decoding from the start", self.source, exc)
            self._seekable = False
            self._restart()
            return
        self._start_decoding(floor=key)

    def _start_decoding(self, floor: int) -> None:
        self._frames = self._decoded()
        self._last, self._floor, self._fresh, self._landing = floor - 1, floor, True, True

    def _decoded(self) -> Iterator[tuple[int, Any]]:
        """(index, frame) for every frame the decoder gives from the current position; decoder errors on a
        packet are remembered and skipped (the frames they spoil are then missing)."""
        import av

        container = self._container
        stream = container.streams[self.probe.stream_index]
        codec = stream.codec_context
        codec.skip_frame, skipping = "DEFAULT", False
        count = 0
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError as exc:  # a read error mid-file: the rest is unreadable
                self._problem = exc.strerror or str(exc)
                packet = None
            if self.by_time and packet is not None and packet.pts is not None:
                # A frame that no other frame references and nobody wants need not be decoded at all (most
                # B-frames): FFmpeg's skip_frame=NONREF drops exactly those, so the other frames are unchanged.
                index = self._index.get(packet.pts, -1)
                skip = not self._users.get(index)
                if skip != skipping:
                    codec.skip_frame, skipping = ("NONREF" if skip else "DEFAULT"), skip
            try:
                frames = codec.decode(packet if packet is not None and packet.size else None)
            except av.FFmpegError as exc:
                self._problem = exc.strerror or str(exc)
                frames = []
            for frame in frames:
                if self.by_time:
                    index = self._index.get(frame.pts, -1)
                else:
                    index, count = count, count + 1
                yield index, frame
            if packet is None:
                return


def _decode(reader: _Reader, source: Path, indices: list[int], location: str | None) -> list[Image.Image]:
    """Decode exactly ``indices`` into RGB PIL images."""
    from PIL import Image

    try:
        arrays = reader.frames(indices)
    except _Missing as exc:
        if location is None and exc.seconds is not None:
            location = f"{exc.seconds:.2f} s"
        raise InputError(f"frames failed to decode: {exc}", source=source, location=location) from exc
    return [Image.fromarray(array) for array in arrays]

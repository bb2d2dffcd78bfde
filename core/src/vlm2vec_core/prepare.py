"""From user inputs to what the model consumes: prompt string plus fitted images or frames.

Shared by every encoder (local, fake, remote), so each builds the same prompt and the same pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .errors import InputError, report
from .media import (
    MAX_DECODE_PIXELS,
    MAX_PIXELS,
    MIN_PIXELS,
    as_frame,
    fit_frames,
    fit_image,
    load_image,
    visual_tokens,
)
from .tasks import Instruction, as_instruction, build_prompt
from .types import Input, VideoClip, as_input


@dataclass(frozen=True)
class MediaLimits:
    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS
    num_frames: int = 8
    max_decode_pixels: int = MAX_DECODE_PIXELS

    def __post_init__(self) -> None:
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 0 < min_pixels <= max_pixels, got {self.min_pixels} and {self.max_pixels}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {self.num_frames}")


@dataclass(frozen=True, eq=False)
class Prepared:
    """One input ready for the processor: its raw prompt and its resized media."""

    index: int
    prompt: str
    image: Image.Image | None
    frames: list[Image.Image] | None
    visual_tokens: int

    @property
    def modality(self) -> str:
        parts = [name for name, value in (("image", self.image), ("video", self.frames)) if value is not None]
        return "+".join(parts) or "text"


def prepare(item: Input, index: int, instruction: Instruction, limits: MediaLimits) -> Prepared:
    """Build the prompt and fit the media of one input; raises InputError for bad media."""
    image = frames = None
    tokens = 0
    if item.image is not None:
        image = fit_image(
            load_image(item.image, max_decode_pixels=limits.max_decode_pixels),
            min_pixels=limits.min_pixels,
            max_pixels=limits.max_pixels,
        )
        tokens += visual_tokens(image.height, image.width)
    if item.video is not None:
        frames = fit_frames(
            _video_frames(item.video, limits), min_pixels=limits.min_pixels, max_pixels=limits.max_pixels
        )
        tokens += visual_tokens(frames[0].height, frames[0].width, len(frames))
    prompt = build_prompt(instruction, item.text, image=image is not None, video=frames is not None)
    return Prepared(index, prompt, image, frames, tokens)


def _video_frames(video: Any, limits: MediaLimits) -> list[Image.Image]:
    from .documents import parse_reference
    from .video import read_clip_frames, read_video_frames, uniform_frame_indices

    if isinstance(video, VideoClip):
        if not video.frames:
            raise InputError("clip has no frames", source=video.source, location=video.location)
        return list(video.frames)
    if isinstance(video, (str, Path)):
        path, start, end, _ = parse_reference(str(video))
        if start is not None and end is not None:  # a clip reference: talk.mp4#t=10,20
            return read_clip_frames(path, start, end, limits.num_frames)[0]
        return read_video_frames(path, num_frames=limits.num_frames)
    if isinstance(video, Sequence) and not isinstance(video, (bytes, str)):
        if not video:
            raise InputError("video has no frames", source="<frames>")
        picked = uniform_frame_indices(len(video), limits.num_frames)
        return [as_frame(video[i], name="<frames>", position=i) for i in picked]
    raise TypeError(f"a video must be a list of frames, a VideoClip or a path, not {type(video).__name__}")


def prepare_or_error(raw: Any, index: int, instruction: Instruction, limits: MediaLimits) -> Prepared | InputError:
    """Prepare one input, returning (not raising) its InputError, tagged with its index, when it is bad."""
    try:
        return prepare(as_input(raw), index, instruction, limits)
    except InputError as exc:
        tagged = exc.with_index(index)
    except ValueError as exc:  # media helpers report impossible sizes as ValueError
        tagged = InputError(str(exc), location=f"input {index}", index=index)
        tagged.__cause__ = exc
    return tagged


def keep_good(results: Iterable[Prepared | InputError], errors: list[InputError] | None) -> Iterator[Prepared]:
    """Pass prepared inputs through; record bad ones in ``errors``, or raise the first when it is None."""
    for result in results:
        if isinstance(result, InputError):
            report(result, errors)
        else:
            yield result


def prepare_all(
    items: Iterable[Any],
    instruction: Instruction | str | None,
    limits: MediaLimits,
    *,
    start: int = 0,
    errors: list[InputError] | None = None,
) -> Iterator[Prepared]:
    """Prepare inputs in order; with an ``errors`` list, bad ones are recorded there and skipped."""
    instr = as_instruction(instruction)
    results = (prepare_or_error(raw, start + offset, instr, limits) for offset, raw in enumerate(items))
    return keep_good(results, errors)

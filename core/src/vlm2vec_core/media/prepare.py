"""From user inputs to what the model consumes: prompt string plus fitted images or frames.

Shared by every encoder (local, fake, remote) and the server, so each builds the same prompt and the same pixels.
What differs between model families (prompt, pre-resize and caps, video sampling) comes from the family's
profile; without one, VLM2Vec-V2's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..errors import InputError, report
from ..tasks import Instruction, as_instruction
from ..types import Input, VideoClip, as_input
from .images import MAX_DECODE_PIXELS, MAX_PIXELS, MIN_PIXELS, as_frame, load_image, visual_tokens

if TYPE_CHECKING:
    from ..families import Profile, VideoPrep


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

    @classmethod
    def for_family(
        cls,
        family: Profile,
        *,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        num_frames: int | None = None,
        max_decode_pixels: int = MAX_DECODE_PIXELS,
    ) -> MediaLimits:
        """The family's caps and frame count, each overridable."""
        return cls(
            min_pixels if min_pixels is not None else family.min_pixels,
            max_pixels if max_pixels is not None else family.max_pixels,
            num_frames if num_frames is not None else family.num_frames,
            max_decode_pixels,
        )


@dataclass(frozen=True, eq=False)
class Prepared:
    """One input ready for the processor: its prompt and its resized media.

    ``frame_size`` is the (height, width) the frames must have at the model (the engine finishes a resize the
    PIL stage left to it); ``timestamps`` are seconds per temporal patch, for the families that write them.
    ``system`` and ``text`` are the instruction and the user text as given, for the chat-prompt families'
    remote form (a system turn and a user turn).
    """

    index: int
    prompt: str
    image: Image.Image | None
    frames: list[Image.Image] | None
    visual_tokens: int
    frame_size: tuple[int, int] | None = None
    timestamps: tuple[float, ...] | None = None
    system: str | None = None
    text: str | None = None

    @property
    def modality(self) -> str:
        parts = [name for name, value in (("image", self.image), ("video", self.frames)) if value is not None]
        return "+".join(parts) or "text"


def _family(family: Profile | None) -> Profile:
    from ..families import get_family

    return get_family(family)


def prepare(
    item: Input, index: int, instruction: Instruction, limits: MediaLimits, family: Profile | None = None
) -> Prepared:
    """Build the prompt and fit the media of one input; raises InputError for bad media."""
    profile = _family(family)
    image = None
    video: VideoPrep | None = None
    if item.image is not None:
        image = load_image(item.image, max_decode_pixels=limits.max_decode_pixels)
    if item.video is not None:
        if profile.video == "none":
            raise InputError(f"{profile.title} takes no video", source=_describe_video(item.video))
        video = video_prep(item.video, limits, profile)
    try:
        return assemble(index, instruction, item.text, image, video, limits, profile)
    except ValueError as exc:  # a shape the family refuses (an aspect ratio over 200:1): name the image
        if isinstance(exc, InputError):
            raise
        raise InputError(str(exc), source=_describe_image(item.image), location=f"input {index}") from exc


def assemble(
    index: int,
    instruction: Instruction,
    text: str | None,
    image: Image.Image | None,
    video: VideoPrep | None,
    limits: MediaLimits,
    profile: Profile,
) -> Prepared:
    """Fit a decoded image and a sampled video to the family's limits and render the prompt."""
    tokens = 0
    frames = size = stamps = None
    if video is not None and profile.video == "middle-frame":  # the family sees a video as one image
        if image is not None:
            raise InputError(f"{profile.title} takes one image per input: this one has an image and a video")
        image, video = video.frames[0], None
    if image is not None:
        image = profile.fit_image(image, limits)
        tokens += visual_tokens(image.height, image.width, factor=profile.factor)
    if video is not None:
        frames, size, stamps = video.frames, video.size, video.timestamps
        tokens += visual_tokens(size[0], size[1], len(frames), factor=profile.factor)
    prompt = profile.render(instruction, text, image is not None, frames is not None)
    return Prepared(index, prompt, image, frames, tokens, size, stamps, instruction.text or None, text)


def video_prep(video: Any, limits: MediaLimits, profile: Profile) -> VideoPrep:
    """Pick and fit a video's frames as the family does (a file, a clip reference, a VideoClip or frames)."""
    from .documents import parse_reference
    from .video import read_clip_frames, read_frames_at

    timing = None
    if isinstance(video, VideoClip):
        if not video.frames:
            raise InputError("clip has no frames", source=video.source, location=video.location)
        frames = list(video.frames)  # sampled by the loader
    elif isinstance(video, (str, Path)):
        path, start, end, _ = parse_reference(str(video))
        if start is not None and end is not None:  # a clip reference: talk.mp4#t=10,20
            frames = read_clip_frames(path, start, end, limits.num_frames, sampler=profile.sampler(limits.num_frames))[
                0
            ]
        elif profile.file_sampler is not None:  # the family samples whole files by time
            sampler = profile.file_sampler
            frames, indices, fps = read_frames_at(path, lambda n, fps: sampler(n, fps, limits.num_frames))
            timing = (indices, fps)
        else:
            frames = read_frames_at(path, lambda n, _fps: profile.frame_indices(n, limits.num_frames))[0]
    elif isinstance(video, Sequence) and not isinstance(video, (bytes, str)):
        if not video:
            raise InputError("video has no frames", source="<frames>")
        picked = profile.frames_of_list(len(video), limits.num_frames)
        frames = [as_frame(video[i], name="<frames>", position=i) for i in picked]
    else:
        raise TypeError(f"a video must be a list of frames, a VideoClip or a path, not {type(video).__name__}")
    try:
        return profile.fit_video(frames, limits, timing=timing)
    except ValueError as exc:
        raise InputError(str(exc), source=_describe_video(video)) from exc


def _describe_image(image: Any) -> str | None:
    if isinstance(image, (str, Path)):
        return str(image)
    return getattr(image, "filename", "") or None


def _describe_video(video: Any) -> str:
    if isinstance(video, VideoClip):
        return f"{video.source} {video.location}"
    return str(video) if isinstance(video, (str, Path)) else "<frames>"


def prepare_or_error(
    raw: Any, index: int, instruction: Instruction, limits: MediaLimits, family: Profile | None = None
) -> Prepared | InputError:
    """Prepare one input, returning (not raising) its InputError, tagged with its index, when it is bad."""
    try:
        return prepare(as_input(raw), index, instruction, limits, family)
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
    family: Profile | None = None,
) -> Iterator[Prepared]:
    """Prepare inputs in order; with an ``errors`` list, bad ones are recorded there and skipped."""
    instr = as_instruction(instruction)
    results = (prepare_or_error(raw, start + offset, instr, limits, family) for offset, raw in enumerate(items))
    return keep_good(results, errors)

"""Qwen3-VL-Embedding (Qwen/Qwen3-VL-Embedding-2B, -8B), as its official code runs it on transformers 4.57.3.

- Prompt: Qwen3-VL's chat template with the generation prompt; the instruction (stripped, a ``.`` added when it
  does not end in punctuation) is the system turn, ``Represent the user's input.`` by default (documents); the
  user turn holds all videos, then all images, then the text; ``NULL`` when there is nothing at all.
- Images: resized by the encoder itself (smart resize at factor 32, 4,096 to 1,843,200 px, PIL bicubic); the
  processor then runs with ``do_resize=False``.
- Video as a list of frames (a clip): up to 64 frames (``linspace`` beyond), each resized by PIL to a multiple of
  64 (at least 16,384 px, qwen-vl-utils' factor slip), then all to one size, a multiple of 32 within 131,072 to
  786,432 px per frame and 7,864,320 px in all, by torchvision bicubic with antialias (the engine does that
  step); an odd count is padded with the last frame; timestamps assume 2 fps over 0..n-1, whatever the clip's
  real times. A video file: 1 fps (4 to 64 frames, ``linspace(...).round()``), its real times, no PIL stage.
- Native 3-D M-RoPE, right padding, the last attended token (the ``\\n`` after ``<|im_start|>assistant``),
  8,192 tokens at most, Matryoshka truncation.
"""

from __future__ import annotations

import math
import unicodedata
from typing import TYPE_CHECKING

import numpy as np

from ..media.images import resize_to, smart_resize
from ..media.video import sampled_frame_indices
from ..tasks import PRESETS, Instruction, TaskPreset
from .base import Profile, Published, VideoPrep

if TYPE_CHECKING:
    from PIL import Image

    from ..media.prepare import MediaLimits

FACTOR = 32
DEFAULT_INSTRUCTION = "Represent the user's input."
MIN_PIXELS = 4 * FACTOR * FACTOR
MAX_PIXELS = 1800 * FACTOR * FACTOR
MAX_FRAMES = 64
FRAME_MIN_PIXELS = 128 * FACTOR * FACTOR
FRAME_MAX_PIXELS = 768 * FACTOR * FACTOR
TOTAL_PIXELS = 10 * FRAME_MAX_PIXELS  # a frame list's budget (the official embedder passes it)
FILE_TOTAL_PIXELS = 128000 * FACTOR * FACTOR * 0.9  # qwen-vl-utils' default (a video file gets no budget)
FRAME_LIST_FPS = 2.0  # qwen-vl-utils' assumed rate for a list of frames
STAGE_ONE_FACTOR = 2 * FACTOR  # fetch_image is called with the merged factor as its patch size
STAGE_ONE_MIN = 4 * STAGE_ONE_FACTOR * STAGE_ONE_FACTOR
STAGE_ONE_MAX = 16384 * STAGE_ONE_FACTOR * STAGE_ONE_FACTOR


def normalise_instruction(text: str) -> str:
    text = text.strip()
    if text and not unicodedata.category(text[-1]).startswith("P"):
        text += "."
    return text


def render(instruction: Instruction, text: str | None, image: bool, video: bool) -> str:
    system = normalise_instruction(instruction.text) or DEFAULT_INSTRUCTION
    user = ""
    if video:
        user += "<|vision_start|><|video_pad|><|vision_end|>"
    if image:
        user += "<|vision_start|><|image_pad|><|vision_end|>"
    if text is not None:
        user += text
    if not (image or video or text is not None):
        user = "NULL"
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def fit_image(image: Image.Image, limits: MediaLimits) -> Image.Image:
    width, height = image.size
    size = smart_resize(
        height, width, factor=FACTOR, min_pixels=limits.min_pixels, max_pixels=limits.max_pixels, extremes="raise"
    )
    return resize_to(image, size)


def frame_list_indices(total: int, num_frames: int = MAX_FRAMES) -> list[int]:
    """A list of frames keeps them all up to ``num_frames`` (64), else ``linspace(0, n-1, 64)`` of them."""
    if total <= num_frames:
        return list(range(total))
    return [int(i) for i in np.linspace(0, total - 1, num_frames, dtype=int)]


def clip_indices(total: int, num_frames: int = MAX_FRAMES) -> list[int]:
    """Frames read from a clip of a file: as the official benchmark extracts them, ``floor(i * n / 64)``."""
    return sampled_frame_indices(total, num_frames)


def file_indices(total: int, fps: float, num_frames: int = MAX_FRAMES) -> list[int]:
    """A whole video file: 1 frame per second, 4 to ``num_frames``, an even count, ``linspace(...).round()``."""
    top = max(2, num_frames // 2 * 2)
    wanted = total / fps if fps > 0 else total
    count = min(max(wanted, 4), top, total)
    count = max(2, math.floor(count / 2) * 2)
    count = min(count, total)
    try:
        import torch  # the official helper rounds a float32 torch linspace (half to even)
    except ImportError:
        return [int(i) for i in np.round(np.linspace(0, total - 1, count, dtype=np.float32))]
    return [int(i) for i in torch.linspace(0, total - 1, count).round().long().tolist()]


def fit_video(
    frames: list[Image.Image], limits: MediaLimits, *, timing: tuple[list[int], float] | None = None
) -> VideoPrep:
    """The PIL stage and the final size; ``timing`` (frame indices, fps) for a video file, None for a list."""
    if timing is None:
        stage_one = []
        for frame in frames:
            width, height = frame.size
            stage_one.append(
                resize_to(
                    frame,
                    smart_resize(
                        height,
                        width,
                        factor=STAGE_ONE_FACTOR,
                        min_pixels=STAGE_ONE_MIN,
                        max_pixels=STAGE_ONE_MAX,
                        extremes="raise",
                    ),
                )
            )
        frames = stage_one
        budget: float = TOTAL_PIXELS
    else:
        budget = FILE_TOTAL_PIXELS
    first = (frames[0].height, frames[0].width)
    frames = [resize_to(f, first) for f in frames]  # one size for the stack (the reference needs it too)
    if len(frames) % 2:
        frames = [*frames, frames[-1]]
    min_pixels = FRAME_MIN_PIXELS
    max_pixels = max(min(FRAME_MAX_PIXELS, limits.max_pixels, budget / len(frames) * 2), int(min_pixels * 1.05))
    size = smart_resize(
        first[0], first[1], factor=FACTOR, min_pixels=min_pixels, max_pixels=int(max_pixels), extremes="raise"
    )
    if timing is None:
        indices, fps = list(range(len(frames))), FRAME_LIST_FPS
    else:
        indices, fps = list(timing[0]), timing[1]
        indices += [indices[-1]] * (len(frames) - len(indices))
    seconds = [i / fps for i in indices]
    stamps = tuple((seconds[i] + seconds[i + 1]) / 2 for i in range(0, len(seconds), 2))
    return VideoPrep(frames, size, stamps)


def _preset(name: str, query: str, description: str) -> TaskPreset:
    return TaskPreset(name, Instruction(query), Instruction(""), description)


# The official evaluation's query instructions (src/evaluation/mmeb_v2); candidates keep the default system prompt.
_PRESETS = {
    p.name: p
    for p in (
        _preset("visdoc", "Find a document image that matches the given query.", "text query -> document page image"),
        _preset("video", "Find a video that contains the following visual content.", "text -> video (MSR-VTT)"),
        _preset("moment", "Find the clip that corresponds to the given text.", "text -> clip (MomentSeeker)"),
        _preset(
            "moment_in_video",
            "Find the clip that corresponds to the described scene in the given video.",
            "whole video + text -> clip of that video",
        ),
        _preset("image", "Find me an everyday image that matches the given caption:", "caption -> image"),
        _preset("image_to_text", "Find an image caption describing the given everyday image.", "image -> caption"),
        _preset("vqa", "Represent the given image with the following question:", "image + question -> answer"),
        _preset("image_classification", "Represent the given image for classification", "image -> label"),
        _preset("video_classification", "Recognize the category of the video content.", "video -> label"),
    )
}
assert set(_PRESETS) == set(PRESETS)

PROFILE = Profile(
    name="qwen3-vl-embedding",
    title="Qwen3-VL-Embedding",
    backbone="qwen3-vl",
    hub_ids=("Qwen/Qwen3-VL-Embedding-2B", "Qwen/Qwen3-VL-Embedding-8B"),
    weights="full",
    licence="Apache-2.0",
    presets=_PRESETS,
    refused={},
    render=render,
    chat_prompt=True,
    default_instruction=DEFAULT_INSTRUCTION,
    factor=FACTOR,
    min_pixels=MIN_PIXELS,
    max_pixels=MAX_PIXELS,
    caps_from_checkpoint=False,
    fit_image=fit_image,
    video="video",
    num_frames=MAX_FRAMES,
    frame_indices=clip_indices,
    fit_video=fit_video,
    positions="mrope",
    padding_side="right",
    max_length=8192,
    matryoshka=(64, 128, 256, 512, 768, 1024, 1536, 2048, 3072),
    dims={"Qwen/Qwen3-VL-Embedding-2B": 2048, "Qwen/Qwen3-VL-Embedding-8B": 4096},
    published={
        "Qwen/Qwen3-VL-Embedding-2B": Published(75.0, 61.9, 79.2, 73.2, 84.4),
        "Qwen/Qwen3-VL-Embedding-8B": Published(80.1, 67.1, 82.4, 77.8, 87.2),
    },
    good_at="the best all-round quality: images, video moments and documents; Matryoshka sizes",
    file_sampler=file_indices,
    list_indices=frame_list_indices,
    pooling="last attended token (after the generation prompt)",
    empty_input="NULL",
)

"""GME (Alibaba-NLP/gme-Qwen2-VL-2B/7B-Instruct), as its card's ``gme_inference.py`` runs it.

A hand-built chat string with the query instruction in the system turn (documents keep the default system
prompt), ``<|vision_start|><|image_pad|><|vision_end|>`` before the text, an ``<|endoftext|>`` appended after the
generation prompt and pooled there; images pre-shrunk by qwen-vl-utils (at most 16,384 tokens) and then fitted to
256-1,280 tokens by the processor; a video is its middle frame; 1-D positions (the model is fed embeddings, so
Qwen2-VL never builds M-RoPE); left padding; 1,800 tokens at most.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..media.images import PATCH_FACTOR, resize_to, smart_resize
from ..media.video import two_stage_frame_indices
from ..tasks import PRESETS, Instruction, TaskPreset
from .base import Profile, Published, VideoPrep

if TYPE_CHECKING:
    from PIL import Image

    from ..media.prepare import MediaLimits

DEFAULT_INSTRUCTION = "You are a helpful assistant."
VISION = "<|vision_start|><|image_pad|><|vision_end|>"
MIN_TOKENS, MAX_TOKENS = 256, 1280
PRESHRINK_MAX = 16384 * PATCH_FACTOR * PATCH_FACTOR  # qwen-vl-utils' fetch_image default


def render(instruction: Instruction, text: str | None, image: bool, video: bool) -> str:
    system = instruction.text or DEFAULT_INSTRUCTION
    user = (VISION if (image or video) else "") + (text or "")
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
        "<|im_start|>assistant\n<|endoftext|>"
    )


def fit_image(image: Image.Image, limits: MediaLimits) -> Image.Image:
    width, height = image.size
    shrunk = resize_to(image, smart_resize(height, width, max_pixels=PRESHRINK_MAX, extremes="raise"))
    width, height = shrunk.size
    size = smart_resize(height, width, min_pixels=limits.min_pixels, max_pixels=limits.max_pixels, extremes="raise")
    return resize_to(shrunk, size)


def fit_video(frames: list[Image.Image], limits: MediaLimits, *, timing: Any = None) -> VideoPrep:
    """GME has no video input: the clip's middle frame stands for it, as an image."""
    middle = fit_image(frames[len(frames) // 2], limits)
    return VideoPrep([middle], (middle.height, middle.width))


def middle_of_two_stage(total: int, num_frames: int) -> list[int]:
    """The middle one of the frames VLM2Vec's sampling picks (how VLM2Vec's evaluation feeds GME a video)."""
    picked = two_stage_frame_indices(total, num_frames)
    return [picked[len(picked) // 2]] if picked else []


def _query(text: str) -> TaskPreset:
    return TaskPreset("", Instruction(text), Instruction(""), "")


# The card's instruction for text-to-image search; documents keep the default system prompt. GME sees a clip as
# one image, so text-to-clip search is text-to-image search for it.
_FIND_IMAGE = "Find an image that matches the given text."
_TASKS = {
    "visdoc": (_FIND_IMAGE, "text query -> document page image"),
    "image": (_FIND_IMAGE, "caption -> image"),
    "video": (_FIND_IMAGE, "text -> video (its middle frame)"),
    "moment": (_FIND_IMAGE, "text -> clip (its middle frame)"),
}
PROFILE = Profile(
    name="gme",
    title="GME (Qwen2-VL)",
    backbone="qwen2-vl",
    hub_ids=("Alibaba-NLP/gme-Qwen2-VL-2B-Instruct", "Alibaba-NLP/gme-Qwen2-VL-7B-Instruct"),
    weights="full",
    licence="Apache-2.0",
    presets={
        name: TaskPreset(name, Instruction(text), Instruction(""), description)
        for name, (text, description) in _TASKS.items()
    },
    refused={
        name: "GME was trained for retrieval of images and documents by text (and text by image): "
        f"use one of {', '.join(_TASKS)} or pass your own instruction"
        for name in PRESETS
        if name not in _TASKS
    },
    render=render,
    chat_prompt=True,
    default_instruction=DEFAULT_INSTRUCTION,
    factor=PATCH_FACTOR,
    min_pixels=MIN_TOKENS * PATCH_FACTOR * PATCH_FACTOR,
    max_pixels=MAX_TOKENS * PATCH_FACTOR * PATCH_FACTOR,
    caps_from_checkpoint=False,
    fit_image=fit_image,
    video="middle-frame",
    num_frames=8,
    frame_indices=middle_of_two_stage,
    fit_video=fit_video,
    positions="1d",
    padding_side="left",
    max_length=1800,
    matryoshka=(),
    dims={"Alibaba-NLP/gme-Qwen2-VL-2B-Instruct": 1536, "Alibaba-NLP/gme-Qwen2-VL-7B-Instruct": 3584},
    published={
        "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct": Published(51.9, 33.9, 72.7, 54.1, 86.1),
        "Alibaba-NLP/gme-Qwen2-VL-7B-Instruct": Published(56.0, 38.6, 75.2, 57.8, 89.4),
    },
    good_at="visual documents (PDF pages, slides, screenshots) among the Qwen2-VL families",
    pooling="the appended <|endoftext|>",
)

"""VLM2Vec-V2, VLM2Vec-V1 (Qwen2-VL) and UniME-V2: one code path (TIGER-AI-Lab/VLM2Vec), raw prompts.

The three differ only in their image handling and their task presets: V2 enlarges tiny images to 56x56 and
caps at 1,280 visual tokens; V1 and UniME-V2 first squash every image to 1344x1344 (V1 then caps at 1,225
tokens after the squash, UniME-V2 keeps the checkpoint's own processor limits). All take forced 1-D positions,
left padding and the last token.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..media.images import MAX_PIXELS, MIN_PIXELS, PATCH_FACTOR, fit_frames, fit_image, resize_to, smart_resize
from ..media.video import two_stage_frame_indices
from ..tasks import PRESETS, Instruction, build_prompt
from .base import Profile, Published, VideoPrep, squash

if TYPE_CHECKING:
    from PIL import Image

    from ..media.prepare import MediaLimits

QWEN2VL_MAX_PIXELS = 12_845_056  # Qwen2-VL's own preprocessor config (16,384 tokens)
SQUASH_SIDE = 1344


def render_raw(instruction: Instruction, text: str | None, image: bool, video: bool) -> str:
    return build_prompt(instruction, text, image=image, video=video)


def _fit_v2_image(image: Image.Image, limits: MediaLimits) -> Image.Image:
    """Tiny images to 56x56 first, then smart resize (squashing extreme shapes), PIL bicubic."""
    return fit_image(image, min_pixels=limits.min_pixels, max_pixels=limits.max_pixels)


def _capped(image: Image.Image, limits: MediaLimits) -> Image.Image:
    width, height = image.size
    return resize_to(image, smart_resize(height, width, min_pixels=limits.min_pixels, max_pixels=limits.max_pixels))


def _squashed_size(limits: MediaLimits) -> tuple[int, int]:
    """What a 1344x1344 square becomes under the caps (980x980 for VLM2Vec-V1's)."""
    return smart_resize(SQUASH_SIDE, SQUASH_SIDE, min_pixels=limits.min_pixels, max_pixels=limits.max_pixels)


def _fit_squashed_image(image: Image.Image, limits: MediaLimits) -> Image.Image:
    """Squash to 1344x1344, then the caps; an image already of the result's size is kept (fitting twice, as a
    server does with what a RemoteEncoder fitted, must not resample it again)."""
    height, width = _squashed_size(limits)
    if image.size == (width, height):
        return image
    return _capped(squash(SQUASH_SIDE)(image), limits)


def _fit_frames(frames: list[Image.Image], limits: MediaLimits, *, timing: Any = None) -> VideoPrep:
    """Every frame to the size smart resize gives frame 0 (extreme shapes squashed; no 56x56 step for frames)."""
    fitted = fit_frames(frames, min_pixels=limits.min_pixels, max_pixels=limits.max_pixels)
    return VideoPrep(fitted, (fitted[0].height, fitted[0].width))


def _fit_squashed_frames(frames: list[Image.Image], limits: MediaLimits, *, timing: Any = None) -> VideoPrep:
    return _fit_frames([_fit_squashed_image(f, limits) for f in frames], limits)


_IMAGE_TASKS = ("image", "image_to_text", "vqa", "image_classification")

VLM2VEC_V2 = Profile(
    name="vlm2vec-v2",
    title="VLM2Vec-V2",
    backbone="qwen2-vl",
    hub_ids=("VLM2Vec/VLM2Vec-V2.0",),
    weights="adapter",
    licence="Apache-2.0",
    presets=dict(PRESETS),
    refused={},
    render=render_raw,
    chat_prompt=False,
    factor=PATCH_FACTOR,
    min_pixels=MIN_PIXELS,
    max_pixels=MAX_PIXELS,
    caps_from_checkpoint=False,
    fit_image=_fit_v2_image,
    video="video",
    num_frames=8,
    frame_indices=two_stage_frame_indices,
    fit_video=_fit_frames,
    positions="1d",
    padding_side="left",
    max_length=None,
    matryoshka=(),
    dims={"VLM2Vec/VLM2Vec-V2.0": 1536},
    published={"VLM2Vec/VLM2Vec-V2.0": Published(64.9, 34.9, 65.4, 58.0, 75.5)},
    good_at="one model for images, video and documents; the best video moments of the Qwen2-VL families",
    empty_input="two spaces",
)

VLM2VEC_V1 = replace(
    VLM2VEC_V2,
    name="vlm2vec-v1",
    title="VLM2Vec-V1 (Qwen2-VL)",
    hub_ids=("TIGER-Lab/VLM2Vec-Qwen2VL-2B", "TIGER-Lab/VLM2Vec-Qwen2VL-7B"),
    fit_image=_fit_squashed_image,
    fit_video=_fit_squashed_frames,
    dims={"TIGER-Lab/VLM2Vec-Qwen2VL-2B": 1536, "TIGER-Lab/VLM2Vec-Qwen2VL-7B": 3584},
    published={
        "TIGER-Lab/VLM2Vec-Qwen2VL-2B": Published(59.7, 29.0, 41.6, 47.0, 49.8),
        "TIGER-Lab/VLM2Vec-Qwen2VL-7B": Published(65.5, 34.0, 46.4, 52.3, 56.9),
    },
    good_at="MMEB-V1 image tasks (7B); superseded by V2 for video and documents",
)

UNIME_V2 = replace(
    VLM2VEC_V1,
    name="unime-v2",
    title="UniME-V2 (Qwen2-VL)",
    hub_ids=("TianchengGu/UniME-V2-Qwen2VL-2B", "TianchengGu/UniME-V2-Qwen2VL-7B"),
    weights="full",
    presets={name: PRESETS[name] for name in _IMAGE_TASKS},
    refused={
        name: "UniME-V2 was trained on MMEB-V1's image tasks only (no video, no visual documents)"
        for name in PRESETS
        if name not in _IMAGE_TASKS
    },
    max_pixels=QWEN2VL_MAX_PIXELS,
    caps_from_checkpoint=True,
    video="none",
    max_length=4096,
    dims={"TianchengGu/UniME-V2-Qwen2VL-2B": 1536, "TianchengGu/UniME-V2-Qwen2VL-7B": 3584},
    published={
        "TianchengGu/UniME-V2-Qwen2VL-2B": Published(note="MMEB-V1 63.6"),
        "TianchengGu/UniME-V2-Qwen2VL-7B": Published(note="MMEB-V1 68.0"),
    },
    task_for_kind={"page": "image", "image": "image"},
    good_at="MMEB-V1 image retrieval and classification; images only",
    empty_input="",
)

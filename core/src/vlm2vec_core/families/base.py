"""What a model family is, as data: the profile every encoder, the server and the stores read.

A profile holds the facts that differ between families (prompt, vision markers, presets in the family's own
words, pre-resize and pixel caps, video sampling, position mode, padding, pooling, dimensions, max length,
licence) plus a few small pure functions (render a prompt, fit an image, fit a video). The engines that run a
profile never branch on a family's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ..tasks import Instruction, TaskPreset

if TYPE_CHECKING:
    from PIL import Image

    from ..media.prepare import MediaLimits

Kind = Literal["page", "clip", "image"]


@dataclass(frozen=True)
class VideoPrep:
    """A video as the model will take it: frames after the PIL stage, the final frame size and the times.

    ``size`` (height, width) is what the frames must have when they reach the model; when the PIL stage already
    gave it, the engine has nothing left to do, otherwise it resizes them on the tensor side as the family's
    reference does (Qwen3-VL: torchvision bicubic with antialias). ``timestamps`` are seconds, one per temporal
    patch, for the families that write them into the prompt.
    """

    frames: list[Image.Image]
    size: tuple[int, int]
    timestamps: tuple[float, ...] | None = None


# render(instruction, text, has_image, has_video) -> the prompt with one marker per image / video
Renderer = Callable[[Instruction, "str | None", bool, bool], str]


@dataclass(frozen=True)
class Published:
    """Published quality (model cards and papers; MMEB-V2 and ViDoRe-V1 nDCG@5), for the docs and the CLI."""

    mmeb_image: float | None = None
    mmeb_video: float | None = None
    mmeb_visdoc: float | None = None
    mmeb_all: float | None = None
    vidore_v1: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Profile:
    name: str  # "vlm2vec-v2", the id stores record
    title: str
    backbone: Literal["qwen2-vl", "qwen3-vl"]
    hub_ids: tuple[str, ...]
    weights: Literal["adapter", "full"]
    licence: str
    presets: Mapping[str, TaskPreset]
    refused: Mapping[str, str]  # task -> why this family does not take it
    render: Renderer
    chat_prompt: bool  # True: the prompt is a chat string (system turn, user turn), not the raw text
    factor: int  # pixels per visual token side (patch * merge)
    min_pixels: int
    max_pixels: int
    caps_from_checkpoint: bool  # read the pixel caps from the checkpoint's preprocessor config when it has them
    fit_image: Callable[[Image.Image, MediaLimits], Image.Image]
    video: Literal["video", "middle-frame", "none"]
    num_frames: int  # frames per video (a maximum for the frame-list families)
    frame_indices: Callable[[int, int], list[int]]  # (frame count, num_frames) -> which frames to use
    fit_video: Callable[..., VideoPrep]  # (frames, limits, *, timing=None) -> VideoPrep
    positions: Literal["1d", "mrope"]
    padding_side: Literal["left", "right"]
    max_length: int | None
    matryoshka: tuple[int, ...]  # dimensions truncate_dim may take (empty: none)
    dims: Mapping[str, int]  # published checkpoint -> dimension
    published: Mapping[str, Published] = field(default_factory=dict)
    task_for_kind: Mapping[str, str] = field(
        default_factory=lambda: {"page": "visdoc", "clip": "moment", "image": "image"}
    )
    good_at: str = ""
    # None: take the whole video file as frames picked by frame_indices; else (count, fps) -> indices and the
    # file's real times go to fit_video (Qwen3-VL samples whole files at 1 fps).
    file_sampler: Callable[[int, float, int], list[int]] | None = None
    # (list length, num_frames) -> which frames of a list of frames to use; None: as frame_indices
    list_indices: Callable[[int, int], list[int]] | None = None
    default_instruction: str = ""  # the system prompt a chat-prompt family uses without an instruction
    pooling: str = "last non-pad token"
    empty_input: str = ""

    @property
    def open_licence(self) -> bool:
        return self.licence.split()[0] in ("Apache-2.0", "MIT", "BSD-3-Clause")

    def preset(self, task: str) -> TaskPreset:
        if task in self.refused:
            raise ValueError(f"{self.title} does not take the task {task!r}: {self.refused[task]}")
        try:
            return self.presets[task]
        except KeyError:
            choices = ", ".join(self.presets)
            raise ValueError(f"unknown task {task!r} for {self.title}; choose one of: {choices}") from None

    def instruction(self, task: str, role: str) -> Instruction:
        return self.preset(task).instruction(role)  # type: ignore[arg-type]

    def check_truncate_dim(self, truncate_dim: int | None, dim: int) -> None:
        if truncate_dim is None:
            return
        allowed = [d for d in self.matryoshka if d < dim]
        if not self.matryoshka:
            raise ValueError(f"{self.title} has no Matryoshka dimensions: its vectors are {dim}-dimensional only")
        if truncate_dim not in allowed and truncate_dim != dim:
            raise ValueError(
                f"truncate_dim={truncate_dim} is not one of {self.title}'s Matryoshka sizes: "
                f"{', '.join(map(str, [*allowed, dim]))}"
            )

    def frames_of_list(self, total: int, num_frames: int) -> list[int]:
        return (self.list_indices or self.frame_indices)(total, num_frames)

    def sampler(self, num_frames: int) -> Callable[[int], list[int]]:
        """Frame count -> indices, for the loaders (clips, whole videos read as frames)."""
        return lambda total: self.frame_indices(total, num_frames)


def squash(side: int) -> Callable[[Image.Image], Image.Image]:
    """Resize to side x side (PIL's default bicubic), as VLM2Vec-V1 and UniME-V2 do before the processor."""

    def apply(image: Image.Image) -> Image.Image:
        from ..media.images import RESAMPLE

        return image if image.size == (side, side) else image.resize((side, side), RESAMPLE)

    return apply

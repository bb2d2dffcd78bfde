"""Task instructions and prompt assembly, exactly as VLM2Vec-V2 was trained and evaluated.

The presets are data: each task family has one instruction for the query side and one for the document
side, with upstream's exact strings. Two prompt styles exist upstream:

- ``"v2"`` (video and visual-document families): ``<pad> `` + instruction + ``" " + text``.
- ``"v1"`` (the MMEB-V1 image families): ``<pad>\\n`` + instruction + ``" " + text`` + ``"\\n"``.

An empty instruction means the bare text (labels, captions and answers are embedded as they are).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"

Style = Literal["v2", "v1"]
Role = Literal["query", "document"]


@dataclass(frozen=True)
class Instruction:
    """An instruction string and the prompt style it was trained with."""

    text: str = ""
    style: Style = "v2"

    def __post_init__(self) -> None:
        if self.style not in ("v2", "v1"):
            raise ValueError(f"unknown prompt style {self.style!r}: use 'v2' or 'v1'")

    def prompt(self, text: str | None = None, *, image: bool = False, video: bool = False) -> str:
        """Assemble the raw prompt (no chat template, no special tokens besides the media pads)."""
        return build_prompt(self, text, image=image, video=video)


def build_prompt(
    instruction: Instruction | str | None,
    text: str | None = None,
    *,
    image: bool = False,
    video: bool = False,
) -> str:
    """The prompt of one input: instruction, then ``" " + text``, then the media pad tokens in front.

    A video pad goes in first and an image pad in front of it, each followed by a space (``"v2"``) or a newline
    (``"v1"``). The processor later expands each pad into one token per merged visual patch.
    """
    instr = as_instruction(instruction)
    prompt = instr.text
    if text:
        prompt = f"{prompt} {text}" if prompt else text
    separator = " "
    if instr.style == "v1":
        separator = "\n"
        if instr.text:
            prompt += "\n"
    if video:
        prompt = f"{VIDEO_PAD}{separator}{prompt}"
    if image:
        prompt = f"{IMAGE_PAD}{separator}{prompt}"
    return prompt or "  "  # upstream turns an empty input into two spaces


def as_instruction(instruction: Instruction | str | None) -> Instruction:
    if instruction is None:
        return Instruction()
    if isinstance(instruction, Instruction):
        return instruction
    if isinstance(instruction, str):
        return Instruction(instruction)
    raise TypeError(f"instruction must be a str or an Instruction, not {type(instruction).__name__}")


@dataclass(frozen=True)
class TaskPreset:
    name: str
    query: Instruction
    document: Instruction
    description: str

    def instruction(self, role: Role) -> Instruction:
        if role == "query":
            return self.query
        if role == "document":
            return self.document
        raise ValueError(f"unknown role {role!r}: use 'query' or 'document'")


def _v2(text: str) -> Instruction:
    return Instruction(text, "v2")


def _v1(text: str) -> Instruction:
    return Instruction(text, "v1")


BARE = Instruction("", "v2")

PRESETS: dict[str, TaskPreset] = {
    preset.name: preset
    for preset in (
        TaskPreset(
            "visdoc",
            _v2("Find a document image that matches the given query:"),
            _v2("Understand the content of the provided document image."),
            "text query -> document page image (ViDoRe, VisRAG)",
        ),
        TaskPreset(
            "video",
            _v2("Find a video that contains the following visual content:"),
            _v2("Understand the content of the provided video."),
            "text -> video (MSR-VTT)",
        ),
        TaskPreset(
            "moment",
            _v2("Find the clip that corresponds to the given text:"),
            _v2("Understand the content of the provided video clip."),
            "text -> clip of a video (MomentSeeker)",
        ),
        TaskPreset(
            "moment_in_video",
            _v2("Find the clip that corresponds to the described scene in the given video:"),
            _v2("Understand the content of the provided video."),
            "whole video (8 frames) + text -> clip of that video (QVHighlights, Charades-STA)",
        ),
        TaskPreset(
            "image",
            _v1("Find me an everyday image that matches the given caption:"),
            _v1("Represent the given image."),
            "caption -> image (MSCOCO t2i)",
        ),
        TaskPreset(
            "image_to_text",
            _v1("Find an image caption describing the given everyday image."),
            BARE,
            "image -> caption (MSCOCO i2t)",
        ),
        TaskPreset(
            "vqa",
            _v1("Represent the given image with the following question:"),
            BARE,
            "image + question -> answer (DocVQA)",
        ),
        TaskPreset(
            "image_classification",
            _v1("Represent the given image for classification"),
            BARE,
            "image -> label (ImageNet-1K)",
        ),
        TaskPreset(
            "video_classification",
            _v2("Recognize the category of the video content."),
            BARE,
            "video -> label (Kinetics-700)",
        ),
    )
}


def get_preset(task: str) -> TaskPreset:
    try:
        return PRESETS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(PRESETS)}") from None


def resolve_instruction(
    task: str, role: Role, instruction: Instruction | str | None = None, family: Any = None
) -> Instruction:
    """The instruction for one side of a task: the preset's (in ``family``'s own words when given: a profile),
    unless the caller overrides it. A task the family was never trained with is refused (ValueError)."""
    preset = family.preset(task) if family is not None else get_preset(task)
    if instruction is not None:
        return as_instruction(instruction)
    return preset.instruction(role)

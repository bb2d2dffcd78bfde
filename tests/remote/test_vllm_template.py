"""The chat template shipped for vLLM renders exactly the local raw prompt (pure Python, jinja2 only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import vlm2vec_core
from vlm2vec_core.encoders.wire import content_parts
from vlm2vec_core.tasks import IMAGE_PAD, VIDEO_PAD, Instruction, build_prompt, resolve_instruction

jinja2 = pytest.importorskip("jinja2")
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402

TEMPLATE = Path(vlm2vec_core.__file__).parent / "templates" / "vlm2vec_v2.jinja"


def render(messages: list[dict[str, Any]], **extra: Any) -> str:
    """Render as transformers' apply_chat_template does (sandboxed, trim_blocks, lstrip_blocks)."""

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(TEMPLATE.read_text()).render(messages=messages, **extra)


def as_vllm(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What vLLM hands the template with content format "openai": media parts become {"type": modality}."""
    kinds = {"image_url": "image", "video_url": "video"}
    return [{"type": kinds[p["type"]]} if p["type"] in kinds else p for p in parts]


IMAGE = Image.new("RGB", (56, 84), (200, 30, 30))
FRAMES = [Image.new("RGB", (56, 56), (i * 30, 0, 0)) for i in range(8)]

CASES = {
    "visdoc document (image, v2)": (resolve_instruction("visdoc", "document"), None, True, False),
    "video document (video, v2)": (resolve_instruction("video", "document"), None, False, True),
    "moment_in_video query (video + text)": (
        resolve_instruction("moment_in_video", "query"),
        "the speaker shows the chart",
        False,
        True,
    ),
    "vqa query (image + text, v1 newlines)": (resolve_instruction("vqa", "query"), "what is the total?", True, False),
    "image document (image, v1)": (resolve_instruction("image", "document"), None, True, False),
    "visdoc query (text only)": (resolve_instruction("visdoc", "query"), "quarterly revenue", False, False),
    "bare text": (Instruction(""), "a label", False, False),
    "image and video": (Instruction("Compare them."), "x", True, True),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("form", ["openai parts", "vllm parts"])
def test_template_renders_the_local_prompt(case: str, form: str) -> None:
    instruction, text, image, video = CASES[case]
    prompt = build_prompt(instruction, text, image=image, video=video)
    parts = content_parts(prompt, IMAGE if image else None, FRAMES if video else None)
    if form == "vllm parts":
        parts = as_vllm(parts)
    got = render([{"role": "user", "content": parts}], add_generation_prompt=True)
    assert got == prompt
    assert "<|vision_start|>" not in got and "<|im_start|>" not in got


def test_v1_prompt_keeps_its_newlines_and_pads() -> None:
    prompt = build_prompt(resolve_instruction("vqa", "query"), "what is\nthe total?", image=True)
    assert prompt == f"{IMAGE_PAD}\nRepresent the given image with the following question: what is\nthe total?\n"
    assert render([{"role": "user", "content": content_parts(prompt, IMAGE, None)}]) == prompt


def test_video_part_is_the_video_pad() -> None:
    prompt = build_prompt(resolve_instruction("video", "document"), video=True)
    parts = content_parts(prompt, None, FRAMES, fmt="jpeg")
    assert parts[0]["type"] == "video_url"
    assert parts[0]["video_url"]["url"].startswith("data:video/jpeg;base64,")
    assert render([{"role": "user", "content": parts}]) == f"{VIDEO_PAD} Understand the content of the provided video."


def test_string_content_is_verbatim() -> None:
    assert render([{"role": "user", "content": "plain text, no template"}]) == "plain text, no template"


def test_unknown_part_is_refused() -> None:
    with pytest.raises(jinja2.exceptions.TemplateError, match="audio"):
        render([{"role": "user", "content": [{"type": "audio"}]}])

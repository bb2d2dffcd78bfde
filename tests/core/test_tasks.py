"""Prompt assembly and the task presets: exact strings, as upstream built them."""

from __future__ import annotations

import pytest

from vlm2vec_core import PRESETS, FakeEncoder, Input, Instruction, build_prompt, get_preset
from vlm2vec_core.tasks import resolve_instruction

# (task, role, text, image, video) -> the exact prompt the model must see
EXPECTED = [
    (
        "visdoc",
        "query",
        "revenue 2023",
        False,
        False,
        "Find a document image that matches the given query: revenue 2023",
    ),
    (
        "visdoc",
        "document",
        None,
        True,
        False,
        "<|image_pad|> Understand the content of the provided document image.",
    ),
    (
        "video",
        "query",
        "a cat jumps",
        False,
        False,
        "Find a video that contains the following visual content: a cat jumps",
    ),
    ("video", "document", None, False, True, "<|video_pad|> Understand the content of the provided video."),
    (
        "moment",
        "query",
        "the goal",
        False,
        False,
        "Find the clip that corresponds to the given text: the goal",
    ),
    (
        "moment",
        "document",
        None,
        False,
        True,
        "<|video_pad|> Understand the content of the provided video clip.",
    ),
    (
        "moment_in_video",
        "query",
        "the goal",
        False,
        True,
        "<|video_pad|> Find the clip that corresponds to the described scene in the given video: the goal",
    ),
    (
        "moment_in_video",
        "document",
        None,
        False,
        True,
        "<|video_pad|> Understand the content of the provided video.",
    ),
    (
        "image",
        "query",
        "a dog",
        False,
        False,
        "Find me an everyday image that matches the given caption: a dog\n",
    ),
    ("image", "document", None, True, False, "<|image_pad|>\nRepresent the given image.\n"),
    (
        "image_to_text",
        "query",
        None,
        True,
        False,
        "<|image_pad|>\nFind an image caption describing the given everyday image.\n",
    ),
    ("image_to_text", "document", "a dog on a beach", False, False, "a dog on a beach"),
    (
        "vqa",
        "query",
        "what is the total?",
        True,
        False,
        "<|image_pad|>\nRepresent the given image with the following question: what is the total?\n",
    ),
    ("vqa", "document", "42", False, False, "42"),
    (
        "image_classification",
        "query",
        None,
        True,
        False,
        "<|image_pad|>\nRepresent the given image for classification\n",
    ),
    ("image_classification", "document", "tabby cat", False, False, "tabby cat"),
    (
        "video_classification",
        "query",
        None,
        False,
        True,
        "<|video_pad|> Recognize the category of the video content.",
    ),
    ("video_classification", "document", "playing guitar", False, False, "playing guitar"),
]


@pytest.mark.parametrize(("task", "role", "text", "image", "video", "expected"), EXPECTED)
def test_preset_prompt_is_exact(task: str, role: str, text: str | None, image: bool, video: bool, expected: str):
    instruction = get_preset(task).instruction(role)  # type: ignore[arg-type]
    assert instruction.prompt(text, image=image, video=video) == expected


def test_every_preset_is_covered_for_both_roles():
    covered = {(task, role) for task, role, *_ in EXPECTED}
    assert covered == {(name, role) for name in PRESETS for role in ("query", "document")}
    assert {
        "visdoc",
        "video",
        "moment",
        "image",
        "image_to_text",
        "vqa",
        "image_classification",
        "video_classification",
    } <= set(PRESETS)


def test_no_chat_template_tokens_anywhere():
    for preset in PRESETS.values():
        for instr in (preset.query, preset.document):
            prompt = instr.prompt("x", image=True, video=True)
            for token in (
                "<|im_start|>",
                "<|im_end|>",
                "<|vision_start|>",
                "<|vision_end|>",
                "<|endoftext|>",
            ):
                assert token not in prompt


def test_video_pad_then_image_pad_order():
    assert build_prompt("Do it.", "now", image=True, video=True) == "<|image_pad|> <|video_pad|> Do it. now"


def test_bare_and_empty_inputs():
    assert build_prompt(None, "just text") == "just text"
    assert build_prompt(None, "") == "  "  # upstream's empty input
    assert build_prompt(Instruction("", "v1"), "label") == "label"


def test_unknown_task_names_the_choices():
    with pytest.raises(ValueError, match="unknown task 'nope'.*visdoc"):
        get_preset("nope")


def test_instruction_override_beats_preset():
    assert resolve_instruction("visdoc", "query", "Custom:").text == "Custom:"
    assert resolve_instruction("visdoc", "query").text.startswith("Find a document image")
    with pytest.raises(ValueError, match="style"):
        Instruction("x", "v3")  # type: ignore[arg-type]


def test_encode_queries_and_documents_use_the_presets():
    enc = FakeEncoder(dim=8)
    enc.encode_queries(["where is the chart"])
    enc.encode_documents([Input(text="caption")], task="image_to_text")
    enc.encode_queries(["q"], task="video", instruction="My own instruction:")
    assert enc.prompts == [
        "Find a document image that matches the given query: where is the chart",
        "caption",
        "My own instruction: q",
    ]


def test_async_twins_give_the_same_vectors():
    import asyncio

    import numpy as np

    enc = FakeEncoder(dim=8)
    sync = enc.encode_queries(["a", "b"])
    np.testing.assert_array_equal(asyncio.run(enc.aencode_queries(["a", "b"])), sync)
    np.testing.assert_array_equal(asyncio.run(enc.aencode_documents(["a"])), enc.encode_documents(["a"]))
    np.testing.assert_array_equal(asyncio.run(enc.aencode(["a"])), enc.encode(["a"]))


def test_encode_by_task_groups_per_task_and_keeps_order():
    import asyncio

    import numpy as np

    from vlm2vec_core import InputError
    from vlm2vec_core.encoders.protocol import aencode_by_task, encode_by_task

    enc = FakeEncoder(dim=8)
    inputs = ["a", "b", "c", "d"]
    tasks = ["visdoc", "moment", "visdoc", "moment"]
    out = encode_by_task(enc, inputs, tasks)
    np.testing.assert_array_equal(out[0], enc.encode_documents(["a"])[0])
    np.testing.assert_array_equal(out[1], enc.encode_documents(["b"], task="moment")[0])
    np.testing.assert_array_equal(out, asyncio.run(aencode_by_task(enc, inputs, tasks)))
    queries = encode_by_task(enc, ["q"], ["moment"], role="query")
    np.testing.assert_array_equal(queries, enc.encode_queries(["q"], task="moment"))
    bad = [Input(text="ok"), Input(image=b"junk"), Input(text="fine"), Input(image=b"also junk")]
    errors: list[InputError] = []
    kept = encode_by_task(enc, bad, ["visdoc", "moment", "moment", "visdoc"], errors=errors)
    assert kept.shape == (2, 8)
    assert sorted(e.index for e in errors) == [1, 3]
    assert {e.location for e in errors} == {"input 1", "input 3"}
    with pytest.raises(InputError, match="input 1") as raised:  # first of its group (index 0 there), renumbered
        encode_by_task(
            enc, [Input(text="ok"), Input(image=b"junk"), Input(text="fine")], ["visdoc", "moment", "visdoc"]
        )
    assert raised.value.index == 1
    with pytest.raises(ValueError, match="one task per input"):
        encode_by_task(enc, inputs, ["visdoc"])

"""The request bodies RemoteEncoder builds have the shape of vLLM's documented embeddings requests (fixtures).

No server: the bodies come from ``RemoteEncoder._jobs`` (``servehelp.planned_requests``) and the fixtures are
vLLM's own examples (see each file's "comment"). Our server's parser must take vLLM's bodies too, once media are
data: URLs.
"""

from __future__ import annotations

import base64
import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from servehelp import planned_requests

from vlm2vec_core.encoders.remote import RemoteEncoder
from vlm2vec_core.encoders.wire import RequestError, decode_image, parse_request
from vlm2vec_core.tasks import IMAGE_PAD, resolve_instruction

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    body = json.loads((FIXTURES / name).read_text())
    assert "vllm" in body.pop("comment").lower()  # every fixture names where it comes from
    return body


def our_bodies(inputs: list[Any], task: str, role: str, **kwargs: Any) -> list[dict[str, Any]]:
    enc = RemoteEncoder("http://127.0.0.1:9", family="vlm2vec-v2", **kwargs)  # never contacted
    try:
        jobs = planned_requests(enc, inputs, resolve_instruction(task, role), 32)
        return [enc._with_defaults(body) for _, body in jobs]
    finally:
        enc.close()


def shape(value: Any) -> Any:
    """Keys at every level and the part types, with the values left out."""
    if isinstance(value, dict):
        return {k: (v if k == "type" else shape(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def png_data_url(size: tuple[int, int] = (64, 48)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (0, 128, 255)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


PAGE = Image.new("RGB", (300, 420), (240, 240, 240))


# -- our bodies against vLLM's -------------------------------------------------------------------------------


def test_image_body_has_the_shape_of_vllms_messages_example() -> None:
    (ours,) = our_bodies([PAGE], "visdoc", "document")
    theirs = fixture("vllm_embeddings_messages_image.json")
    assert set(ours) == set(theirs) == {"model", "messages", "encoding_format"}
    assert shape(ours["messages"]) == shape(theirs["messages"])  # same keys at each level, same part types
    assert [p["type"] for p in ours["messages"][0]["content"]] == ["image_url", "text"]
    url = ours["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    base64.b64decode(url.partition(",")[2], validate=True)
    assert theirs["messages"][0]["content"][0]["image_url"]["url"].startswith("https://")
    assert ours["encoding_format"] in ("float", "base64")


def test_jpeg_media_format_sends_jpeg_data_urls() -> None:
    (ours,) = our_bodies([PAGE], "visdoc", "document", media_format="jpeg")
    assert ours["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_video_body_uses_vllms_frame_list_form() -> None:
    frames = [Image.new("RGB", (64, 48), (i * 20, 0, 0)) for i in range(12)]
    from vlm2vec_core import Input

    (ours,) = our_bodies([Input(video=frames)], "video", "document", media_format="jpeg")
    parts = ours["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["video_url", "text"]
    assert set(parts[0]) == {"type", "video_url"} and set(parts[0]["video_url"]) == {"url"}
    url = parts[0]["video_url"]["url"]
    assert url.startswith("data:video/jpeg;base64,")  # the only frame-list MIME type vLLM decodes
    assert len(url.partition(",")[2].split(",")) == 8  # 8 frames picked on the client, as vLLM keeps them


def test_text_body_has_the_shape_of_vllms_input_examples() -> None:
    (ours,) = our_bodies(["quarterly revenue", "the chart"], "visdoc", "query")
    assert set(ours) == {"model", "input", "encoding_format"}
    assert isinstance(ours["input"], list) and all(isinstance(t, str) for t in ours["input"])
    for name in ("vllm_embeddings_input.json", "vllm_embeddings_input_list.json"):
        theirs = fixture(name)
        assert {"model", "input"} <= set(ours) and set(ours) <= set(theirs) | {"encoding_format"}
        assert isinstance(theirs["input"], (str, list))
    assert fixture("vllm_embeddings_input.json")["encoding_format"] == ours["encoding_format"] == "base64"


# -- vLLM's bodies against our parser ------------------------------------------------------------------------


def test_parser_takes_vllms_messages_body_with_a_data_url() -> None:
    body = fixture("vllm_embeddings_messages_image.json")
    body["messages"][0]["content"][0]["image_url"]["url"] = png_data_url()
    (item,), fmt = parse_request(body)
    assert fmt == "float"
    assert item.prompt == f"{IMAGE_PAD}Represent the given image."  # the parts in order, nothing added
    assert item.image is not None and item.video is None
    image = decode_image(item.image, max_decode_pixels=10**8)
    assert image.size == (64, 48)


def test_parser_refuses_vllms_http_url_with_422() -> None:
    body = fixture("vllm_embeddings_messages_image.json")
    (item,), _ = parse_request(copy.deepcopy(body))
    assert item.image is not None
    with pytest.raises(RequestError) as caught:
        decode_image(item.image, max_decode_pixels=10**8)  # what the server runs per item, before any I/O
    assert caught.value.status == 422
    assert "only data: URLs are accepted" in caught.value.message
    assert "messages[0].content[0]" in caught.value.message


def test_parser_takes_vllms_text_bodies() -> None:
    (item,), fmt = parse_request(fixture("vllm_embeddings_messages_text.json"))
    assert (item.prompt, item.image, item.video, fmt) == ("A cat and a dog", None, None, "float")
    (item,), fmt = parse_request(fixture("vllm_embeddings_input.json"))
    assert (item.prompt, fmt) == ("vLLM is great!", "base64")
    items, fmt = parse_request(fixture("vllm_embeddings_input_list.json"))
    assert [i.prompt for i in items] == fixture("vllm_embeddings_input_list.json")["input"] and fmt == "float"


def test_our_bodies_round_trip_through_our_parser() -> None:
    for body in our_bodies([PAGE, "a query"], "visdoc", "document"):
        items, _ = parse_request(body)
        assert items

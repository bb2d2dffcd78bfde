"""RemoteReranker's request bodies have the shape of vLLM's documented rerank requests, and our server's parser
takes vLLM's bodies (fixtures from vLLM's examples; their URLs replaced by data: URLs, as our server only takes)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from vlm2vec_core import Input
from vlm2vec_core.encoders.wire import parse_rerank, rerank_part
from vlm2vec_core.families.rerankers import QWEN3_VL_RERANKER
from vlm2vec_core.media.prepare import MediaLimits, prepare
from vlm2vec_core.tasks import Instruction

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    body = json.loads((FIXTURES / name).read_text())
    assert "vllm" in body.pop("comment").lower()
    return body


def _data_urls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("data:image/png;base64," + _png() if k == "url" else _data_urls(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_data_urls(v) for v in value]
    return value


def _png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (0, 128, 255)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _our_document(item: Input) -> Any:
    limits = MediaLimits.for_family(QWEN3_VL_RERANKER.media)
    return rerank_part(prepare(item, 0, Instruction(), limits, QWEN3_VL_RERANKER.media))


def test_our_documents_have_vllms_shapes():
    theirs = fixture("vllm_rerank_list.json")["documents"]
    ours = [
        _our_document(Input(text="a caption")),
        _our_document(Input(image=Image.new("RGB", (300, 200)))),
        _our_document(Input(text="a caption", image=Image.new("RGB", (300, 200)))),
    ]
    assert isinstance(ours[0], str) and isinstance(theirs[0], str)  # plain text stays a string
    assert ours[1] == {
        "content": [{"type": "image_url", "image_url": {"url": ours[1]["content"][0]["image_url"]["url"]}}]
    }
    assert {p["type"] for p in ours[2]["content"]} == {p["type"] for p in theirs[3]["content"]}
    assert ours[1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.parametrize("name", ["vllm_rerank_strings.json", "vllm_rerank_one_image.json", "vllm_rerank_list.json"])
def test_our_server_takes_vllms_bodies(name: str):
    body = _data_urls(fixture(name))
    parsed = parse_rerank(body)
    documents = body["documents"] if isinstance(body["documents"], list) else [body["documents"]]
    assert len(parsed.documents) == len(documents) and parsed.query.text == body["query"]
    for spec, raw in zip(parsed.documents, documents, strict=True):
        if isinstance(raw, str):
            assert spec.text == raw and spec.image is None
        else:
            kinds = {p["type"] for p in raw["content"]}
            assert (spec.image is not None) == ("image_url" in kinds)
            assert (spec.text is not None) == ("text" in kinds)

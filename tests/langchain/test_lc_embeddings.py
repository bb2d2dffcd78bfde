"""VLM2VecEmbeddings and the package surface, on the deterministic FakeEncoder (no weights)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import langchain_vlm2vec
import mediafixtures
from langchain_vlm2vec import VLM2VecEmbeddings
from vlm2vec_core import FakeEncoder, Input, get_preset
from vlm2vec_core.media.images import to_data_url


def test_all_is_pinned() -> None:
    assert langchain_vlm2vec.__all__ == [
        "VLM2VecEmbeddings",
        "VLM2VecPDFLoader",
        "VLM2VecRerank",
        "VLM2VecRetriever",
        "VLM2VecSearchInput",
        "VLM2VecSearchTool",
        "VLM2VecVideoLoader",
        "__version__",
        "aadd_media_documents",
        "add_media_documents",
        "check_vectorstore",
    ]


def test_import_is_light_and_the_model_is_created_lazily() -> None:
    code = (
        "import sys; from langchain_vlm2vec import VLM2VecEmbeddings; "
        "e = VLM2VecEmbeddings('VLM2Vec/VLM2Vec-V2.0', device='cpu'); "
        "assert e._encoder is None; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_constructor_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="not both"):
        VLM2VecEmbeddings("some/model", encoder=FakeEncoder())
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        VLM2VecEmbeddings(encoder=FakeEncoder(), task="nope")
    with pytest.raises(TypeError, match="vlm2vec_core encoder"):
        VLM2VecEmbeddings(encoder=object())  # type: ignore[arg-type]
    assert VLM2VecEmbeddings().model == "VLM2Vec/VLM2Vec-V2.0"


def test_vectors_are_plain_floats_and_match_a_direct_core_call() -> None:
    fake = FakeEncoder(16)
    emb = VLM2VecEmbeddings(encoder=fake)
    docs = emb.embed_documents(["a", "b"])
    query = emb.embed_query("a")
    assert all(type(x) is float for x in query)
    assert all(type(x) is float for row in docs for x in row)
    np.testing.assert_allclose(docs, fake.encode_documents(["a", "b"], task="visdoc"), atol=1e-7)
    np.testing.assert_allclose(query, fake.encode_queries(["a"], task="visdoc")[0], atol=1e-7)


def test_presets_and_instruction_overrides_reach_the_prompt() -> None:
    fake = FakeEncoder(8)
    VLM2VecEmbeddings(encoder=fake).embed_query("revenue")
    assert fake.prompts[-1] == f"{get_preset('visdoc').query.text} revenue"
    VLM2VecEmbeddings(encoder=fake, task="image").embed_query("a cat")
    assert fake.prompts[-1].startswith(get_preset("image").query.text)
    custom = VLM2VecEmbeddings(encoder=fake, query_instruction="Q:", document_instruction="D:")
    custom.embed_query("x")
    custom.embed_documents(["y"])
    assert fake.prompts[-2:] == ["Q: x", "D: y"]


def test_embed_image_takes_paths_data_urls_and_pil(tmp_path: Any) -> None:
    fake = FakeEncoder(8)
    emb = VLM2VecEmbeddings(encoder=fake)
    path = mediafixtures.make_image(tmp_path / "p.png", seed=3)
    by_path, by_url, by_pil = emb.embed_image(
        [str(path), to_data_url(path, format="PNG"), mediafixtures.make_image(None, seed=3)]
    )
    np.testing.assert_allclose(by_path, by_url)
    np.testing.assert_allclose(by_path, by_pil)
    assert fake.prompts[-1].startswith("<|image_pad|> " + get_preset("visdoc").document.text)
    assert emb.embed_images([path]) == [by_path]
    with pytest.raises(TypeError, match="list of images"):
        emb.embed_image(str(path))  # type: ignore[arg-type]


def test_embed_video_uses_the_video_preset() -> None:
    fake = FakeEncoder(8)
    frames = [mediafixtures.video_frame(s, 0, 10, (64, 48)) for s in range(4)]
    (vector,) = VLM2VecEmbeddings(encoder=fake).embed_video([frames])
    assert len(vector) == 8
    assert fake.prompts[-1] == "<|video_pad|> " + get_preset("moment").document.text
    np.testing.assert_allclose(vector, fake.encode_documents([Input(video=frames)], task="moment")[0], atol=1e-7)


class _AsyncFake(FakeEncoder):
    """An encoder with native coroutines, as the remote client has: the adapter must await them."""

    calls: list[str]

    async def aencode_queries(self, inputs: Any, **kwargs: Any) -> np.ndarray:
        self.calls.append("aencode_queries")
        return self.encode_queries(inputs, **kwargs)

    async def aencode_documents(self, inputs: Any, **kwargs: Any) -> np.ndarray:
        self.calls.append("aencode_documents")
        return self.encode_documents(inputs, **kwargs)


def test_async_twins_use_the_encoders_coroutines() -> None:
    fake = _AsyncFake(8)
    fake.calls = []
    emb = VLM2VecEmbeddings(encoder=fake)

    async def run() -> tuple[Any, ...]:
        return (
            await emb.aembed_query("q"),
            await emb.aembed_documents(["d"]),
            await emb.aembed_image([mediafixtures.make_image(None)]),
        )

    query, docs, images = asyncio.run(run())
    assert fake.calls == ["aencode_queries", "aencode_documents", "aencode_documents"]
    assert query == emb.embed_query("q")
    assert docs == emb.embed_documents(["d"])
    assert images == emb.embed_image([mediafixtures.make_image(None)])

"""Loaders, storage, retriever and tool on the tiny checkpoint and a real embedded Chroma."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import ToolMessage
from langchain_core.vectorstores import InMemoryVectorStore
from PIL import Image

import mediafixtures
from langchain_vlm2vec import (
    VLM2VecEmbeddings,
    VLM2VecPDFLoader,
    VLM2VecRetriever,
    VLM2VecSearchTool,
    VLM2VecVideoLoader,
    aadd_media_documents,
    add_media_documents,
)
from vlm2vec_core import FakeEncoder, Input
from vlm2vec_core.media.documents import input_for_reference


def _stored(indexed: Any) -> dict[str, Any]:
    return indexed.store.get(include=["documents", "metadatas", "embeddings"])


def test_loaders_give_one_document_per_page_and_clip_with_stable_ids(indexed: Any, tmp_path: Path) -> None:
    assert [d.metadata["page"] for d in indexed.pages] == [1, 2, 3]
    assert [(d.metadata["start_seconds"], d.metadata["end_seconds"]) for d in indexed.clips] == [
        (0.0, 1.0),
        (1.0, 2.0),
        (2.0, 3.0),
    ]
    for doc in indexed.pages + indexed.clips:
        assert doc.id == doc.metadata["id"]
        assert Path(doc.metadata["image_path"]).is_file()
        assert doc.metadata["source"] in (str(indexed.pdf), str(indexed.video))
    assert indexed.pages[1].metadata["reference"].endswith("report.pdf#page=2")
    assert indexed.clips[2].metadata["reference"].endswith("talk.mp4#t=2,3")
    # a copy elsewhere, loaded again with another cache: same ids (content hash + page or span)
    copy = tmp_path / "moved.pdf"
    copy.write_bytes(indexed.pdf.read_bytes())
    again = list(VLM2VecPDFLoader(copy, cache_dir=tmp_path / "c").lazy_load())
    assert [d.id for d in again] == [d.id for d in indexed.pages]


def test_store_keeps_captions_and_references_not_base64(indexed: Any) -> None:
    stored = _stored(indexed)
    assert sorted(stored["ids"]) == sorted(d.id for d in indexed.pages + indexed.clips)
    for text in stored["documents"]:
        assert len(text) < 80 and "base64" not in text
    for meta in stored["metadatas"]:
        assert {"reference", "image_path", "source", "kind"} <= set(meta)


def test_stored_vectors_are_the_pixels_not_the_caption(indexed: Any, tiny_encoder: Any) -> None:
    stored = _stored(indexed)
    by_id = dict(zip(stored["ids"], stored["embeddings"], strict=True))
    page = indexed.pages[0]
    page_image = _page(page)  # the page itself, not its display thumbnail (image_path)
    expected = tiny_encoder.encode_documents([page_image], task="visdoc")[0]
    np.testing.assert_allclose(by_id[page.id], expected, atol=1e-5)
    caption = tiny_encoder.encode_documents([page.page_content], task="visdoc")[0]
    assert float(np.dot(by_id[page.id], caption)) < 0.99
    clip = indexed.clips[1]
    expected = tiny_encoder.encode_documents([Input(video=clip.metadata["reference"])], task="moment")[0]
    np.testing.assert_allclose(by_id[clip.id], expected, atol=1e-5)


def test_page_image_as_query_finds_its_own_page_first(indexed: Any, tmp_path: Path) -> None:
    retriever = VLM2VecRetriever(vectorstore=indexed.store, k=3)
    for page in indexed.pages:
        hits = retriever.search_by_image(_page(page))
        assert hits[0].id == page.id
        assert hits[0].metadata["score"] == pytest.approx(1.0, abs=1e-4)
        assert hits[1].metadata["score"] < hits[0].metadata["score"]
    # Chroma's own image search, with our embed_image, agrees
    rendered = tmp_path / "page3.png"
    _page(indexed.pages[2]).save(rendered)
    first = indexed.store.similarity_search_by_image(str(rendered), k=1)
    assert first[0].id == indexed.pages[2].id


def test_clip_as_query_finds_its_own_clip_first(indexed: Any) -> None:
    retriever = VLM2VecRetriever(vectorstore=indexed.store, k=2, search_kwargs={"filter": {"kind": "clip"}})
    for clip in indexed.clips:
        hits = retriever.search_by_video(clip.metadata["reference"])
        assert [h.metadata["kind"] for h in hits] == ["clip", "clip"]
        assert hits[0].id == clip.id
        assert hits[0].metadata["start_seconds"] == clip.metadata["start_seconds"]


def test_retriever_attaches_images_only_on_request(indexed: Any) -> None:
    retriever = VLM2VecRetriever(vectorstore=indexed.store, k=6, image_max_side=64)
    plain = retriever.invoke("a slide")
    assert len(plain) == 6 and all("image_block" not in d.metadata for d in plain)
    assert all(isinstance(d.metadata["score"], float) for d in plain)
    with_images = retriever.invoke("a slide", k=2, include_images=True)
    assert len(with_images) == 2
    for doc in with_images:
        block = doc.metadata["image_block"]
        assert block["type"] == "image" and block["mime_type"] == "image/jpeg"
        image = Image.open(io.BytesIO(base64.b64decode(block["base64"])))
        assert max(image.size) <= 64


def test_tool_returns_a_summary_and_the_images(indexed: Any) -> None:
    retriever = VLM2VecRetriever(vectorstore=indexed.store)
    tool = VLM2VecSearchTool(retriever=retriever, name="look_up", description="Look things up.")
    assert tool.name == "look_up" and tool.description == "Look things up."
    call = {"type": "tool_call", "name": "look_up", "id": "c1", "args": {"query": "red circle", "k": 3}}
    message = tool.invoke(call)
    assert isinstance(message, ToolMessage)
    summary, *rest = message.content
    assert summary["type"] == "text"
    lines = summary["text"].splitlines()
    assert len(lines) == 3 and all("score" in line for line in lines)
    assert any("report.pdf, page" in line or "talk.mp4, 0:0" in line for line in lines)
    images = [b for b in rest if isinstance(b, dict) and b.get("type") == "image"]
    assert len(images) == 3 and all(b["base64"] for b in images)
    assert [d.id for d in message.artifact] == [d.id for d in retriever.invoke("red circle", k=3)]
    assert all("image_block" in d.metadata for d in message.artifact)
    text_only = VLM2VecSearchTool(retriever=retriever, images_in_content=False).invoke({**call, "name": "x"})
    assert isinstance(text_only.content, str) and "score" in text_only.content
    assert all("image_block" in d.metadata for d in text_only.artifact)


def test_bad_files_are_reported_while_the_rest_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = mediafixtures.make_pdf(tmp_path / "good.pdf", n_pages=2, size=(100, 130))
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7 not really")
    missing = tmp_path / "missing.pdf"
    loader = VLM2VecPDFLoader([broken, good, missing], cache_dir=tmp_path / "c", skip_errors=True)
    docs = loader.load()
    assert [(Path(d.metadata["source"]).name, d.metadata["page"]) for d in docs] == [("good.pdf", 1), ("good.pdf", 2)]
    assert sorted(Path(str(e.source)).name for e in loader.errors) == ["broken.pdf", "missing.pdf"]
    assert "broken.pdf" in caplog.text
    with pytest.raises(ValueError, match="broken.pdf"):
        VLM2VecPDFLoader([good, broken], cache_dir=tmp_path / "c").load()

    video = mediafixtures.make_video(tmp_path / "ok.mp4", seconds=2.0)
    cut = mediafixtures.truncate(mediafixtures.make_video(tmp_path / "cut.mp4", seconds=2.0), 0.3)
    clips = VLM2VecVideoLoader([cut, video], clip_seconds=1.0, cache_dir=tmp_path / "c", skip_errors=True)
    assert {Path(d.metadata["source"]).name for d in clips.load()} == {"ok.mp4"}
    assert any(Path(str(e.source)).name == "cut.mp4" for e in clips.errors)
    wrong = VLM2VecVideoLoader([good, video], cache_dir=tmp_path / "c", skip_errors=True)
    assert len(wrong.load()) == 1 and "not a video" in str(wrong.errors[0])


def test_another_vector_store_works_the_same_way(indexed: Any) -> None:
    store = InMemoryVectorStore(indexed.embeddings)
    ids = add_media_documents(store, indexed.pages, batch_size=2)
    assert ids == [d.id for d in indexed.pages]
    hits = VLM2VecRetriever(vectorstore=store, k=1).search_by_image(_page(indexed.pages[1]))
    assert hits[0].id == indexed.pages[1].id


def test_adding_needs_a_store_on_these_embeddings(indexed: Any) -> None:
    other = InMemoryVectorStore(VLM2VecEmbeddings(encoder=FakeEncoder(64)))
    with pytest.raises(ValueError, match="not the vector store's own"):
        add_media_documents(other, indexed.pages, embeddings=indexed.embeddings)

    class _Wrapper(InMemoryVectorStore):
        """A store whose embeddings are ours but that embeds through something else."""

        def add_documents(self, documents: Any, **kwargs: Any) -> list[str]:
            return ["x" for _ in documents]

    with pytest.raises(RuntimeError, match="did not embed the documents"):
        add_media_documents(_Wrapper(indexed.embeddings), indexed.pages[:1])


def test_async_paths(indexed: Any) -> None:
    import asyncio

    store = InMemoryVectorStore(indexed.embeddings)
    retriever = VLM2VecRetriever(vectorstore=store, k=2, include_images=True)

    async def run() -> Any:
        await aadd_media_documents(store, indexed.clips)
        return await retriever.ainvoke("a moving bar")

    hits = asyncio.run(run())
    assert len(hits) == 2 and all("image_block" in h.metadata for h in hits)


def _page(doc: Any) -> Image.Image:
    """A loaded page as the embeddings see it: rendered again from its PDF at the loader's 144 dpi."""
    image = input_for_reference(doc.metadata["reference"], dpi=144).image
    assert isinstance(image, Image.Image)
    return image

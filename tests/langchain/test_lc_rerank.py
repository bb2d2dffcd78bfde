"""VLM2VecRerank end to end: a real embedded Chroma store of PDF pages, an image, clips and a text, reranked."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from PIL import Image

import mediafixtures
from langchain_vlm2vec import (
    VLM2VecEmbeddings,
    VLM2VecPDFLoader,
    VLM2VecRerank,
    VLM2VecRetriever,
    VLM2VecVideoLoader,
    add_media_documents,
)
from langchain_vlm2vec.document_loaders import item_to_document
from vlm2vec_core import FakeEncoder, Input, iter_items
from vlm2vec_core.media.documents import input_for_reference
from vlm2vec_core.media.images import to_data_url
from vlm2vec_core.rerank import FakeReranker, Reranker

QUERY = "quarterly revenue figures"


@pytest.fixture(scope="module")
def retriever(tmp_path_factory: pytest.TempPathFactory) -> VLM2VecRetriever:
    import chromadb
    from langchain_chroma import Chroma

    folder = tmp_path_factory.mktemp("lc-rerank-media")
    cache = folder / "cache"
    pages = VLM2VecPDFLoader(mediafixtures.make_pdf(folder / "report.pdf", 2, (120, 160)), cache_dir=cache).load()
    video = mediafixtures.make_video(folder / "talk.mp4", seconds=2.0, fps=5)
    clips = VLM2VecVideoLoader(video, clip_seconds=1.0, cache_dir=cache).load()
    photo = mediafixtures.make_image(folder / "photo.png", size=(64, 48), seed=3)
    images = [item_to_document(item) for item in iter_items(photo, cache_dir=cache)]
    store = Chroma(
        client=chromadb.PersistentClient(path=str(folder / "chroma")),
        collection_name="rerank",
        embedding_function=VLM2VecEmbeddings(encoder=FakeEncoder(32)),
        collection_configuration={"hnsw": {"space": "cosine"}},
    )
    add_media_documents(store, pages + clips + images)
    store.add_texts(["The quarterly revenue figures grew in the third quarter."], ids=["notes"])
    return VLM2VecRetriever(vectorstore=store, k=10)


@pytest.fixture(scope="module")
def docs(retriever: VLM2VecRetriever) -> list[Document]:
    found = retriever.invoke(QUERY)
    assert sorted(d.metadata.get("kind", "text") for d in found) == ["clip", "clip", "image", "page", "page", "text"]
    return found


def expected(doc: Document) -> Input:
    """What the reranker should see, stated per kind (independently of the adapter's code)."""
    kind = doc.metadata.get("kind")
    if kind == "page":  # the page rendered again from its PDF (as it was loaded: 144 dpi), not its thumbnail
        return input_for_reference(doc.metadata["reference"], dpi=144)
    if kind == "image":
        return Input(image=doc.metadata["reference"])  # the image file itself
    if kind == "clip":
        return Input(video=doc.metadata["reference"])  # talk.mp4#t=0,1: frames over the span
    return Input(text=doc.page_content)


def by_reranker(reranker: Any, query: Any, docs: list[Document], **options: Any) -> list[tuple[str | None, float]]:
    return [(docs[i].id, s) for i, s in reranker.rerank(query, [expected(d) for d in docs], **options)]


def ids_and_scores(docs: Any) -> list[tuple[str | None, float]]:
    return [(d.id, d.metadata["relevance_score"]) for d in docs]


def test_order_and_scores_follow_the_reranker_exactly(docs: list[Document]) -> None:
    fake = FakeReranker()
    stage = VLM2VecRerank(reranker=fake, top_n=None)
    want = by_reranker(fake, Input(text=QUERY), docs)
    assert [(docs[i].id, s) for i, s in stage.rerank(docs, QUERY)] == want
    out = stage.compress_documents(docs, QUERY)
    assert ids_and_scores(out) == want
    assert out[0].id == "notes" and [d.id for d in out] != [d.id for d in docs]
    for doc in out:  # copies: the retriever's metadata kept, the inputs untouched
        original = next(d for d in docs if d.id == doc.id)
        assert doc.metadata == {**original.metadata, "relevance_score": doc.metadata["relevance_score"]}
        assert "relevance_score" not in original.metadata
        score = float(fake.score(Input(text=QUERY), [expected(original)])[0])
        assert doc.metadata["relevance_score"] == pytest.approx(score, abs=1e-7)


def test_top_n_keeps_the_best(docs: list[Document]) -> None:
    fake = FakeReranker()
    out = VLM2VecRerank(reranker=fake, top_n=2).compress_documents(list(reversed(docs)), QUERY)
    assert ids_and_scores(out) == by_reranker(fake, Input(text=QUERY), docs)[:2]
    assert VLM2VecRerank(reranker=fake).top_n == 3  # LangChain's usual default


def test_an_image_query(docs: list[Document]) -> None:
    fake = FakeReranker()
    stage = VLM2VecRerank(reranker=fake, top_n=3)
    photo = next(d for d in docs if d.metadata.get("kind") == "image").metadata["reference"]  # the file
    want = by_reranker(fake, Input(image=photo), docs, top_n=3)
    assert ids_and_scores(stage.compress_documents_by_image(docs, photo)) == want
    assert "<|image_pad|>" in fake.prompts[-1].split("<Document>")[0]  # the query side holds the image
    with Image.open(photo) as image:
        pil = image.convert("RGB")
    assert ids_and_scores(stage.compress_documents_by_image(docs, pil)) == want
    assert ids_and_scores(stage.compress_documents_by_image(docs, to_data_url(pil, format="PNG"))) == want
    assert [(docs[i].id, s) for i, s in stage.rerank(docs, pil)] == want
    assert ids_and_scores(asyncio.run(stage.acompress_documents_by_image(docs, Path(photo)))) == want


def test_the_tiny_real_reranker(docs: list[Document], tiny_reranker: Reranker) -> None:
    out = VLM2VecRerank(reranker=tiny_reranker, top_n=None, task="visdoc").compress_documents(docs, QUERY)
    want = by_reranker(tiny_reranker, Input(text=QUERY), docs, task="visdoc")
    assert [i for i, _ in ids_and_scores(out)] == [i for i, _ in want]
    assert [s for _, s in ids_and_scores(out)] == pytest.approx([s for _, s in want], abs=1e-6)
    assert all(0 < s < 1 for _, s in ids_and_scores(out))


def test_bad_documents_are_dropped_with_a_warning(
    docs: list[Document], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = str(mediafixtures.make_image(tmp_path / "gone.png", size=(32, 32)))
    page = next(d for d in docs if d.metadata.get("kind") == "page")
    gone = {"reference": str(tmp_path / "no.pdf#page=1"), "image_path": str(tmp_path / "no-render.png")}
    bad = [
        Document(id="deleted-image", page_content="gone.png", metadata={"kind": "image", "reference": image}),
        Document(id="broken-page", page_content=page.page_content, metadata={**page.metadata, **gone}),
    ]
    Path(image).unlink()
    fake = FakeReranker()
    with caplog.at_level(logging.WARNING):
        out = VLM2VecRerank(reranker=fake, top_n=None).compress_documents([bad[0], *docs, bad[1]], QUERY)
    assert ids_and_scores(out) == by_reranker(fake, Input(text=QUERY), docs)
    assert "dropped document deleted-image" in caplog.text and "dropped document broken-page" in caplog.text
    assert VLM2VecRerank(reranker=fake).compress_documents(bad, QUERY) == []


def test_inside_a_contextual_compression_retriever(retriever: VLM2VecRetriever, docs: list[Document]) -> None:
    retrievers = pytest.importorskip("langchain_classic.retrievers")
    fake = FakeReranker()
    pipeline = retrievers.ContextualCompressionRetriever(
        base_compressor=VLM2VecRerank(reranker=fake, top_n=2), base_retriever=retriever
    )
    want = by_reranker(fake, Input(text=QUERY), docs, top_n=2)
    assert ids_and_scores(pipeline.invoke(QUERY)) == want
    assert ids_and_scores(asyncio.run(pipeline.ainvoke(QUERY))) == want
    assert all("score" in d.metadata for d in pipeline.invoke(QUERY))  # the retriever's own score is kept


def test_async_and_any_object_with_rerank(docs: list[Document]) -> None:
    fake = FakeReranker()
    stage = VLM2VecRerank(reranker=fake, top_n=4)
    sync = ids_and_scores(stage.compress_documents(docs, QUERY))
    assert ids_and_scores(asyncio.run(stage.acompress_documents(docs, QUERY))) == sync

    class OnlyRerank:  # no arerank: run in a thread
        def rerank(self, query: Any, documents: Any, **kwargs: Any) -> list[tuple[int, float]]:
            return fake.rerank(query, documents, **kwargs)

    other = VLM2VecRerank(reranker=OnlyRerank(), top_n=4)
    assert ids_and_scores(asyncio.run(other.acompress_documents(docs, QUERY))) == sync
    assert stage.compress_documents([], QUERY) == []


def test_a_model_name_builds_a_local_reranker_lazily() -> None:
    stage = VLM2VecRerank(reranker="some/reranker-model")
    assert isinstance(stage.reranker, Reranker) and stage.reranker.model_name == "some/reranker-model"
    assert VLM2VecRerank().reranker.model_name == "Qwen/Qwen3-VL-Reranker-2B"
    with pytest.raises(TypeError, match="rerank method"):
        VLM2VecRerank(reranker=object())
    with pytest.raises(ValueError, match="top_n"):
        VLM2VecRerank(reranker=FakeReranker(), top_n=0)

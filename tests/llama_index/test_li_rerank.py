"""VLM2VecRerank end to end: a real embedded Chroma index of a PDF, an image, a video and a text, reranked."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import SimpleDirectoryReader
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.schema import ImageDocument, ImageNode, NodeWithScore, QueryBundle, TextNode

import mediafixtures
from llama_index.embeddings.vlm2vec import VLM2VecEmbedding, index_documents, open_chroma_index, query_engine
from llama_index.postprocessor.vlm2vec_rerank import VLM2VecRerank
from llama_index.readers.vlm2vec import file_extractor
from vlm2vec_core import FakeEncoder, Input
from vlm2vec_core.media.documents import input_for_reference
from vlm2vec_core.rerank import FakeReranker, Reranker

QUERY = "quarterly revenue figures"


@pytest.fixture(scope="module")
def hits(tmp_path_factory: pytest.TempPathFactory) -> list[NodeWithScore]:
    """Every node of the index (2 pages, 2 clips, an image, a text), as its retriever returns them."""
    folder = tmp_path_factory.mktemp("li-rerank-media")
    mediafixtures.make_pdf(folder / "report.pdf", n_pages=2, size=(120, 160))
    mediafixtures.make_video(folder / "talk.mp4", seconds=2.0, fps=5)
    (folder / "notes.txt").write_text("The quarterly revenue figures grew in the third quarter.")
    work = tmp_path_factory.mktemp("li-rerank-index")
    extractor = file_extractor(cache_dir=work / "cache", dpi=72, clip_seconds=1.0)
    docs = SimpleDirectoryReader(str(folder), file_extractor=extractor).load_data()
    photo = str(mediafixtures.make_image(work / "photo.png", size=(64, 48), seed=3))
    docs.append(ImageDocument(image_path=photo, metadata={"file_path": photo}))  # as LlamaIndex's ImageReader does
    index = open_chroma_index(work / "chroma", VLM2VecEmbedding(encoder=FakeEncoder(32)))
    index_documents(index, docs)
    found = index.as_retriever(similarity_top_k=1, image_similarity_top_k=10).retrieve(QUERY)
    kinds = sorted(h.node.metadata.get("kind", "text" if type(h.node) is TextNode else "photo") for h in found)
    assert kinds == ["clip", "clip", "page", "page", "photo", "text"]
    return found


def expected(node: Any, dpi: float = 72) -> Input:
    """What the reranker should see, stated per kind (independently of the adapter's code)."""
    kind = node.metadata.get("kind")
    if kind == "page":
        # the page rendered again from its PDF, as it was read (at dpi), never its display thumbnail (file_path)
        return input_for_reference(node.metadata["reference"], dpi=dpi)
    if kind == "clip":
        return Input(video=node.metadata["reference"])  # talk.mp4#t=0,1: frames over the span
    if isinstance(node, ImageNode):
        return Input(image=node.image_path)  # LlamaIndex's own ImageReader: the image file
    return Input(text=node.text)


def by_reranker(
    reranker: Any, query: Any, nodes: list[NodeWithScore], dpi: float = 72, **options: Any
) -> list[tuple[str, float]]:
    ranked = reranker.rerank(query, [expected(n.node, dpi) for n in nodes], **options)
    return [(nodes[i].node.node_id, score) for i, score in ranked]


def ids_and_scores(nodes: list[NodeWithScore]) -> list[tuple[str, float | None]]:
    return [(n.node.node_id, n.score) for n in nodes]


def test_order_and_scores_follow_the_reranker_exactly(hits: list[NodeWithScore]) -> None:
    fake = FakeReranker()
    out = VLM2VecRerank(reranker=fake, top_n=None).postprocess_nodes(hits, query_str=QUERY)
    assert ids_and_scores(out) == by_reranker(fake, Input(text=QUERY), hits)
    assert out[0].node.metadata["file_name"] == "notes.txt"  # the only candidate sharing the query's words
    assert [n.node.node_id for n in out] != [n.node.node_id for n in hits]  # reordered, not kept in place
    # each score is the one computed for that node (by index, never by position after sorting)
    for node in out:
        assert node.score == pytest.approx(float(fake.score(Input(text=QUERY), [expected(node.node)])[0]), abs=1e-7)


def test_top_n_keeps_the_best(hits: list[NodeWithScore]) -> None:
    fake = FakeReranker()
    out = VLM2VecRerank(reranker=fake, top_n=2).postprocess_nodes(list(reversed(hits)), query_str=QUERY)
    assert ids_and_scores(out) == by_reranker(fake, Input(text=QUERY), hits)[:2]
    assert VLM2VecRerank(reranker=fake).top_n == 2  # LlamaIndex's usual default


def test_an_image_query_through_the_query_bundle(hits: list[NodeWithScore]) -> None:
    fake = FakeReranker()
    photo = next(h.node for h in hits if type(h.node) is ImageNode and "kind" not in h.node.metadata).image_path
    bundle = QueryBundle(query_str="", image_path=photo)
    out = VLM2VecRerank(reranker=fake, top_n=3).postprocess_nodes(hits, bundle)
    assert ids_and_scores(out) == by_reranker(fake, Input(image=photo), hits, top_n=3)
    assert "<|image_pad|>" in fake.prompts[-1].split("<Document>")[0]  # the query side holds the image


def test_the_tiny_real_reranker(hits: list[NodeWithScore], tiny_reranker: Reranker) -> None:
    out = VLM2VecRerank(reranker=tiny_reranker, top_n=None, task="visdoc").postprocess_nodes(hits, query_str=QUERY)
    want = by_reranker(tiny_reranker, Input(text=QUERY), hits, task="visdoc")
    assert [i for i, _ in ids_and_scores(out)] == [i for i, _ in want]
    assert [s for _, s in ids_and_scores(out)] == pytest.approx([s for _, s in want], abs=1e-6)
    assert all(0 < (n.score or 0) < 1 for n in out)


def test_bad_nodes_are_dropped_with_a_warning(
    hits: list[NodeWithScore], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = str(mediafixtures.make_image(tmp_path / "gone.png", size=(32, 32)))
    page = next(h.node for h in hits if h.node.metadata.get("kind") == "page")
    broken_page = page.model_copy(
        update={"id_": "broken-page", "metadata": {**page.metadata, "reference": str(tmp_path / "no.pdf#page=1")}}
    )
    broken_page.metadata["image_path"] = str(tmp_path / "no-render.png")
    bad = [
        NodeWithScore(node=ImageNode(id_="deleted-image", image_path=str(image)), score=0.9),
        NodeWithScore(node=broken_page, score=0.8),  # its PDF and its render are gone
        NodeWithScore(node=TextNode(id_="stored-image", metadata={"kind": "image", "reference": image}), score=0.7),
    ]
    Path(image).unlink()
    fake = FakeReranker()
    with caplog.at_level(logging.WARNING):
        out = VLM2VecRerank(reranker=fake, top_n=None).postprocess_nodes([bad[0], *hits, *bad[1:]], query_str=QUERY)
    assert ids_and_scores(out) == by_reranker(fake, Input(text=QUERY), hits)
    for node_id in ("deleted-image", "broken-page", "stored-image"):
        assert f"dropped node {node_id}" in caplog.text


def test_async_path_and_a_remote_like_reranker(hits: list[NodeWithScore]) -> None:
    fake = FakeReranker()
    stage = VLM2VecRerank(reranker=fake, top_n=4)
    sync = stage.postprocess_nodes(hits, query_str=QUERY)
    assert ids_and_scores(asyncio.run(stage.apostprocess_nodes(hits, query_str=QUERY))) == ids_and_scores(sync)

    class OnlyRerank:  # any object with rerank (no arerank) will do
        def rerank(self, query: Any, documents: Any, **kwargs: Any) -> list[tuple[int, float]]:
            return fake.rerank(query, documents, **kwargs)

    other = VLM2VecRerank(reranker=OnlyRerank(), top_n=4)
    assert ids_and_scores(asyncio.run(other.apostprocess_nodes(hits, query_str=QUERY))) == ids_and_scores(sync)
    assert stage.postprocess_nodes([], query_str=QUERY) == []


class _Events(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "_Events"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


def test_rerank_start_and_end_events(hits: list[NodeWithScore]) -> None:
    handler = _Events()
    root = get_dispatcher()
    root.add_event_handler(handler)
    try:
        out = VLM2VecRerank(reranker=FakeReranker(), top_n=3).postprocess_nodes(hits, query_str=QUERY)
        asyncio.run(VLM2VecRerank(reranker=FakeReranker(), top_n=3).apostprocess_nodes(hits, query_str=QUERY))
    finally:
        root.event_handlers.remove(handler)
    events = [e for e in handler.events if isinstance(e, (ReRankStartEvent, ReRankEndEvent))]
    assert [type(e) for e in events] == [ReRankStartEvent, ReRankEndEvent] * 2
    start, end = events[0], events[1]
    assert isinstance(start, ReRankStartEvent) and isinstance(end, ReRankEndEvent)
    assert start.top_n == 3 and start.model_name == "FakeReranker" and len(start.nodes) == len(hits)
    assert start.query is not None and start.query.query_str == QUERY
    assert ids_and_scores(end.nodes) == ids_and_scores(out)


def test_a_model_name_builds_a_local_reranker_lazily(hits: list[NodeWithScore]) -> None:
    stage = VLM2VecRerank(reranker="some/reranker-model", top_n=1)
    assert isinstance(stage.reranker, Reranker) and stage.reranker.model_name == "some/reranker-model"
    assert stage.to_dict()["top_n"] == 1 and "reranker" not in stage.to_dict()
    with pytest.raises(TypeError, match="rerank method"):
        VLM2VecRerank(reranker=object())
    with pytest.raises(ValueError, match="needs a query"):
        VLM2VecRerank(reranker=FakeReranker()).postprocess_nodes(hits)


def test_as_a_query_engine_postprocessor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VLM2VEC_CHAT_BASE_URL", "OPENAI_BASE_URL", "VLM2VEC_CHAT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    mediafixtures.make_pdf(tmp_path / "doc.pdf", n_pages=3, size=(100, 130))
    docs = SimpleDirectoryReader(str(tmp_path), file_extractor=file_extractor(cache_dir=tmp_path / "c")).load_data()
    index = open_chroma_index(tmp_path / "chroma", VLM2VecEmbedding(encoder=FakeEncoder(16)))
    index_documents(index, docs)
    fake = FakeReranker()
    stage = VLM2VecRerank(reranker=fake, top_n=2)
    engine = query_engine(index, image_similarity_top_k=3, node_postprocessors=[stage], retrieve_only=True)
    response = engine.query("page two")
    retrieved = index.as_retriever(similarity_top_k=1, image_similarity_top_k=3).retrieve("page two")
    assert ids_and_scores(response.source_nodes) == by_reranker(
        fake, Input(text="page two"), retrieved, dpi=144, top_n=2
    )

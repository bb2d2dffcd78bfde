"""End to end: a folder of PDFs and a video in MultiModalVectorStoreIndex on a real embedded Chroma."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from llama_index.core import SimpleDirectoryReader
from llama_index.core.indices.multi_modal import MultiModalVectorStoreIndex
from llama_index.core.schema import QueryBundle
from llama_index.core.vector_stores import VectorStoreQuery

from fakechat import FakeChat
from llama_index.embeddings.vlm2vec import (
    ChatImages,
    ClipThumbnails,
    NoChatModel,
    VLM2VecEmbedding,
    chat_llm_from_env,
    index_documents,
    open_chroma_index,
    query_engine,
)
from llama_index.readers.vlm2vec import file_extractor
from vlm2vec_core import video_clips
from vlm2vec_core.index.store import caption

CHAT_ENV = ("VLM2VEC_CHAT_BASE_URL", "OPENAI_BASE_URL", "VLM2VEC_CHAT_API_KEY", "OPENAI_API_KEY", "VLM2VEC_CHAT_MODEL")


@pytest.fixture(scope="module")
def built(tiny_encoder: Any, media: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("li-index")
    extractor = file_extractor(cache_dir=work / "cache", dpi=72, clip_seconds=1.0)
    docs = SimpleDirectoryReader(str(media), file_extractor=extractor).load_data()
    embed = VLM2VecEmbedding(encoder=tiny_encoder, dpi=72)  # pages are rendered at the reader's resolution
    index = open_chroma_index(work / "chroma", embed)
    new_ids = index_documents(index, docs)
    return {"index": index, "docs": docs, "embed": embed, "path": work / "chroma", "new_ids": new_ids}


def test_everything_is_indexed_under_the_document_ids(built: dict[str, Any]):
    index: MultiModalVectorStoreIndex = built["index"]
    docs = built["docs"]
    assert len(docs) == 8  # 5 pages and 3 clips
    assert sorted(built["new_ids"]) == sorted(d.id_ for d in docs)
    images = index.image_vector_store.client  # the Chroma collection
    assert images.count() == 8
    assert index.vector_store.client.count() == 0  # no text: pages and clips are images only


def test_collections_use_cosine(built: dict[str, Any]):
    client = chromadb.PersistentClient(path=str(built["path"]))
    for name in ("vlm2vec_text", "vlm2vec_images"):
        assert client.get_collection(name).configuration["hnsw"]["space"] == "cosine"


def test_reindexing_embeds_and_stores_nothing_new(built: dict[str, Any], tiny_encoder: Any):
    index: MultiModalVectorStoreIndex = built["index"]
    calls = []
    index._image_embed_model = VLM2VecEmbedding(encoder=tiny_encoder, callback_manager=_counting(calls))
    try:
        assert index_documents(index, built["docs"]) == []
    finally:
        index._image_embed_model = built["embed"]
    assert calls == []
    assert index.image_vector_store.client.count() == 8


def test_a_page_image_retrieves_its_own_page_first(built: dict[str, Any]):
    retriever = built["index"].as_retriever(similarity_top_k=1, image_similarity_top_k=3)
    pages = [d for d in built["docs"] if d.metadata["kind"] == "page"]
    for page in pages:
        assert page.image_path == page.metadata["reference"]  # embedded: the page itself, not its thumbnail
        hits = retriever.image_to_image_retrieve(page.image_path)
        assert hits[0].node.node_id == page.id_
        assert hits[0].score == pytest.approx(1.0, abs=1e-3)  # cosine distance 0 -> Chroma's exp(-d) = 1
        assert hits[0].node.metadata["page"] == page.metadata["page"]
        assert hits[1].score < hits[0].score


def test_a_clips_frames_retrieve_that_clip(built: dict[str, Any], media: Path):
    index: MultiModalVectorStoreIndex = built["index"]
    embed: VLM2VecEmbedding = built["embed"]
    clip_docs = {d.metadata["clip_index"]: d for d in built["docs"] if d.metadata["kind"] == "clip"}
    for clip in video_clips(media / "talk.mp4", clip_seconds=1.0):
        query = embed.get_video_embedding(list(clip.frames))  # the frames, not the reference
        result = index.image_vector_store.query(VectorStoreQuery(query_embedding=query, similarity_top_k=2))
        assert result.ids[0] == clip_docs[clip.index].id_
        assert result.nodes[0].metadata["start_seconds"] == pytest.approx(clip.start)
    # and through the retriever, with the clip's reference as the image query
    hits = index.as_retriever(image_similarity_top_k=2).image_to_image_retrieve(clip_docs[2].image_path)
    assert hits[0].node.node_id == clip_docs[2].id_


def test_text_to_image_and_combined_retrieval(built: dict[str, Any]):
    index: MultiModalVectorStoreIndex = built["index"]
    retriever = index.as_retriever(similarity_top_k=2, image_similarity_top_k=4)
    hits = retriever.text_to_image_retrieve("the quarterly revenue chart")
    assert len(hits) == 4
    query = np.asarray(built["embed"].get_query_embedding("the quarterly revenue chart"))
    stored = index.image_vector_store.client.get(ids=[h.node.node_id for h in hits], include=["embeddings"])
    sims = dict(zip(stored["ids"], np.asarray(stored["embeddings"]) @ query, strict=True))
    ranked = [h.node.node_id for h in hits]
    assert ranked == sorted(ranked, key=lambda i: -sims[i])  # ordered by the query-preset embedding
    both = retriever.retrieve("the quarterly revenue chart")
    assert [h.node.node_id for h in both] == ranked  # the text store is empty: the image hits only
    async_hits = asyncio.run(retriever.aretrieve("the quarterly revenue chart"))
    assert [h.node.node_id for h in async_hits] == ranked


def test_the_persisted_index_reopens_in_a_new_process_and_answers_the_same(built: dict[str, Any], tiny_model_dir: Path):
    page = next(d for d in built["docs"] if d.metadata["kind"] == "page" and d.metadata["page"] == 2)
    retriever = built["index"].as_retriever(similarity_top_k=1, image_similarity_top_k=3)
    here = {
        "image": [[h.node.node_id, h.score] for h in retriever.image_to_image_retrieve(page.metadata["file_path"])],
        "text": [[h.node.node_id, h.score] for h in retriever.retrieve("a red circle")],
    }
    script = (
        "import json, sys\n"
        "from llama_index.embeddings.vlm2vec import VLM2VecEmbedding, open_chroma_index\n"
        "index = open_chroma_index(sys.argv[1], VLM2VecEmbedding(model=sys.argv[2], device='cpu'))\n"
        "r = index.as_retriever(similarity_top_k=1, image_similarity_top_k=3)\n"
        "print(json.dumps({'image': [[h.node.node_id, h.score] for h in r.image_to_image_retrieve(sys.argv[3])],\n"
        "                  'text': [[h.node.node_id, h.score] for h in r.retrieve('a red circle')]}))\n"
    )
    args = [sys.executable, "-c", script, str(built["path"]), str(tiny_model_dir), page.metadata["file_path"]]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    there = json.loads(done.stdout.strip().splitlines()[-1])
    assert [i for i, _ in there["image"]] == [i for i, _ in here["image"]]
    assert [i for i, _ in there["text"]] == [i for i, _ in here["text"]]
    np.testing.assert_allclose([s for _, s in there["text"]], [s for _, s in here["text"]], atol=1e-4)


def test_without_a_chat_model_the_engine_says_so(built: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    for name in CHAT_ENV:
        monkeypatch.delenv(name, raising=False)
    assert chat_llm_from_env() is None
    with pytest.raises(NoChatModel) as caught:  # was: an engine whose answer printed as "None"
        query_engine(built["index"], image_similarity_top_k=3).query("what is on page two?")
    message = str(caught.value)
    for option in ("llm=", "VLM2VEC_CHAT_BASE_URL", "VLM2VEC_CHAT_MODEL", "retrieve_only=True"):
        assert option in message


def test_a_retrieve_only_engine_lists_its_hits(built: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    for name in CHAT_ENV:
        monkeypatch.delenv(name, raising=False)
    response = query_engine(built["index"], image_similarity_top_k=3, retrieve_only=True).query("page two?")
    assert len(response.source_nodes) == 3
    lines = str(response).splitlines()
    assert len(lines) == 3 and lines == [caption(h.node.metadata) for h in response.source_nodes]
    assert all(line.startswith(("report.pdf p.", "memo.pdf p.", "talk.mp4 0:0")) for line in lines)
    again = asyncio.run(query_engine(built["index"], image_similarity_top_k=3, retrieve_only=True).aquery("page two?"))
    assert str(again) == str(response)


@pytest.fixture
def chat_server() -> Iterator[FakeChat]:
    with FakeChat(answer="Page 2.") as chat:
        yield chat


def test_with_a_chat_model_the_engine_answers_from_page_and_clip_images(
    built: dict[str, Any], chat_server: FakeChat, monkeypatch: pytest.MonkeyPatch
):
    pytest.importorskip("llama_index.llms.openai_like", reason="needs llama-index-embeddings-vlm2vec[llm]")
    for name in CHAT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", chat_server.url)  # the fallback of VLM2VEC_CHAT_BASE_URL
    monkeypatch.setenv("VLM2VEC_CHAT_API_KEY", "secret")
    monkeypatch.setenv("VLM2VEC_CHAT_MODEL", "fake-vlm")
    response = query_engine(built["index"], image_similarity_top_k=8).query("what is on page two?")
    assert str(response) == "Page 2."
    assert len(response.source_nodes) == 8
    (request,) = chat_server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["authorization"] == "Bearer secret"
    assert request["body"]["model"] == "fake-vlm"
    parts = [p for m in request["body"]["messages"] if isinstance(m["content"], list) for p in m["content"]]
    images = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(images) == 8  # 5 pages and 3 clip thumbnails
    assert all(url.startswith("data:image/") for url in images)
    assert any("what is on page two?" in p.get("text", "") for p in parts)


def test_the_chat_model_sees_pages_rendered_and_clip_thumbnails(built: dict[str, Any]):
    import base64
    import io

    from PIL import Image

    from vlm2vec_core.media.documents import input_for_reference

    assert ClipThumbnails is ChatImages  # the old name
    hits = built["index"].as_retriever(image_similarity_top_k=8).text_to_image_retrieve("x")
    shown = ChatImages().postprocess_nodes(hits, query_str="x")
    for before, after in zip(hits, shown, strict=True):
        if before.node.metadata["kind"] == "clip":
            assert "#t=" in before.node.image_path
            assert after.node.image_path == before.node.metadata["thumbnail_path"]
        else:  # a page: rendered from its PDF at the resolution it was read at, not its display thumbnail
            assert before.node.image_path == before.node.metadata["reference"]
            assert after.node.image_path is None and after.node.image_mimetype in ("image/png", "image/jpeg")
            with Image.open(io.BytesIO(base64.b64decode(after.node.image))) as sent:
                page = input_for_reference(before.node.metadata["reference"], dpi=72).image
                assert sent.size == page.size
        assert after.score == before.score


def test_upsert_by_id_after_a_document_changes(tiny_encoder: Any, media: Path, tmp_path: Path):
    import shutil

    import mediafixtures

    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copy(media / "memo.pdf", folder / "memo.pdf")
    extractor = file_extractor(cache_dir=tmp_path / "cache", dpi=72)
    index = open_chroma_index(tmp_path / "chroma", VLM2VecEmbedding(encoder=tiny_encoder))
    read = lambda: SimpleDirectoryReader(str(folder), file_extractor=extractor).load_data()  # noqa: E731
    assert len(index_documents(index, read())) == 2
    mediafixtures.make_pdf(folder / "memo.pdf", n_pages=2, size=(240, 320), seed=99)  # edited in place
    assert len(index_documents(index, read())) == 2  # new content, new ids
    assert len(index_documents(index, read())) == 0
    assert index.image_vector_store.client.count() == 4


def _counting(calls: list[Any]) -> Any:
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.callbacks.base_handler import BaseCallbackHandler

    class Count(BaseCallbackHandler):
        def __init__(self) -> None:
            super().__init__([], [])

        def on_event_start(self, event_type: Any, payload: Any = None, event_id: str = "", **kwargs: Any) -> str:
            calls.append(event_type)
            return event_id

        def on_event_end(self, event_type: Any, payload: Any = None, event_id: str = "", **kwargs: Any) -> None:
            pass

        def start_trace(self, trace_id: str | None = None) -> None:
            pass

        def end_trace(self, trace_id: str | None = None, trace_map: Any = None) -> None:
            pass

    return CallbackManager([Count()])


def test_query_bundle_with_an_image_path(built: dict[str, Any]):
    page = next(d for d in built["docs"] if d.metadata["kind"] == "page")
    bundle = QueryBundle(query_str="", image_path=page.metadata["reference"])
    hits = built["index"].as_retriever(image_similarity_top_k=1).image_to_image_retrieve(bundle)
    assert hits[0].node.node_id == page.id_

"""LangChain behaves like the CLI: a rerun embeds nothing stored, and a CLI-built index reads back through
``langchain_chroma.Chroma`` + ``VLM2VecRetriever`` (the store layer writes a caption per item)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from langchain_chroma import Chroma
from langchain_core.vectorstores import InMemoryVectorStore

import mediafixtures
from langchain_vlm2vec import (
    VLM2VecEmbeddings,
    VLM2VecPDFLoader,
    VLM2VecRetriever,
    VLM2VecVideoLoader,
    add_media_documents,
)
from vlm2vec_core.index.indexer import index_paths
from vlm2vec_core.index.store import ChromaStore


class _Spy:
    """Counts how many documents reach ``embed_media_documents`` (the real method still runs)."""

    def __init__(self, emb: VLM2VecEmbeddings, monkeypatch: pytest.MonkeyPatch) -> None:
        self.embedded = 0
        real = emb.embed_media_documents

        def counting(documents: Any) -> Any:
            self.embedded += len(documents)
            return real(documents)

        monkeypatch.setattr(emb, "embed_media_documents", counting)


def _chroma(client: Any, name: str, emb: VLM2VecEmbeddings) -> Chroma:
    return Chroma(
        client=client,
        collection_name=name,
        embedding_function=emb,
        collection_configuration={"hnsw": {"space": "cosine"}},
    )


@pytest.fixture
def emb(tiny_encoder: Any) -> VLM2VecEmbeddings:
    return VLM2VecEmbeddings(encoder=tiny_encoder)


def test_a_rerun_embeds_and_writes_nothing_stored(
    emb: VLM2VecEmbeddings, media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = VLM2VecPDFLoader(media / "report.pdf", cache_dir=tmp_path / "c", dpi=72).load()
    clips = VLM2VecVideoLoader(media / "talk.mp4", clip_seconds=1.0, cache_dir=tmp_path / "c").load()
    store = _chroma(chromadb.PersistentClient(path=str(tmp_path / "db")), "docs", emb)
    spy = _Spy(emb, monkeypatch)
    assert add_media_documents(store, pages[:2]) == [d.id for d in pages[:2]]
    assert spy.embedded == 2
    # the rerun over everything embeds only what is new, and returns only the ids it wrote
    assert add_media_documents(store, pages + clips, batch_size=2) == [d.id for d in pages[2:] + clips]
    assert spy.embedded == 2 + 1 + len(clips)
    assert add_media_documents(store, pages + clips) == []
    assert spy.embedded == 2 + 1 + len(clips)
    assert store._collection.count() == len(pages) + len(clips)
    # forced: re-embedded and overwritten in place
    assert add_media_documents(store, pages, skip_existing=False) == [d.id for d in pages]
    assert spy.embedded == 2 + 1 + len(clips) + len(pages)
    assert store._collection.count() == len(pages) + len(clips)


def test_a_rerun_skips_stored_ids_in_other_stores_and_given_ids(
    emb: VLM2VecEmbeddings, media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = VLM2VecPDFLoader(media / "report.pdf", cache_dir=tmp_path / "c", dpi=72).load()
    store = InMemoryVectorStore(emb)
    spy = _Spy(emb, monkeypatch)
    mine = ["p1", "p2", "p3"]
    assert add_media_documents(store, pages[:1], ids=mine[:1]) == ["p1"]
    assert add_media_documents(store, pages, ids=mine) == ["p2", "p3"]
    assert spy.embedded == 3
    assert sorted(store.store) == mine


@pytest.fixture
def cli_index(tiny_encoder: Any, media: Path, tmp_path: Path) -> tuple[ChromaStore, Path]:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("report.pdf", "talk.mp4"):
        (folder / name).write_bytes((media / name).read_bytes())
    mediafixtures.make_image(folder / "photo.png", size=(64, 48))
    store = ChromaStore.open(db=tmp_path / "db")
    report = index_paths([folder], tiny_encoder, store, cache_dir=tmp_path / "cache", dpi=72, clip_seconds=1.0)
    assert not report.errors
    return store, folder


def test_a_cli_built_index_reads_back_through_langchain_chroma(
    cli_index: tuple[ChromaStore, Path], emb: VLM2VecEmbeddings, tiny_encoder: Any
) -> None:
    store, folder = cli_index
    total = store.count()
    assert total == 3 + 3 + 1  # pages, clips, the image
    chroma = _chroma(store.client, store.name, emb)  # the CLI's collection, as LangChain users open it
    hits = VLM2VecRetriever(vectorstore=chroma, k=total).invoke("a red circle")
    assert len(hits) == total  # was [] (no documents stored)
    captions = {h.page_content for h in hits}
    assert captions == {
        "report.pdf p.1",
        "report.pdf p.2",
        "report.pdf p.3",
        "talk.mp4 0:00-0:01",
        "talk.mp4 0:01-0:02",
        "talk.mp4 0:02-0:03",
        "photo.png",
    }
    # the same hits in the same order as the CLI's own search, with the same cosine scores
    direct = store.query(np.asarray(tiny_encoder.encode_queries(["a red circle"], task="visdoc")[0]), total)
    assert [h.id for h in hits] == [h.id for h in direct]
    np.testing.assert_allclose([h.metadata["score"] for h in hits], [h.score for h in direct], atol=1e-4)
    page = next(h for h in hits if h.page_content == "report.pdf p.2")
    assert page.metadata["reference"] == f"{(folder / 'report.pdf').resolve()}#page=2"
    assert (
        VLM2VecRetriever(vectorstore=chroma, k=2, search_kwargs={"filter": {"kind": "clip"}})
        .invoke("x")[0]
        .page_content.startswith("talk.mp4 ")
    )


def test_the_loaders_skip_what_the_cli_stored(
    cli_index: tuple[ChromaStore, Path], emb: VLM2VecEmbeddings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, folder = cli_index
    chroma = _chroma(store.client, store.name, emb)
    pages = VLM2VecPDFLoader(folder / "report.pdf", cache_dir=tmp_path / "c2", dpi=72).load()
    spy = _Spy(emb, monkeypatch)
    assert add_media_documents(chroma, pages) == []  # same content ids as the CLI's
    assert spy.embedded == 0 and store.count() == 7

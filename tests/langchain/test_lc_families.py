"""The LangChain adapter follows the model family: options reach the encoder, Chroma records and refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chromadb
import pytest
from langchain_chroma import Chroma

from langchain_vlm2vec import (
    VLM2VecEmbeddings,
    VLM2VecPDFLoader,
    VLM2VecRetriever,
    VLM2VecVideoLoader,
    add_media_documents,
    check_vectorstore,
)
from vlm2vec_core import FakeEncoder
from vlm2vec_core.families import FAMILIES
from vlm2vec_core.index.store import IndexMismatch, read_signature


def test_family_and_truncation_reach_the_encoder() -> None:
    emb = VLM2VecEmbeddings("Qwen/Qwen3-VL-Embedding-2B", family="qwen3-vl-embedding", truncate_dim=1024)
    assert (emb.encoder.family.name, emb.encoder.truncate_dim) == ("qwen3-vl-embedding", 1024)  # built, not loaded
    with pytest.raises(ValueError, match="not both"):
        VLM2VecEmbeddings(encoder=FakeEncoder(), family="gme")


def _chroma(client: Any, encoder: FakeEncoder) -> Chroma:
    return Chroma(
        client=client,
        collection_name="pages",
        embedding_function=VLM2VecEmbeddings(encoder=encoder),
        collection_configuration={"hnsw": {"space": "cosine"}},
    )


def test_a_chroma_store_records_the_model_and_refuses_another_family(media: Path, tmp_path: Path) -> None:
    pages = VLM2VecPDFLoader(media / "report.pdf", dpi=36, cache_dir=tmp_path / "cache").load()
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    store = _chroma(client, FakeEncoder(32, model_name="VLM2Vec/VLM2Vec-V2.0"))
    add_media_documents(store, pages[:2])
    recorded = read_signature(store._collection.metadata)
    assert recorded == {"family": "vlm2vec-v2", "model": "VLM2Vec/VLM2Vec-V2.0", "dim": 32, "truncate_dim": 0}
    add_media_documents(_chroma(client, FakeEncoder(32, model_name="VLM2Vec/VLM2Vec-V2.0")), pages[2:])  # same
    gme = _chroma(client, FakeEncoder(32, family="gme", model_name="gme-2b"))
    with pytest.raises(IndexMismatch, match=r"holds VLM2Vec-V2 vectors .* but this model makes GME \(Qwen2-VL\)"):
        add_media_documents(gme, pages)
    assert store._collection.count() == 3  # nothing of GME's went in
    with pytest.raises(IndexMismatch, match="two model families do not mix"):
        VLM2VecRetriever(vectorstore=gme).invoke("a red circle")
    with pytest.raises(IndexMismatch, match="truncated to another size"):
        check_vectorstore(_chroma(client, FakeEncoder(64, truncate_dim=32)))
    assert len(VLM2VecRetriever(vectorstore=store, k=2).invoke("a red circle")) == 2


def test_the_clip_loader_samples_as_the_encoders_family(media: Path) -> None:
    gme = VLM2VecVideoLoader(media / "talk.mp4", clip_seconds=1.0, encoder=FakeEncoder(family="gme"))
    sampler = gme._item_options()["sampler"]
    assert [sampler(n) for n in (1, 10, 100)] == [FAMILIES["gme"].sampler(8)(n) for n in (1, 10, 100)]
    assert len(sampler(10)) == 1
    assert "sampler" not in VLM2VecVideoLoader(media / "talk.mp4")._item_options()  # VLM2Vec's, 8 frames
    docs = gme.load()
    assert len(docs) == 3 and all(Path(d.metadata["image_path"]).is_file() for d in docs)

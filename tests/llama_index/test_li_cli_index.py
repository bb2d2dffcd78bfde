"""A CLI-built index (vlm2vec_core.index.indexer into the store layer's Chroma) read back through LlamaIndex's
ChromaVectorStore: the stored captions are the nodes' text, the metadata says where each hit is."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core import VectorStoreIndex
from llama_index.vector_stores.chroma import ChromaVectorStore

import mediafixtures
from llama_index.embeddings.vlm2vec import VLM2VecEmbedding
from vlm2vec_core.index.indexer import index_paths
from vlm2vec_core.index.store import ChromaStore


def test_a_cli_built_index_reads_back_through_chroma_vector_store(
    tiny_encoder: Any, media: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copy(media / "report.pdf", folder / "report.pdf")
    mediafixtures.make_image(folder / "photo.png", size=(64, 48))
    store = ChromaStore.open(db=tmp_path / "db")
    assert not index_paths([folder], tiny_encoder, store, cache_dir=tmp_path / "cache", dpi=72).errors
    assert store.count() == 4

    vector_store = ChromaVectorStore(chroma_collection=store.items)
    index = VectorStoreIndex.from_vector_store(vector_store, embed_model=VLM2VecEmbedding(encoder=tiny_encoder))
    hits = index.as_retriever(similarity_top_k=4).retrieve("a red circle")
    assert sorted(h.node.get_content() for h in hits) == [
        "photo.png",
        "report.pdf p.1",
        "report.pdf p.2",
        "report.pdf p.3",
    ]
    direct = store.query(np.asarray(tiny_encoder.encode_queries(["a red circle"], task="visdoc")[0]), 4)
    assert [h.node.node_id for h in hits] == [h.id for h in direct]  # the CLI's ranking
    page = next(h.node for h in hits if h.node.get_content() == "report.pdf p.3")
    assert page.metadata["reference"] == f"{(folder / 'report.pdf').resolve()}#page=3"
    assert page.metadata["kind"] == "page"

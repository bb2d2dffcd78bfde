"""SearchService: the search every app (CLI, page, MCP) goes through; real Chroma, the tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mediafixtures import make_image, make_pdf
from vlm2vec_core.apps.service import SearchService
from vlm2vec_core.index.indexer import index_paths, search
from vlm2vec_core.index.store import ChromaStore
from vlm2vec_core.rerank.fake import FakeReranker


@pytest.fixture
def indexed(tmp_path: Path, tiny_encoder):
    docs = tmp_path / "docs"
    (docs / "a").mkdir(parents=True)
    (docs / "b").mkdir()
    make_pdf(docs / "a" / "one.pdf", 2, seed=1)
    make_pdf(docs / "b" / "two.pdf", 2, seed=2)
    make_image(docs / "b" / "pic.png", seed=3)
    store = ChromaStore.open(db=tmp_path / "db")
    report = index_paths([docs], tiny_encoder, store, cache_dir=tmp_path / "cache")
    assert not report.errors
    return docs, store


def test_text_search_is_the_indexer_search(indexed, tiny_encoder):
    _docs, store = indexed
    service = SearchService(tiny_encoder, store)
    hits = service.search("quarterly revenue", k=3)
    expected = search("quarterly revenue", tiny_encoder, store, k=3)
    assert [h.id for h in hits] == [h.id for h in expected]
    assert np.allclose([h.score for h in hits], [h.score for h in expected])


def test_image_query_finds_the_same_picture_first(indexed, tiny_encoder):
    docs, store = indexed
    service = SearchService(tiny_encoder, store)
    hits = service.search(image=docs / "b" / "pic.png", k=5, kinds=["image"])
    assert hits and hits[0].metadata["file_name"] == "pic.png"
    with_text = service.search("a picture", image=(docs / "b" / "pic.png").read_bytes(), k=2)
    assert len(with_text) == 2


def test_within_a_folder_or_file(indexed, tiny_encoder):
    docs, store = indexed
    service = SearchService(tiny_encoder, store)
    hits = service.search("page", k=10, within=[docs / "a"])
    assert hits and {h.metadata["file_name"] for h in hits} == {"one.pdf"}
    only_file = service.search("page", k=10, within=[docs / "b" / "two.pdf"])
    assert {h.metadata["file_name"] for h in only_file} == {"two.pdf"}
    assert service.search("page", within=[docs / "nowhere"]) == []
    assert service.sources_under([docs]) == sorted(r.source for r in store.files())


def test_rerank_is_used_when_configured_and_refused_without(indexed, tiny_encoder):
    _docs, store = indexed
    plain = SearchService(tiny_encoder, store)
    with pytest.raises(ValueError, match="no reranker"):
        plain.search("x", rerank=True)
    service = SearchService(tiny_encoder, store, reranker=FakeReranker(), candidates=5)
    hits = service.search("quarterly revenue", k=3)
    assert len(hits) == 3 and all(h.rerank_score is not None for h in hits)
    assert [h.rerank_score for h in hits] == sorted((h.rerank_score for h in hits), reverse=True)
    assert all(h.rerank_score is None for h in service.search("quarterly revenue", k=3, rerank=False))


def test_bad_queries(indexed, tiny_encoder):
    _docs, store = indexed
    service = SearchService(tiny_encoder, store)
    with pytest.raises(ValueError, match="text query, an image query"):
        service.search("  ")
    with pytest.raises(ValueError, match="unknown type"):
        service.search("x", kinds=["slide"])
    from vlm2vec_core.errors import InputError

    with pytest.raises(InputError, match="query image"):
        service.search(image=b"not an image")
    info = service.info()
    assert info["files"] == 3 and info["items"] == 5 and info["signature"]["dim"] == tiny_encoder.dim

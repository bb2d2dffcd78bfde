"""A collection records what its vectors are (family, model, dimension, truncation) and refuses other ones."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

chromadb = pytest.importorskip("chromadb")

from vlm2vec_core import FakeEncoder  # noqa: E402
from vlm2vec_core.families import vector_signature  # noqa: E402
from vlm2vec_core.index.store import (  # noqa: E402
    ChromaStore,
    DimensionMismatch,
    IndexMismatch,
    check_collection,
    read_signature,
)


def _fill(store: ChromaStore, encoder: FakeEncoder, n: int = 2) -> None:
    store.check_signature(vector_signature(encoder))
    vectors = encoder.encode_documents([f"text {i}" for i in range(n)])
    store.upsert([f"id{i}" for i in range(n)], vectors, [{"kind": "image"} for _ in range(n)])


def test_the_signature_is_recorded_on_first_write_and_survives_a_reopen(tmp_path: Path) -> None:
    store = ChromaStore.open(db=tmp_path / "db")
    assert store.signature() is None
    _fill(store, FakeEncoder(64, family="gme", model_name="Alibaba-NLP/gme-Qwen2-VL-2B-Instruct"))
    expected = {"family": "gme", "model": "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct", "dim": 64, "truncate_dim": 0}
    assert store.signature() == expected
    again = ChromaStore(chromadb.PersistentClient(path=str(tmp_path / "db")))
    assert again.signature() == expected
    assert again.items.metadata["created_by"] == "vlm2vec"  # what was there is kept
    assert again.items.configuration["hnsw"]["space"] == "cosine"


def test_another_family_of_the_same_dimension_is_refused(tmp_path: Path) -> None:
    store = ChromaStore.open(db=tmp_path / "db")
    _fill(store, FakeEncoder(64, model_name="VLM2Vec/VLM2Vec-V2.0"))
    gme = FakeEncoder(64, family="gme", model_name="Alibaba-NLP/gme-Qwen2-VL-2B-Instruct")
    with pytest.raises(IndexMismatch) as caught:
        store.check_signature(vector_signature(gme))
    message = str(caught.value)
    assert "collection 'vlm2vec' holds VLM2Vec-V2 vectors of VLM2Vec/VLM2Vec-V2.0 (64-d)" in message
    assert "this model makes GME (Qwen2-VL) vectors of Alibaba-NLP/gme-Qwen2-VL-2B-Instruct (64-d)" in message
    assert "--model VLM2Vec/VLM2Vec-V2.0 --family vlm2vec-v2" in message
    assert "another --collection or --db" in message
    assert isinstance(caught.value, DimensionMismatch) and isinstance(caught.value, ValueError)
    assert caught.value.held["family"] == "vlm2vec-v2" and caught.value.made["family"] == "gme"
    assert store.signature()["family"] == "vlm2vec-v2"  # unchanged


def test_another_truncation_of_the_same_dimension_is_refused(tmp_path: Path) -> None:
    store = ChromaStore.open(db=tmp_path / "db")
    family = "qwen3-vl-embedding"
    _fill(store, FakeEncoder(64, family=family, model_name="big", truncate_dim=32))
    with pytest.raises(IndexMismatch, match=r"truncated to 32-d\).*truncated to another size.*--truncate-dim 32"):
        store.check_signature(vector_signature(FakeEncoder(32, family=family, model_name="small")))


def test_another_dimension_is_refused_as_before(tmp_path: Path) -> None:
    store = ChromaStore.open(db=tmp_path / "db")
    _fill(store, FakeEncoder(64))
    with pytest.raises(DimensionMismatch, match="holds 64-dimensional vectors but this model makes 8"):
        store.check_signature(vector_signature(FakeEncoder(8)))
    with pytest.raises(DimensionMismatch, match="another model"):
        store.check_dim(8)
    store.check_dim(64)


def test_the_same_signature_is_accepted_and_another_checkpoint_id_only_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ChromaStore.open(db=tmp_path / "db")
    _fill(store, FakeEncoder(64, model_name="/models/VLM2Vec-V2.0"))
    with caplog.at_level(logging.WARNING, logger="vlm2vec_core"):
        store.check_signature(vector_signature(FakeEncoder(64, model_name="/models/VLM2Vec-V2.0")))
        assert caplog.records == []
        _fill(store, FakeEncoder(64, model_name="VLM2Vec/VLM2Vec-V2.0"), n=3)
    (warning,) = caplog.records
    assert "/models/VLM2Vec-V2.0" in warning.getMessage() and "VLM2Vec/VLM2Vec-V2.0" in warning.getMessage()
    assert store.count() == 3 and store.signature()["model"] == "/models/VLM2Vec-V2.0"  # the first one stays


def test_an_empty_collection_takes_whatever_comes(tmp_path: Path) -> None:
    store = ChromaStore.open(db=tmp_path / "db")
    store.check_signature(vector_signature(FakeEncoder(64)))
    store.check_signature(vector_signature(FakeEncoder(32, family="gme")))  # nothing stored yet: no conflict
    assert store.signature() == {"family": "gme", "model": "fake", "dim": 32, "truncate_dim": 0}


def test_a_collection_from_before_signatures_is_checked_on_its_dimension_then_recorded(tmp_path: Path) -> None:
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    cosine = {"hnsw": {"space": "cosine"}}
    old = client.create_collection("vlm2vec", embedding_function=None, metadata={"by": "x"}, configuration=cosine)
    old.add(ids=["a"], embeddings=np.ones((1, 64), np.float32))
    store = ChromaStore(client)
    assert store.signature() is None
    with pytest.raises(DimensionMismatch, match="holds 64-dimensional vectors but this model makes 8"):
        store.check_signature(vector_signature(FakeEncoder(8)))
    assert store.signature() is None
    store.check_signature(vector_signature(FakeEncoder(64)))
    assert store.signature() == {"family": "vlm2vec-v2", "model": "fake", "dim": 64, "truncate_dim": 0}


def test_any_chroma_collection_even_one_with_legacy_hnsw_metadata(tmp_path: Path) -> None:
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    col = client.create_collection("legacy", embedding_function=None, metadata={"hnsw:space": "cosine", "mine": 1})
    check_collection(col, FakeEncoder(16))  # an encoder stands for its signature
    assert read_signature(col.metadata) == {"family": "vlm2vec-v2", "model": "fake", "dim": 16, "truncate_dim": 0}
    assert col.metadata["mine"] == 1
    col.add(ids=["a"], embeddings=np.ones((1, 16), np.float32))
    reopened = chromadb.PersistentClient(path=str(tmp_path / "db")).get_collection("legacy")
    assert reopened.configuration["hnsw"]["space"] == "cosine"  # the distance did not move
    with pytest.raises(IndexMismatch, match="collection 'legacy' holds VLM2Vec-V2 vectors of fake"):
        check_collection(reopened, FakeEncoder(16, family="unime-v2"))

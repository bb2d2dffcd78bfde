"""The chromadb EmbeddingFunction: same vectors as the encoder, queries on the query side, config round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mediafixtures

chromadb = pytest.importorskip("chromadb")

from vlm2vec_core import FakeEncoder, Input, VLM2VecEncoder, video_clips  # noqa: E402
from vlm2vec_core.index.embedding_function import VLM2VecEmbeddingFunction  # noqa: E402


def test_same_vectors_as_the_encoder(tiny_encoder: VLM2VecEncoder, tmp_path: Path):
    video = mediafixtures.make_video(tmp_path / "talk.mp4", seconds=2.0, fps=10)
    clip = list(video_clips(video, clip_seconds=1.0))[1]
    image = np.asarray(Image.new("RGB", (90, 60), (10, 120, 200)))
    ef = VLM2VecEmbeddingFunction(encoder=tiny_encoder)
    reference = f"{video}#t={clip.start:g},{clip.end:g}"
    docs = ef(["a page about revenue", reference])
    np.testing.assert_allclose(docs[0], tiny_encoder.encode_documents(["a page about revenue"])[0], atol=1e-5)
    np.testing.assert_allclose(docs[1], tiny_encoder.encode_documents([Input(video=clip)], task="moment")[0], atol=1e-5)
    np.testing.assert_allclose(ef([image])[0], tiny_encoder.encode_documents([Image.fromarray(image)])[0], atol=1e-5)
    np.testing.assert_allclose(ef.embed_query(["revenue"])[0], tiny_encoder.encode_queries(["revenue"])[0], atol=1e-5)
    assert ef(["missing.mp4#t=1,2"])[0].shape == (64,)  # not an existing video: plain text


def test_in_a_real_chroma_collection(tiny_model_dir: Path, tiny_encoder: VLM2VecEncoder, tmp_path: Path):
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    ef = VLM2VecEmbeddingFunction(str(tiny_model_dir), encoder=tiny_encoder)
    images = [np.asarray(Image.new("RGB", (80 + 10 * i, 60), (40 * i, 90, 160))) for i in range(3)]
    col = client.create_collection("docs", embedding_function=ef, configuration={"hnsw": {"space": "cosine"}})
    col.add(ids=["t1", "t2"], documents=["quarterly revenue table", "team photo at the lake"])
    col.add(ids=["i0", "i1", "i2"], images=images)
    assert col.count() == 5
    found = col.query(query_images=[images[1]], n_results=1)
    assert found["ids"][0] == ["i1"]
    texts = col.query(query_texts=["quarterly revenue table"], n_results=5, include=["distances"])
    query_vec = tiny_encoder.encode_queries(["quarterly revenue table"])[0]
    stored = col.get(ids=["t1"], include=["embeddings"])["embeddings"][0]
    expected_distance = 1 - float(np.dot(query_vec, stored))
    position = texts["ids"][0].index("t1")
    assert texts["distances"][0][position] == pytest.approx(expected_distance, abs=1e-4)  # embed_query was used
    # the collection remembers its embedding function by name and config
    again = chromadb.PersistentClient(path=str(tmp_path / "db")).get_collection("docs")
    rebuilt = again.configuration["embedding_function"]
    assert isinstance(rebuilt, VLM2VecEmbeddingFunction)
    assert rebuilt.get_config()["model"] == str(tiny_model_dir) and rebuilt.task is None


def test_family_and_truncation_are_in_the_config_and_reach_the_encoder(tmp_path: Path):
    ef = VLM2VecEmbeddingFunction("Qwen/Qwen3-VL-Embedding-2B", family="qwen3-vl-embedding", truncate_dim=1024)
    config = ef.get_config()
    assert (config["family"], config["truncate_dim"]) == ("qwen3-vl-embedding", 1024)
    rebuilt = VLM2VecEmbeddingFunction.build_from_config(config)
    assert (rebuilt.family, rebuilt.truncate_dim) == ("qwen3-vl-embedding", 1024)
    encoder = rebuilt.encoder  # built, not loaded
    assert (encoder.family.name, encoder.truncate_dim) == ("qwen3-vl-embedding", 1024)
    injected = VLM2VecEmbeddingFunction(encoder=FakeEncoder(16, family="gme", truncate_dim=8))
    assert (injected.get_config()["family"], injected.get_config()["truncate_dim"]) == ("gme", 8)
    with pytest.raises(ValueError, match="not with encoder="):
        VLM2VecEmbeddingFunction(encoder=FakeEncoder(), family="gme")


def test_a_collection_records_the_model_and_refuses_another_family(tmp_path: Path):
    from vlm2vec_core.index.store import IndexMismatch

    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    ef = VLM2VecEmbeddingFunction(encoder=FakeEncoder(32, model_name="VLM2Vec/VLM2Vec-V2.0"))
    col = client.create_collection("docs", embedding_function=ef, configuration={"hnsw": {"space": "cosine"}})
    ef.check_collection(col)
    col.add(ids=["t1"], documents=["quarterly revenue table"])
    assert ef.signature() == {"family": "vlm2vec-v2", "model": "VLM2Vec/VLM2Vec-V2.0", "dim": 32, "truncate_dim": 0}
    ef.check_collection(client.get_collection("docs"))  # the same model: fine
    gme = VLM2VecEmbeddingFunction(encoder=FakeEncoder(32, family="gme", model_name="gme-2b"))
    with pytest.raises(IndexMismatch, match=r"holds VLM2Vec-V2 vectors .* but this model makes GME \(Qwen2-VL\)"):
        gme.check_collection(client.get_collection("docs", embedding_function=gme))

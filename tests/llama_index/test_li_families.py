"""The LlamaIndex adapter follows the model family: options reach the encoder, the Chroma index records and
refuses another family, clip readers sample as the family does."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core.schema import TextNode

from llama_index.embeddings.vlm2vec import VLM2VecEmbedding, open_chroma_index
from llama_index.readers.vlm2vec import VideoClipReader, file_extractor
from vlm2vec_core import FakeEncoder
from vlm2vec_core.families import FAMILIES
from vlm2vec_core.index.store import IndexMismatch, read_signature


def test_family_and_truncation_reach_the_encoder() -> None:
    embed = VLM2VecEmbedding("Qwen/Qwen3-VL-Embedding-2B", family="qwen3-vl-embedding", truncate_dim=1024)
    assert (embed.encoder.family.name, embed.encoder.truncate_dim) == ("qwen3-vl-embedding", 1024)
    with pytest.raises(ValueError, match="not with encoder="):
        VLM2VecEmbedding(encoder=FakeEncoder(), family="gme")


def test_the_chroma_index_records_the_model_and_refuses_another_family(tmp_path: Path) -> None:
    index = open_chroma_index(tmp_path / "chroma", VLM2VecEmbedding(encoder=FakeEncoder(32, model_name="m")))
    index.insert_nodes([TextNode(text="quarterly revenue", id_="t1")])
    expected = {"family": "vlm2vec-v2", "model": "m", "dim": 32, "truncate_dim": 0}
    assert read_signature(index.vector_store.client.metadata) == expected
    assert read_signature(index.image_vector_store.client.metadata) == expected  # empty: recorded on open
    again = open_chroma_index(tmp_path / "chroma", VLM2VecEmbedding(encoder=FakeEncoder(32, model_name="m")))
    assert again.vector_store.client.count() == 1
    with pytest.raises(IndexMismatch, match=r"collection 'vlm2vec_text' holds VLM2Vec-V2 vectors of m \(32-d\)"):
        open_chroma_index(tmp_path / "chroma", VLM2VecEmbedding(encoder=FakeEncoder(32, family="gme")))


def test_clip_readers_sample_as_the_encoders_family() -> None:
    encoder = FakeEncoder(family="gme")
    sampler = VideoClipReader(encoder=encoder)._options()["sampler"]
    assert [sampler(n) for n in (1, 10, 100)] == [FAMILIES["gme"].sampler(8)(n) for n in (1, 10, 100)]
    assert "sampler" not in VideoClipReader()._options()
    assert file_extractor(encoder=encoder)[".mp4"].encoder is encoder  # type: ignore[attr-defined]

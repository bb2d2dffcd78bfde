"""The README's snippet over a folder of PDFs, a video, images and a text, run twice: images are pictures (not
their bytes as text), and the second run embeds and stores nothing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import SimpleDirectoryReader
from llama_index.core.schema import ImageNode

import mediafixtures
from llama_index.embeddings.vlm2vec import VLM2VecEmbedding, content_id, index_documents, open_chroma_index
from llama_index.readers.vlm2vec import file_extractor


def _run(folder: Path, db: Path, cache: Path, encoder: Any) -> tuple[Any, list[str]]:
    """What the README shows, as a fresh run would do it (new embedding, reader and index objects)."""
    embed = VLM2VecEmbedding(encoder=encoder, dpi=72)
    docs = SimpleDirectoryReader(str(folder), file_extractor=file_extractor(cache_dir=cache, dpi=72)).load_data()
    index = open_chroma_index(db, embed)
    return index, index_documents(index, docs)


@pytest.fixture
def folder(media: Path, tmp_path: Path) -> Path:
    out = tmp_path / "docs"
    out.mkdir()
    shutil.copy(media / "memo.pdf", out / "memo.pdf")  # 2 pages
    mediafixtures.make_video(out / "talk.mp4", seconds=2.0, fps=5)  # one clip (clips of 10 s)
    mediafixtures.make_image(out / "photo.png", size=(64, 48), seed=1)
    mediafixtures.make_image(out / "shot.jpg", size=(48, 64), seed=2)
    (out / "notes.txt").write_text("The quarterly revenue grew in the third quarter.")
    return out


def test_a_second_run_embeds_and_stores_nothing(folder: Path, tmp_path: Path, tiny_encoder: Any) -> None:
    db, cache = tmp_path / "chroma", tmp_path / "cache"
    index, first = _run(folder, db, cache, tiny_encoder)
    images, texts = index.image_vector_store.client, index.vector_store.client
    assert images.count() == 2 + 1 + 2  # pages, the clip, the two images
    assert texts.count() == 1  # notes.txt
    assert len(first) == 6
    stored = images.get(include=["metadatas"])["metadatas"]
    assert sorted(m["kind"] for m in stored) == ["clip", "image", "image", "page", "page"]
    # the images are ImageNodes of the picture, not TextNodes of the file's bytes
    photo = index.as_retriever(image_similarity_top_k=1).image_to_image_retrieve(str(folder / "photo.png"))[0]
    assert isinstance(photo.node, ImageNode) and photo.node.metadata["file_name"] == "photo.png"
    assert photo.score == pytest.approx(1.0, abs=1e-3)
    assert "PNG" not in (texts.get(include=["documents"])["documents"] or [""])[0]

    again_index, again = _run(folder, db, cache, tiny_encoder)
    assert again == []
    assert again_index.image_vector_store.client.count() == 5 and again_index.vector_store.client.count() == 1

    (folder / "notes.txt").write_text("Edited: revenue fell.")
    _, edited = _run(folder, db, cache, tiny_encoder)
    assert len(edited) == 1 and edited[0].startswith("text-")  # a new text, a new id (the old one stays)


def test_text_ids_come_from_their_content(folder: Path) -> None:
    read = lambda: SimpleDirectoryReader(str(folder), required_exts=[".txt"]).load_data()  # noqa: E731
    one, two = read()[0], read()[0]
    assert one.id_ != two.id_  # LlamaIndex's own ids are random
    assert content_id(one) == content_id(two) and content_id(one).startswith("text-")
    (folder / "copy.txt").write_text((folder / "notes.txt").read_text())
    assert len({content_id(d) for d in read()}) == 1  # the same text in two files is stored once

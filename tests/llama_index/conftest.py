"""Fixtures of the LlamaIndex adapter's tests: the shared tiny encoder wrapped once, and a small media folder."""

from __future__ import annotations

from pathlib import Path

import pytest

import mediafixtures

PAGE_SIZE = (240, 320)  # points: small pages keep the tiny model fast


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two PDFs (3 and 2 pages, all different) and a 3-second video (three 1-second clips)."""
    folder = tmp_path_factory.mktemp("li-media")
    mediafixtures.make_pdf(folder / "report.pdf", n_pages=3, size=PAGE_SIZE, seed=0)
    mediafixtures.make_pdf(folder / "memo.pdf", n_pages=2, size=PAGE_SIZE, seed=7)
    mediafixtures.make_video(folder / "talk.mp4", seconds=3.0, fps=10)
    return folder


@pytest.fixture
def embed(tiny_encoder):  # type: ignore[no-untyped-def]
    from llama_index.embeddings.vlm2vec import VLM2VecEmbedding

    return VLM2VecEmbedding(encoder=tiny_encoder)

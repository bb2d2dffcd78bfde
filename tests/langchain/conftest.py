"""Fixtures for the LangChain adapter: media files, embeddings on the tiny checkpoint, a filled Chroma store."""

from __future__ import annotations

import inspect
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document

import mediafixtures

pytest.importorskip("langchain_chroma")


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Generator[None, Any, None]:
    """Mark the coroutine tests collected here for pytest-asyncio (runs just before its own collection hook).

    The langchain-tests suites write their async tests as bare ``async def`` (partner packages run
    pytest-asyncio in auto mode); the workspace runs it in strict mode, where unmarked ones would not run.
    """
    outcome = yield
    if not inspect.iscoroutinefunction(obj):
        return
    result = outcome.get_result()
    for node in result if isinstance(result, list) else [result]:
        if isinstance(node, pytest.Function) and node.get_closest_marker("asyncio") is None:
            node.add_marker(pytest.mark.asyncio)


@dataclass
class Indexed:
    """A Chroma store holding a 3-page PDF and a 3-clip video, and what went into it."""

    store: object
    embeddings: object
    pages: list[Document]
    clips: list[Document]
    pdf: Path
    video: Path


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lc-media")
    mediafixtures.make_pdf(root / "report.pdf", n_pages=3, size=(200, 260))
    mediafixtures.make_video(root / "talk.mp4", seconds=3.0, fps=10)
    return root


@pytest.fixture(scope="session")
def lc_embeddings(tiny_encoder):  # type: ignore[no-untyped-def]
    from langchain_vlm2vec import VLM2VecEmbeddings

    return VLM2VecEmbeddings(encoder=tiny_encoder)


@pytest.fixture(scope="session")
def indexed(media: Path, lc_embeddings, tmp_path_factory: pytest.TempPathFactory) -> Indexed:  # type: ignore[no-untyped-def]
    import chromadb
    from langchain_chroma import Chroma

    from langchain_vlm2vec import VLM2VecPDFLoader, VLM2VecVideoLoader, add_media_documents

    cache = tmp_path_factory.mktemp("lc-cache")
    pages = VLM2VecPDFLoader(media / "report.pdf", cache_dir=cache).load()
    clips = VLM2VecVideoLoader(media / "talk.mp4", clip_seconds=1.0, cache_dir=cache).load()
    client = chromadb.PersistentClient(path=str(tmp_path_factory.mktemp("lc-chroma")))
    store = Chroma(
        client=client,
        collection_name="pages_and_clips",
        embedding_function=lc_embeddings,
        collection_configuration={"hnsw": {"space": "cosine"}},
    )
    add_media_documents(store, pages + clips)
    return Indexed(store, lc_embeddings, pages, clips, media / "report.pdf", media / "talk.mp4")

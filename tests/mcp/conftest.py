"""Fixtures of the MCP tests: an index built here with the tiny checkpoint (helpers in mcphelp.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcphelp import ALL_ITEMS, GONE_PAGES, PDF_PAGES, McpIndex

from mediafixtures import make_image, make_pdf, make_video


@pytest.fixture(scope="session")
def mcp_index(tiny_model_dir: Path, tiny_encoder, tmp_path_factory: pytest.TempPathFactory) -> McpIndex:  # type: ignore[no-untyped-def]
    """A PDF, a video, an image and a PDF deleted since, under ``docs/``, indexed with the tiny checkpoint
    into an embedded Chroma."""
    from vlm2vec_core.index.indexer import index_paths
    from vlm2vec_core.index.store import ChromaStore

    tmp = tmp_path_factory.mktemp("mcp-index")
    root = tmp / "docs"
    (root / "talks").mkdir(parents=True)
    files = {
        "pdf": make_pdf(root / "report.pdf", PDF_PAGES, size=(306, 396), seed=1),
        "image": make_image(root / "photo.png", size=(320, 240), seed=5),
        "video": make_video(root / "talks" / "talk.mp4", seconds=4.0, fps=5),
        "gone": make_pdf(root / "old.pdf", GONE_PAGES, size=(306, 396), seed=7),
    }
    store = ChromaStore.open(db=tmp / "db")
    report = index_paths([root], tiny_encoder, store, cache_dir=tmp / "cache", dpi=72, clip_seconds=2.0)
    assert not report.errors, report.errors
    assert store.count() == ALL_ITEMS
    files["gone"].unlink()  # indexed, then deleted: its hits can show only their cached thumbnail
    return McpIndex(root.resolve(), tmp / "db", tiny_model_dir, files)

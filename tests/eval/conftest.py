"""Fixtures of the evaluation tests (helpers live in evalhelp.py: conftest modules of different folders clash)."""

from __future__ import annotations

from typing import Any

import pytest
from evalhelp import CLIP_SECONDS, DPI, PAGES, Paged, write_jsonl

from mediafixtures import make_image, make_pdf, make_video


@pytest.fixture(scope="session")
def paged(tiny_encoder: Any, tmp_path_factory: pytest.TempPathFactory) -> Paged:
    from vlm2vec_core import pdf_pages
    from vlm2vec_core.index.indexer import index_paths
    from vlm2vec_core.index.store import ChromaStore

    tmp = tmp_path_factory.mktemp("eval-paged")
    corpus = tmp / "corpus"
    corpus.mkdir()
    pdf = make_pdf(corpus / "report.pdf", PAGES, size=(200, 260))
    make_video(corpus / "talk.mp4", seconds=2.0, fps=5)
    make_image(corpus / "photo.png", seed=3)
    store = ChromaStore.open(db=tmp / "db")
    report = index_paths([corpus], tiny_encoder, store, cache_dir=tmp / "cache", dpi=DPI, clip_seconds=CLIP_SECONDS)
    assert report.errors == [] and dict(report.items) == {"page": PAGES, "clip": 2, "image": 1}
    shots = tmp / "shots"
    shots.mkdir()
    rows = []
    for page in pdf_pages(pdf, dpi=DPI):
        page.image.save(shots / f"page{page.page_number}.png")
        rows.append(
            {
                "id": f"p{page.page_number}",
                "image": f"shots/page{page.page_number}.png",
                "relevant": [f"corpus/report.pdf#page={page.page_number}"],
            }
        )
    queries = write_jsonl(tmp / "pages.jsonl", rows)
    return Paged(corpus, tmp / "db", tmp / "cache", queries, pdf)

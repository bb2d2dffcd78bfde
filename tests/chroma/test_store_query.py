"""ChromaStore.query filters by kind and by source file, alone or together, on a real embedded Chroma."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("chromadb")

from vlm2vec_core.index.store import ChromaStore

# Five items in three files, vectors at known angles from the query (1, 0, 0, 0): a-p1 is the nearest, then
# b-p1, c-img, a-c0, b-c0.
ITEMS = [
    ("a-p1", "/docs/a.pdf", "page", [1.0, 0.05, 0.0, 0.0]),
    ("b-p1", "/docs/sub/b.pdf", "page", [1.0, 0.2, 0.0, 0.0]),
    ("c-img", "/other/c.png", "image", [1.0, 0.5, 0.0, 0.0]),
    ("a-c0", "/docs/a.pdf", "clip", [1.0, 1.0, 0.0, 0.0]),
    ("b-c0", "/docs/sub/b.pdf", "clip", [1.0, 2.0, 0.0, 0.0]),
]
QUERY = np.array([1.0, 0.0, 0.0, 0.0], np.float32)


@pytest.fixture
def store(tmp_path: Path) -> ChromaStore:
    store = ChromaStore.open(db=tmp_path / "db")
    vectors = np.array([v for *_, v in ITEMS], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    metadatas = [{"kind": kind, "source": source, "file_name": Path(source).name} for _, source, kind, _ in ITEMS]
    store.upsert([i for i, *_ in ITEMS], vectors, metadatas)
    return store


def _ids(store: ChromaStore, k: int = 10, **filters: object) -> list[str]:
    return [hit.id for hit in store.query(QUERY, k, **filters)]  # type: ignore[arg-type]


def test_no_filter_returns_every_item_best_first(store: ChromaStore) -> None:
    assert _ids(store) == ["a-p1", "b-p1", "c-img", "a-c0", "b-c0"]


def test_sources_keep_those_files_only(store: ChromaStore) -> None:
    assert _ids(store, sources=["/docs/a.pdf"]) == ["a-p1", "a-c0"]
    assert _ids(store, sources=("/docs/sub/b.pdf", "/other/c.png")) == ["b-p1", "c-img", "b-c0"]
    # exact paths: a folder or a prefix is not a source
    assert _ids(store, sources=["/docs"]) == []
    assert _ids(store, sources=["/docs/a.pdf", "/nowhere.pdf"]) == ["a-p1", "a-c0"]


def test_sources_and_kinds_combine(store: ChromaStore) -> None:
    assert _ids(store, kinds=["clip"], sources=["/docs/a.pdf", "/docs/sub/b.pdf"]) == ["a-c0", "b-c0"]
    assert _ids(store, kinds=["page", "image"], sources=["/docs/sub/b.pdf", "/other/c.png"]) == ["b-p1", "c-img"]
    assert _ids(store, kinds=["page"], sources=["/other/c.png"]) == []


def test_k_counts_the_filtered_hits(store: ChromaStore) -> None:
    assert _ids(store, k=1, sources=["/docs/sub/b.pdf"]) == ["b-p1"]


def test_a_folders_sources_from_the_ledger(store: ChromaStore) -> None:
    from vlm2vec_core.index.store import FileRecord

    for _, source, *_ in ITEMS:
        store.mark_file(FileRecord(source, "d-" + Path(source).name, 1, 1.0))
    folder = "/docs/"
    under = sorted({r.source for r in store.files() if r.source.startswith(folder)})
    assert under == ["/docs/a.pdf", "/docs/sub/b.pdf"]
    assert _ids(store, sources=under) == ["a-p1", "b-p1", "a-c0", "b-c0"]


def test_an_empty_source_list_matches_nothing_and_one_string_is_refused(store: ChromaStore) -> None:
    assert _ids(store, sources=[]) == []
    assert _ids(store, kinds=["page"], sources=None) == ["a-p1", "b-p1"]
    with pytest.raises(TypeError, match="list of source paths"):
        store.query(QUERY, 3, sources="/docs/a.pdf")


def test_scores_are_cosine_similarities(store: ChromaStore) -> None:
    hit = store.query(QUERY, 1, sources=["/other/c.png"])[0]
    assert hit.score == pytest.approx(1.0 / np.sqrt(1.25), abs=1e-5)
    assert hit.metadata["source"] == "/other/c.png"


def test_each_item_is_stored_with_a_short_caption(tmp_path: Path) -> None:
    store = ChromaStore.open(db=tmp_path / "db")
    metadatas: list[dict[str, Any]] = [
        {"kind": "page", "source": "/d/report.pdf", "file_name": "report.pdf", "page": 3},
        {"kind": "clip", "source": "/d/talk.mp4", "file_name": "talk.mp4", "start_seconds": 10.0, "end_seconds": 20.0},
        {"kind": "clip", "source": "/d/talk.mp4", "start_seconds": 62.5, "end_seconds": 72.5},
        {"kind": "image", "source": "/d/photo.png", "file_name": "photo.png"},
        {"kind": "image"},
    ]
    ids = ["p", "c", "c2", "i", "bare"]
    store.upsert(ids, np.eye(5, 4, dtype=np.float32) + 0.1, metadatas)
    got = store.items.get(ids=ids, include=["documents"])
    documents = dict(zip(got["ids"], got["documents"], strict=True))
    expected = {
        "p": "report.pdf p.3",
        "c": "talk.mp4 0:10-0:20",
        "c2": "talk.mp4 1:02.5-1:12.5",
        "i": "photo.png",
        "bare": "bare",
    }
    assert documents == expected
    assert {h.id: h.label for h in store.query(QUERY, 5)} == expected

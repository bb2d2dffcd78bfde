"""index_paths in-process with the tiny checkpoint: incremental runs, changes, pruning, bad files, paths."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mediafixtures import make_image, make_pdf
from vlm2vec_core.index.indexer import index_paths, search
from vlm2vec_core.index.store import ChromaStore
from vlm2vec_core.media.documents import file_digest


class Counting:
    """Wraps an encoder and counts the documents it is asked to embed."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.embedded = 0

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)

    def encode_documents(self, inputs: Any, **kwargs: Any) -> Any:
        self.embedded += len(inputs)
        return self.encoder.encode_documents(inputs, **kwargs)

    def encode_queries(self, queries: Any, **kwargs: Any) -> Any:
        return self.encoder.encode_queries(queries, **kwargs)


@pytest.fixture
def enc(tiny_encoder: Any) -> Counting:
    return Counting(tiny_encoder)


def _index(paths: list[Path], enc: Any, store: ChromaStore, tmp: Path, **kw: Any):  # type: ignore[no-untyped-def]
    return index_paths(paths, enc, store, cache_dir=tmp / "cache", dpi=36, **kw)


def _sources(store: ChromaStore) -> Counter[str]:
    got = store.items.get(include=["metadatas"])
    return Counter(Path(m["source"]).name for m in got["metadatas"])


def test_second_run_embeds_nothing_and_a_changed_file_is_reindexed(tmp_path: Path, enc: Any) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "a.pdf", 3, size=(200, 260))
    make_pdf(docs / "b.pdf", 2, size=(200, 260), seed=1)
    make_image(docs / "c.png")
    store = ChromaStore.open(db=tmp_path / "db")

    first = _index([docs], enc, store, tmp_path)
    assert (first.files_indexed, dict(first.items), first.errors) == (3, {"page": 5, "image": 1}, [])
    assert enc.embedded == 6 and store.count() == 6

    enc.embedded = 0
    second = _index([docs], enc, store, tmp_path)
    assert enc.embedded == 0  # not a single document through the model
    assert (second.files_indexed, second.files_unchanged, sum(second.items.values())) == (0, 3, 0)
    assert "nothing new" in second.summary() and "3 unchanged file(s) skipped" in second.summary()

    make_pdf(docs / "a.pdf", 4, size=(200, 260), seed=9)  # changed: new content, one more page
    third = _index([docs], enc, store, tmp_path)
    assert enc.embedded == 4 and third.files_indexed == 1 and third.files_unchanged == 2
    assert third.pruned == 3  # the edited file's old version goes, even without --prune
    assert _sources(store) == {"a.pdf": 4, "b.pdf": 2, "c.png": 1}

    fourth = _index([docs], enc, store, tmp_path, prune=True)
    assert fourth.pruned == 0 and enc.embedded == 4
    assert _sources(store) == {"a.pdf": 4, "b.pdf": 2, "c.png": 1}
    digest = file_digest(docs / "a.pdf")
    assert {m["content_sha256"] for m in store.items.get(where={"file_name": "a.pdf"})["metadatas"]} == {digest}


def test_prune_drops_a_deleted_file_and_leaves_other_roots_alone(tmp_path: Path, enc: Any) -> None:
    docs, other = tmp_path / "docs", tmp_path / "other"
    docs.mkdir()
    other.mkdir()
    make_pdf(docs / "a.pdf", 2, size=(200, 260))
    make_pdf(docs / "gone.pdf", 3, size=(200, 260), seed=2)
    make_pdf(other / "kept.pdf", 2, size=(200, 260), seed=3)
    store = ChromaStore.open(db=tmp_path / "db")
    _index([docs, other], enc, store, tmp_path)
    assert store.count() == 7

    (docs / "gone.pdf").unlink()
    no_prune = _index([docs], enc, store, tmp_path)
    assert no_prune.pruned == 0 and store.count() == 7

    report = _index([docs], enc, store, tmp_path, prune=True)  # `other` is not among the paths: untouched
    assert report.pruned == 3
    assert _sources(store) == {"a.pdf": 2, "kept.pdf": 2}
    assert sorted(Path(r.source).name for r in store.files()) == ["a.pdf", "kept.pdf"]
    assert "3 stale item(s) pruned" in report.summary()


def test_pruning_one_of_two_identical_copies_keeps_the_other_searchable(tmp_path: Path, enc: Any) -> None:
    docs = tmp_path / "docs"
    (docs / "x").mkdir(parents=True)
    (docs / "y").mkdir()
    make_pdf(docs / "x" / "copy.pdf", 2, size=(200, 260))
    shutil.copy(docs / "x" / "copy.pdf", docs / "y" / "copy.pdf")  # same content: same ids
    store = ChromaStore.open(db=tmp_path / "db")
    _index([docs], enc, store, tmp_path)
    assert store.count() == 2

    (docs / "x" / "copy.pdf").unlink()
    _index([docs], enc, store, tmp_path, prune=True)
    assert store.count() == 2  # the surviving copy's pages are still there, under its own path
    sources = {h.metadata["source"] for h in search("a page", enc, store, k=5)}
    assert sources == {str((docs / "y" / "copy.pdf").resolve())}
    enc.embedded = 0
    again = _index([docs], enc, store, tmp_path, prune=True)
    assert (enc.embedded, again.pruned, store.count()) == (0, 0, 2)


def test_bad_files_are_reported_and_the_good_ones_indexed(tmp_path: Path, enc: Any) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "good.pdf", 2, size=(200, 260))
    (docs / "fake.pdf").write_bytes(b"%PDF-1.4\nthis is a broken pdf body")
    (docs / "zero.jpg").write_bytes(b"")
    notes = tmp_path / "notes.txt"
    notes.write_text("not media")
    store = ChromaStore.open(db=tmp_path / "db")
    report = _index([docs, notes, tmp_path / "missing.pdf"], enc, store, tmp_path)
    assert dict(report.items) == {"page": 2} and report.files_indexed == 1
    named = {Path(str(e.source)).name: str(e) for e in report.errors}
    assert set(named) == {"fake.pdf", "zero.jpg", "notes.txt", "missing.pdf"}, named
    assert "not a PDF, video or image" in named["notes.txt"]
    assert "not found" in named["missing.pdf"]
    assert all(e.reason for e in report.errors)
    assert sorted(Path(r.source).name for r in store.files()) == ["good.pdf"]  # bad files are tried again


def test_a_relative_cache_dir_still_stores_absolute_paths(tmp_path: Path, enc: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    make_pdf(Path("doc.pdf"), 2, size=(200, 260))
    store = ChromaStore.open(db=Path("db"))
    index_paths([Path("doc.pdf")], enc, store, cache_dir=Path("cache"), dpi=36)
    metas = store.items.get(include=["metadatas"])["metadatas"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    for meta in metas:
        assert Path(meta["image_path"]).is_absolute() and Path(meta["image_path"]).is_file()
        assert meta["reference"].startswith(str(tmp_path.resolve()))


def test_a_moved_folder_is_found_by_its_content_and_nothing_is_embedded_again(tmp_path: Path, enc: Any) -> None:
    old = tmp_path / "old"
    old.mkdir()
    make_pdf(old / "a.pdf", 2, size=(200, 260))
    make_image(old / "c.png")
    store = ChromaStore.open(db=tmp_path / "db")
    _index([old], enc, store, tmp_path)
    embedded = enc.embedded
    new = tmp_path / "new"
    shutil.move(old, new)
    report = _index([new], enc, store, tmp_path)
    assert enc.embedded == embedded  # the vectors stay
    assert sorted((Path(a).name, Path(b).parent.name) for a, b in report.moved) == [("a.pdf", "new"), ("c.png", "new")]
    assert report.files_unchanged == 2 and "2 moved file(s)" in report.summary()
    assert sorted(r.source for r in store.files()) == [str((new / "a.pdf").resolve()), str((new / "c.png").resolve())]
    metas = store.items.get(include=["metadatas", "documents"])
    for meta in metas["metadatas"]:
        assert meta["source"].startswith(str(new.resolve()))
        assert meta["reference"].startswith(str(new.resolve()))
        if meta["kind"] == "image":
            assert meta["image_path"] == str((new / "c.png").resolve())
    assert sorted(metas["documents"]) == ["a.pdf p.1", "a.pdf p.2", "c.png"]
    hits = search("page", enc, store, k=3)
    assert all(Path(h.metadata["source"]).exists() for h in hits)
    # a copy (the old path still there) is not a move: it is indexed as a file of its own
    shutil.copytree(new, old)
    again = _index([old], enc, store, tmp_path)
    assert not again.moved and len(store.files()) == 4


def test_prune_drops_the_entries_of_a_folder_that_is_gone(tmp_path: Path, enc: Any) -> None:
    from clihelp import run_cli, store_args

    docs, keep = tmp_path / "docs", tmp_path / "keep"
    docs.mkdir()
    keep.mkdir()
    make_image(docs / "a.png")
    make_image(keep / "b.png", seed=5)
    store = ChromaStore.open(db=tmp_path / "db")
    _index([docs, keep], enc, store, tmp_path)
    shutil.rmtree(docs)
    report = _index([docs], enc, store, tmp_path, prune=True)
    assert report.pruned == 1 and not report.errors
    assert [Path(r.source).name for r in store.files()] == ["b.png"]
    # the CLI refuses a path that is gone unless --prune has entries of it to drop
    stray = run_cli("index", tmp_path / "nowhere", *store_args(tmp_path), "--prune")
    assert stray.returncode == 2 and "no such file or folder" in stray.stderr


def test_files_that_are_not_media_are_counted_in_the_summary(tmp_path: Path, enc: Any) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    make_image(docs / "a.png")
    (docs / "notes.txt").write_text("hello")
    (docs / "sub" / "data.csv").write_text("1,2")
    (docs / ".hidden").write_text("x")
    report = _index([docs], enc, store := ChromaStore.open(db=tmp_path / "db"), tmp_path)
    assert sorted(Path(p).name for p in report.skipped) == ["data.csv", "notes.txt"]
    assert "2 file(s) skipped: not a PDF, video or image" in report.summary()
    assert not report.errors and len(store.files()) == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_an_encrypted_pdf_needs_the_password(tmp_path: Path, workers: int) -> None:
    from mediafixtures import make_encrypted_pdf
    from vlm2vec_core.encoders.fake import FakeEncoder

    docs = tmp_path / "docs"
    docs.mkdir()
    make_encrypted_pdf(docs / "secret.pdf", "s3cret", n_pages=2)
    store = ChromaStore.open(db=tmp_path / "db")
    kw: dict[str, Any] = {"cache_dir": tmp_path / "cache", "dpi": 36, "workers": workers}
    locked = index_paths([docs], FakeEncoder(), store, **kw)
    (problem,) = locked.errors
    assert "secret.pdf" in str(problem) and "--password" in str(problem)
    assert store.files() == []
    opened = index_paths([docs], FakeEncoder(), store, password="s3cret", **kw)
    assert not opened.errors and opened.items["page"] == 2

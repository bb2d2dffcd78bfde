"""Indexing on a real local Ray cluster (2 CPUs, no GPU: the actors run the tiny checkpoint on the CPU) into a real
`chroma run` server: the same items, metadata and vectors as the one-machine indexer, exactly once across runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mediafixtures import make_image, make_pdf, make_video
from vlm2vec_core.index.indexer import IndexReport, index_paths
from vlm2vec_core.index.store import ChromaStore

pytest.importorskip("ray")
from vlm2vec_core.index.distributed import index_with_ray

OPTIONS: dict[str, Any] = {"dpi": 72, "clip_seconds": 2.0, "batch_size": 2}
GOOD = ("report.pdf", "talk.mp4", "photo.png", "copy.png")
ITEMS = 3 + 2 + 1  # pages, clips (4 s in 2 s clips), the image (and its identical copy: the same item)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    docs = tmp_path_factory.mktemp("corpus")
    make_pdf(docs / "report.pdf", 3, size=(306, 396))
    make_video(docs / "talk.mp4", seconds=4.0, fps=5)
    make_image(docs / "photo.png", seed=3)
    (docs / "copy.png").write_bytes((docs / "photo.png").read_bytes())
    good = make_pdf(docs / "x.pdf", 1).read_bytes()
    (docs / "x.pdf").unlink()
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\n%" + b"\x00" * 40 + good[-200:])  # a header, then no document
    return docs


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def reference(corpus: Path, cache: Path, tiny_encoder: Any, tmp_path_factory: pytest.TempPathFactory) -> ChromaStore:
    """The one-machine indexer's store of the same files."""
    store = ChromaStore.open(db=tmp_path_factory.mktemp("reference-db"))
    report = index_paths([corpus], tiny_encoder, store, cache_dir=cache, **OPTIONS)
    assert report.files_indexed == len(GOOD) and sum(report.items.values()) == ITEMS
    return store


def ray_index(server: Any, collection: str, corpus: Path, model: Path, cache: Path, **kw: Any) -> IndexReport:
    return index_with_ray(
        [corpus], server.url, model=model, collection=collection, cache_dir=cache, **{**OPTIONS, **kw}
    )


def contents(store: ChromaStore) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
    got = store.items.get(include=["metadatas", "embeddings"])
    return {
        i: (dict(m), np.asarray(e, np.float32))
        for i, m, e in zip(got["ids"], got["metadatas"], got["embeddings"], strict=True)
    }


def ledger(store: ChromaStore) -> set[tuple[str, str, int]]:
    return {(r.source, r.digest, r.items) for r in store.files()}


def only_broken(report: IndexReport) -> None:
    assert len(report.errors) == 1, report.errors
    assert "broken.pdf" in str(report.errors[0])


def test_same_items_as_one_machine_and_a_second_run_stores_nothing(
    ray_cluster: Any, chroma_server: Any, corpus: Path, cache: Path, tiny_model_dir: Path, reference: ChromaStore
) -> None:
    report = ray_index(chroma_server, "ray", corpus, tiny_model_dir, cache)
    only_broken(report)  # reported, and the rest indexed
    assert report.files_indexed == len(GOOD)
    assert dict(report.items) == {"page": 3, "clip": 2, "image": 1}
    assert report.reused == 1  # the copy's item is the photo's, embedded once
    store = ChromaStore.open(url=chroma_server.url, collection="ray")
    assert store.signature() == reference.signature()
    ours, theirs = contents(store), contents(reference)
    assert sorted(ours) == sorted(theirs) and len(ours) == ITEMS
    for item_id, (meta, vector) in theirs.items():
        assert ours[item_id][0] == meta
        np.testing.assert_allclose(ours[item_id][1], vector, atol=1e-5)
    assert ledger(store) == ledger(reference)

    again = ray_index(chroma_server, "ray", corpus, tiny_model_dir, cache)
    assert (again.files_unchanged, sum(again.items.values()), again.reused) == (len(GOOD), 0, 0)
    only_broken(again)  # a bad file is never recorded: it is tried (and reported) again
    assert store.count() == ITEMS and ledger(store) == ledger(reference)


class Interrupt:
    """A progress bar that stops the run (as Ctrl-C would) once ``after`` items arrived."""

    def __init__(self, after: int) -> None:
        self.after, self.seen = after, 0

    def update(self, n: int) -> None:
        self.seen += n
        if self.seen >= self.after:
            raise KeyboardInterrupt

    def set_postfix_str(self, text: str) -> None:
        pass


def test_an_interrupted_run_resumes_exactly_once(
    ray_cluster: Any, chroma_server: Any, corpus: Path, cache: Path, tiny_model_dir: Path, reference: ChromaStore
) -> None:
    with pytest.raises(KeyboardInterrupt):
        ray_index(chroma_server, "resumed", corpus, tiny_model_dir, cache, rows_per_call=2, progress=Interrupt(2))
    store = ChromaStore.open(url=chroma_server.url, collection="resumed")
    stored_before, recorded_before = store.count(), len(store.files())
    assert stored_before > 0 and recorded_before < len(GOOD)  # stopped part way, some items in

    resumed = ray_index(chroma_server, "resumed", corpus, tiny_model_dir, cache)
    only_broken(resumed)
    assert resumed.files_unchanged == recorded_before
    assert resumed.files_indexed == len(GOOD) - recorded_before
    assert sum(resumed.items.values()) == ITEMS - stored_before  # what the first run stored is not embedded again
    ours, theirs = contents(store), contents(reference)
    assert sorted(ours) == sorted(theirs)  # every item, once
    for item_id, (meta, vector) in theirs.items():
        assert ours[item_id][0] == meta
        np.testing.assert_allclose(ours[item_id][1], vector, atol=1e-5)
    assert ledger(store) == ledger(reference)


def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import builtins

    real_import = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ImportError, match=r"pip install \"vlm2vec-core\[ray\]\""):
        index_with_ray([tmp_path], tmp_path / "db", model=tmp_path)


def test_remote_servers_into_the_embedded_store(
    ray_cluster: Any, served: Any, corpus: Path, cache: Path, reference: ChromaStore, tmp_path: Path
) -> None:
    """Actors that call a `vlm2vec serve` instead of loading a model; the driver writes an embedded store."""
    report = index_with_ray([corpus], tmp_path / "db", remote=served.url, cache_dir=cache, **OPTIONS)
    only_broken(report)
    assert report.files_indexed == len(GOOD)
    store = ChromaStore.open(db=tmp_path / "db")
    ours, theirs = contents(store), contents(reference)
    assert sorted(ours) == sorted(theirs)
    for item_id, (meta, vector) in theirs.items():
        assert ours[item_id][0] == meta
        np.testing.assert_allclose(ours[item_id][1], vector, atol=1e-5)
    assert ledger(store) == ledger(reference)


def test_a_render_past_the_time_limit_is_killed_and_reported(
    ray_cluster: Any, served: Any, corpus: Path, cache: Path, tmp_path: Path
) -> None:
    """Every file outlasts a microsecond: each render task's worker is killed (SIGALRM), each file reported by
    name, none recorded, and the run ends."""
    report = index_with_ray([corpus], tmp_path / "db", remote=served.url, cache_dir=cache, file_timeout=1e-6, **OPTIONS)
    assert (report.files_indexed, sum(report.items.values())) == (0, 0)
    assert sorted(Path(str(e.source)).name for e in report.errors) == sorted([*GOOD, "broken.pdf"])
    assert all("file_timeout" in str(e) for e in report.errors)
    assert ChromaStore.open(db=tmp_path / "db").files() == []


def _index_help() -> str:
    import argparse

    from vlm2vec_core.apps.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return str(action.choices["index"].format_help())
    return ""


@pytest.mark.skipif("--ray" not in _index_help(), reason="`vlm2vec index --ray` is not wired into the CLI yet")
def test_cli_index_on_ray(
    ray_cluster: Any,
    chroma_server: Any,
    corpus: Path,
    cache: Path,
    tiny_model_dir: Path,
    reference: ChromaStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`vlm2vec index --ray` (no address: the cluster this process is connected to) gives the library's result."""
    from vlm2vec_core.apps.cli import main

    where = ["--chroma-url", chroma_server.url, "--collection", "cli"]
    options = ["--dpi", "72", "--clip-seconds", "2", "--batch-size", "2", "--cache-dir", str(cache)]
    assert main(["index", str(corpus), "--ray", *where, "--model", str(tiny_model_dir), *options]) == 0
    out = capsys.readouterr()
    assert "embedded 2 clips, 1 images, 3 pages from 4 file(s)" in out.out
    assert "broken.pdf" in out.err
    store = ChromaStore.open(url=chroma_server.url, collection="cli")
    assert sorted(contents(store)) == sorted(contents(reference)) and ledger(store) == ledger(reference)

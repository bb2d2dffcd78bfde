"""Indexing on a real local Ray cluster (2 CPUs, no GPU: the actors run the tiny checkpoint on the CPU) into a real
`chroma run` server: the same items, metadata and vectors as the one-machine indexer, exactly once across runs,
with long PDFs split over several render tasks and small files grouped several to a task."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mediafixtures import make_image, make_pdf, make_video, slow_pdf
from vlm2vec_core.index.indexer import IndexReport, index_paths
from vlm2vec_core.index.store import ChromaStore

pytest.importorskip("ray")
from vlm2vec_core.index.distributed import Part, index_with_ray, plan_tasks

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


def assert_same(store: ChromaStore, reference: ChromaStore) -> None:
    """The same ids, metadata and (within float tolerance) vectors in both stores."""
    ours, theirs = contents(store), contents(reference)
    assert sorted(ours) == sorted(theirs)
    for item_id, (meta, vector) in theirs.items():
        assert ours[item_id][0] == meta
        np.testing.assert_allclose(ours[item_id][1], vector, atol=1e-5)


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
    """Both runs split the 3-page PDF into 2-page ranges (two render tasks): a file enters the ledger only once
    the items of all of its ranges are stored, and the second run stores each missing item once."""
    split = {"items_per_task": 2}
    with pytest.raises(KeyboardInterrupt):
        ray_index(
            chroma_server, "resumed", corpus, tiny_model_dir, cache, rows_per_call=2, progress=Interrupt(2), **split
        )
    store = ChromaStore.open(url=chroma_server.url, collection="resumed")
    stored_before, recorded_before = store.count(), len(store.files())
    assert stored_before > 0 and recorded_before < len(GOOD)  # stopped part way, some items in
    theirs, held = contents(reference), set(contents(store))
    for record in store.files():  # recorded only with every one of its items in
        assert {i for i, (meta, _) in theirs.items() if meta["content_sha256"] == record.digest} <= held

    resumed = ray_index(chroma_server, "resumed", corpus, tiny_model_dir, cache, **split)
    only_broken(resumed)
    assert resumed.files_unchanged == recorded_before
    assert resumed.files_indexed == len(GOOD) - recorded_before
    assert sum(resumed.items.values()) == ITEMS - stored_before  # what the first run stored is not embedded again
    assert_same(store, reference)  # every item, once
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


def holders(name: str) -> list[int]:
    """Processes other than this one that have a file called ``name`` open (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:  # gone, or not ours to read
            continue
        if any(Path(link).name == name for link in links):
            found.append(int(entry.name))
    return found


class KillWhenOpen(threading.Thread):
    """Sends ``sig`` to the process that has had a file called ``name`` open for ``after`` seconds: the one
    decoding it (the driver hashing it, or a task counting its pages, holds it for milliseconds)."""

    def __init__(self, name: str, sig: int, after: float) -> None:
        super().__init__(daemon=True)
        self.name, self.sig, self.after = name, sig, after
        self.killed: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        seen: dict[int, float] = {}
        while not self.done.wait(0.1):
            now = time.monotonic()
            for pid in holders(self.name):
                if now - seen.setdefault(pid, now) >= self.after:
                    os.kill(pid, self.sig)
                    self.killed.append(pid)
                    return

    def __enter__(self) -> KillWhenOpen:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join(5)


@pytest.fixture(scope="module")
def risky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five small files for one render task: among them a PDF whose decoder the test crashes, and one that
    renders for a minute."""
    docs = tmp_path_factory.mktemp("risky")
    make_image(docs / "a.png", seed=5)
    slow_pdf(docs / "b-crash.pdf")
    slow_pdf(docs / "c-slow.pdf", draws=199_999)  # not an identical copy of b
    make_pdf(docs / "d.pdf", 1, size=(200, 260), seed=6)
    make_image(docs / "e.png", seed=6)
    return docs


def read_by(records: list[logging.LogRecord]) -> list[tuple[str, tuple[int | None, ...] | None, str]]:
    """(file name, pages or clips, Ray task id) of each file or range the driver took in, from its debug log."""
    return [
        (Path(r.ray_part.source).name, r.ray_part.pages or r.ray_part.clips, r.ray_task)  # type: ignore[attr-defined]
        for r in records
        if hasattr(r, "ray_task")
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the decoding process in /proc")
def test_a_crash_or_a_hang_in_a_grouped_task_costs_only_that_file(
    ray_cluster: Any,
    served: Any,
    risky: Path,
    cache: Path,
    tiny_encoder: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One task holds the five files (one item each): the decoder of b is killed with SIGSEGV, c runs past
    file_timeout; each is reported by name and not recorded (the next run tries them again), and the task's
    other files are indexed as the one-machine indexer indexes them."""
    caplog.set_level(logging.DEBUG, logger="vlm2vec_core.index.distributed")
    with KillWhenOpen("b-crash.pdf", signal.SIGSEGV, after=1.0) as killer:
        report = index_with_ray([risky], tmp_path / "db", remote=served.url, cache_dir=cache, file_timeout=4, **OPTIONS)
    assert killer.killed  # the decoder really was crashed
    folder = risky.resolve()
    assert sorted(map(str, report.errors)) == [
        f"{folder / 'b-crash.pdf'}: the decoder crashed (SIGSEGV)",
        f"{folder / 'c-slow.pdf'}: took longer than 4 s; skipped",
    ]
    tasks = {name: task for name, _, task in read_by(caplog.records)}
    assert sorted(tasks) == ["a.png", "b-crash.pdf", "c-slow.pdf", "d.pdf", "e.png"]
    assert len(set(tasks.values())) == 1  # one task, which went on after each failure
    store = ChromaStore.open(db=tmp_path / "db")
    assert sorted(Path(r.source).name for r in store.files()) == ["a.png", "d.pdf", "e.png"]
    good = [risky / name for name in ("a.png", "d.pdf", "e.png")]
    reference = ChromaStore.open(db=tmp_path / "reference")
    index_paths(good, tiny_encoder, reference, cache_dir=cache, **OPTIONS)
    assert_same(store, reference)
    assert ledger(store) == ledger(reference)


@pytest.fixture(scope="module")
def parts_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    docs = tmp_path_factory.mktemp("parts")
    make_pdf(docs / "long.pdf", 10, size=(200, 260), seed=4)
    for n in range(4):
        make_image(docs / f"image{n}.png", seed=10 + n)
    make_pdf(docs / "short.pdf", 2, size=(200, 260), seed=5)
    make_video(docs / "long.mp4", seconds=10, fps=10, size=(96, 64), seed=6)  # 5 clips of 2 s
    return docs


def test_a_long_pdf_split_over_tasks_and_small_files_grouped_give_the_one_machine_index(
    ray_cluster: Any,
    chroma_server: Any,
    parts_corpus: Path,
    cache: Path,
    tiny_model_dir: Path,
    tiny_encoder: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """items_per_task=4: the 10-page PDF is read by three tasks (pages 1-4, 5-8, 9-10), the 5-clip video by two
    (clips 1-4, 5-), the four images by one; the ids, metadata, vectors and ledger are index_paths', and Ray warns
    of nothing deprecated in our calls."""
    reference = ChromaStore.open(db=tmp_path / "reference")
    index_paths([parts_corpus], tiny_encoder, reference, cache_dir=cache, **OPTIONS)
    caplog.set_level(logging.DEBUG, logger="vlm2vec_core.index.distributed")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = ray_index(chroma_server, "parts", parts_corpus, tiny_model_dir, cache, items_per_task=4)
    assert not [w for w in caught if Path(w.filename).name == "distributed.py"], [str(w.message) for w in caught]
    assert not report.errors and report.files_indexed == 7
    assert dict(report.items) == {"page": 12, "image": 4, "clip": 5}
    store = ChromaStore.open(url=chroma_server.url, collection="parts")
    assert_same(store, reference)
    assert ledger(store) == ledger(reference)
    read = read_by(caplog.records)
    ranges = sorted((pages or (), task) for name, pages, task in read if name == "long.pdf")
    assert [pages for pages, _ in ranges] == [(1, 2, 3, 4), (5, 6, 7, 8), (9, 10)]
    assert len({task for _, task in ranges}) == 3
    images = {task for name, _, task in read if name.startswith("image")}
    assert len(images) == 1 and not images & {task for _, task in ranges}
    clips = sorted((span or (), task) for name, span, task in read if name == "long.mp4")
    assert [span for span, _ in clips] == [(0, 4), (4, None)] and len({task for _, task in clips}) == 2
    assert len(read) == 3 + 2 + 4 + 1  # the page ranges, the clip ranges, the images, the short PDF: once each


def test_the_plan_splits_long_pdfs_and_groups_small_files() -> None:
    files = [
        ("long.pdf", "d1", "pdf"),
        ("a.png", "d2", "image"),
        ("b.png", "d3", "image"),
        ("short.pdf", "d4", "pdf"),
        ("talk.mp4", "d5", "video"),
        ("lying.pdf", "d6", "pdf"),  # a page tree that cannot be trusted: read whole, alone
        ("film.mp4", "d7", "video"),  # more clips than a task's share: ranges of clips, the last to its end
        ("c.png", "d8", "image"),
    ]
    plan = plan_tasks(files, [40, 1, 1, 3, 2, None, 20, 1], items_per_task=16)
    assert plan == [
        [Part("long.pdf", "d1", "pdf", 0, tuple(range(1, 17)))],
        [Part("long.pdf", "d1", "pdf", 1, tuple(range(17, 33)))],
        [Part("long.pdf", "d1", "pdf", 2, tuple(range(33, 41)))],
        [Part("a.png", "d2", "image"), Part("b.png", "d3", "image"), Part("short.pdf", "d4", "pdf"),
         Part("talk.mp4", "d5", "video")],
        [Part("lying.pdf", "d6", "pdf")],
        [Part("film.mp4", "d7", "video", 0, clips=(0, 16))],
        [Part("film.mp4", "d7", "video", 1, clips=(16, None))],
        [Part("c.png", "d8", "image")],
    ]  # fmt: skip
    assert [len(task) for task in plan_tasks(files[1:3] * 20, [1, 1] * 20, items_per_task=16)] == [16, 16, 8]
    assert plan[1][0].span == "pages 17-32" and plan[5][0].span == "clips 1-16" and plan[6][0].span == "clips 17-"


def test_the_ledger_records_a_split_file_once_every_range_is_in_whatever_the_order(tmp_path: Path) -> None:
    """Rows of a 3-page PDF read as two ranges reach the driver out of order (actors finish batches in any order),
    and a retried task repeats some: the file is recorded when, and only when, all three pages are stored."""
    import json

    from vlm2vec_core.index.distributed import _END, _ITEM, _Ledger, _row

    store = ChromaStore.open(db=tmp_path / "db")
    parts = [Part("/d/a.pdf", "dig", "pdf", 0, (1, 2)), Part("/d/a.pdf", "dig", "pdf", 1, (3,))]
    report = IndexReport()
    book = _Ledger(store, report, {"/d/a.pdf": parts}, {}, None)

    def item(page: int) -> dict[str, Any]:
        meta = json.dumps({"kind": "page", "page": page, "source": "/d/a.pdf"})
        row = _row(_ITEM, "/d/a.pdf", "dig", f"dig-p{page}", "page", "doc", f"page {page}", meta, b"")
        return {**row, "vector": np.full(4, page, np.float32).tobytes()}

    def end(part: int, items: int) -> dict[str, Any]:
        meta = json.dumps({"part": part, "problems": [], "crashed": False, "task": f"t{part}"})
        return {**_row(_END, "/d/a.pdf", "dig", "", "", "", str(items), meta, b""), "vector": b""}

    def take(*rows: dict[str, Any]) -> None:
        book.take({key: np.array([r[key] for r in rows], dtype=object) for key in rows[0]})

    take(end(1, 1), item(3))  # the second range, whole
    take(item(1), end(0, 2))  # the first range's end before its second page
    take(item(3), end(1, 1))  # a retried task's repeat of the second range
    assert store.files() == [] and dict(report.items) == {"page": 2}
    take(item(2))
    assert [(r.source, r.items) for r in store.files()] == [("/d/a.pdf", 3)]
    assert dict(report.items) == {"page": 3} and report.files_indexed == 1 and not report.errors
    assert store.count() == 3


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


def test_cli_on_ray_opens_an_encrypted_pdf_with_the_password_split_over_tasks(
    ray_cluster: Any,
    tmp_path: Path,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`--password` reaches the counting and render tasks, and `--items-per-task 2` splits a 5-page PDF into 3
    ranges, the encrypted one too once its password is given."""
    from mediafixtures import make_encrypted_pdf
    from vlm2vec_core.apps.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    make_encrypted_pdf(docs / "secret.pdf", "s3cret", n_pages=5)
    make_pdf(docs / "plain.pdf", n_pages=5)
    common = [str(docs), "--ray", "--db", str(tmp_path / "db"), "--model", str(tiny_model_dir), "--dpi", "36"]
    common += ["--cache-dir", str(tmp_path / "cache"), "--items-per-task", "2"]
    with caplog.at_level(logging.DEBUG, logger="vlm2vec_core.index.distributed"):
        assert main(["index", *common]) == 0
    reads = [r.getMessage() for r in caplog.records if "read by Ray task" in r.getMessage()]
    assert sum("plain.pdf" in m for m in reads) == 3, reads  # the driver took plain.pdf in as 3 ranges
    out = capsys.readouterr()
    assert "secret.pdf" in out.err and "--password" in out.err
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="vlm2vec_core.index.distributed"):
        assert main(["index", *common, "--password", "s3cret"]) == 0
    reads = [r.getMessage() for r in caplog.records if "read by Ray task" in r.getMessage()]
    assert sum("secret.pdf" in m for m in reads) == 3, reads  # counted with the password: split as well
    out = capsys.readouterr()
    assert "embedded 5 pages from 1 file(s)" in out.out, out.out  # plain.pdf was stored by the first run
    store = ChromaStore.open(db=tmp_path / "db")
    assert sorted((Path(r.source).name, r.items) for r in store.files()) == [("plain.pdf", 5), ("secret.pdf", 5)]

"""index_paths with worker processes: the same store as in-process indexing, crashes and hangs cost one file,
bounded run-ahead, progress with a total, no worker left behind, Ctrl-C leaves nothing half-written."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_isolation import forged_avi
from test_pdf_hardening import _claiming

from mediafixtures import make_image, make_pdf, make_video, slow_pdf
from vlm2vec_core.encoders.fake import FakeEncoder
from vlm2vec_core.index.indexer import INFLIGHT_PER_WORKER, index_paths
from vlm2vec_core.index.pipeline import (
    Fitting,
    ReadJob,
    clip_ranges,
    count_items,
    file_parts,
    fitting_of,
    page_ranges,
    pdf_page_count,
    read_items,
)
from vlm2vec_core.index.store import ChromaStore
from vlm2vec_core.media.documents import file_digest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def descendants() -> list[tuple[int, str]]:
    """Processes below this one, except multiprocessing's fork server and resource tracker themselves (they
    serve the whole test process and end with it; the workers forked from the server are listed)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    me = os.getpid()
    found, level = [], {me}
    while level:
        level = {pid for pid, parent in parents.items() if parent in level}
        for pid in level:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            server = parents[pid] == me and ("forkserver" in cmdline or "resource_tracker" in cmdline)
            if not server:
                found.append((pid, cmdline))
    return found


def _stored(store: ChromaStore) -> tuple[list[str], dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    got = store.items.get(include=["embeddings", "metadatas"])
    vectors = {i: np.asarray(v) for i, v in zip(got["ids"], got["embeddings"], strict=True)}
    metas = {
        i: {k: v for k, v in m.items() if k != "image_path"} for i, m in zip(got["ids"], got["metadatas"], strict=True)
    }
    return list(got["ids"]), vectors, metas


def _assert_same_index(store0: ChromaStore, store2: ChromaStore) -> None:
    """The same items stored in the same order, with the same metadata, vectors and ledger."""
    ids0, vectors0, metas0 = _stored(store0)
    ids2, vectors2, metas2 = _stored(store2)
    assert ids2 == ids0  # the same items, stored in the same order
    assert metas2 == metas0
    for item_id in ids0:
        np.testing.assert_array_equal(vectors2[item_id], vectors0[item_id], err_msg=item_id)
    assert [(r.source, r.digest, r.items) for r in store2.files()] == [
        (r.source, r.digest, r.items) for r in store0.files()
    ]


def _corpus(folder: Path, pages: int = 20, seconds: float = 3.0) -> Path:
    folder.mkdir()
    make_pdf(folder / "a.pdf", pages, size=(200, 260))
    make_pdf(folder / "b.pdf", 3, size=(300, 200), seed=1)
    make_image(folder / "c.png", size=(500, 90))
    make_video(folder / "d.mp4", seconds=seconds)
    return folder


def _index(folder: Path, encoder: Any, tmp: Path, name: str, **kw: Any) -> tuple[Any, ChromaStore]:
    store = ChromaStore.open(db=tmp / f"db-{name}")
    report = index_paths([folder], encoder, store, cache_dir=tmp / f"cache-{name}", dpi=36, clip_seconds=1.0, **kw)
    return report, store


def test_workers_store_what_in_process_indexing_stores_with_the_tiny_checkpoint(
    tmp_path: Path, tiny_encoder: Any
) -> None:
    folder = _corpus(tmp_path / "docs")
    inline, store0 = _index(folder, tiny_encoder, tmp_path, "inline", workers=0)
    pooled, store2 = _index(folder, tiny_encoder, tmp_path, "pooled", workers=2)
    assert inline.errors == pooled.errors == []
    assert inline.items == pooled.items and pooled.items == {"page": 23, "clip": 3, "image": 1}
    _assert_same_index(store0, store2)
    again, _ = _index(folder, tiny_encoder, tmp_path, "pooled", workers=2)
    assert again.files_unchanged == 4 and not again.items
    assert not descendants()


@pytest.mark.parametrize("family", ["vlm2vec-v2", "vlm2vec-v1", "gme", "qwen3-vl-embedding"])
def test_fitting_in_the_workers_gives_the_pixels_the_encoder_would_fit(tmp_path: Path, family: str) -> None:
    folder = _corpus(tmp_path / "docs", pages=3, seconds=1.0)
    encoder = FakeEncoder(family=family)
    assert isinstance(fitting_of(encoder), Fitting)  # the workers send fitted pixels, not full renders
    _, store0 = _index(folder, encoder, tmp_path, "inline", workers=0)
    _, store2 = _index(folder, encoder, tmp_path, "pooled", workers=2)
    ids0, vectors0, _ = _stored(store0)
    ids2, vectors2, _ = _stored(store2)
    assert ids0 == ids2 and len(ids0) == 3 + 3 + 1 + 1
    for item_id in ids0:  # the fake's vectors hash the prompt and every pixel the encoder prepared
        np.testing.assert_array_equal(vectors2[item_id], vectors0[item_id], err_msg=item_id)


def test_workers_send_model_size_pixels(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "big.pdf", 1, size=(1224, 1584))
    encoder = FakeEncoder(max_pixels=200_000)
    job = ReadJob(str(pdf), file_digest(pdf), str(tmp_path / "cache"), 144, 10.0, fitting=fitting_of(encoder))
    (entry,) = [e for batch in read_items(job) for e in batch.events]
    image = entry.input.image  # type: ignore[union-attr]
    assert image.width * image.height <= 200_000 < 2448 * 3168  # fitted, not the 2448x3168 render
    assert entry.item.content is None


def test_a_hanging_file_and_a_forged_header_cost_only_themselves(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    make_pdf(folder / "a.pdf", 2, size=(200, 260))
    forged_avi(folder / "b-bomb.avi")  # decord aborts on its header, unless the loader sees through it
    slow_pdf(folder / "c-slow.pdf")  # pdfium renders it for half a minute
    make_pdf(folder / "d.pdf", 2, size=(200, 260), seed=1)
    make_image(folder / "e.png")
    store = ChromaStore.open(db=tmp_path / "db")
    started = time.monotonic()
    report = index_paths([folder], FakeEncoder(), store, cache_dir=tmp_path / "cache", dpi=36, file_timeout=4.0)
    assert time.monotonic() - started < 25
    problems = {Path(e.source or "").name: e.reason for e in report.errors}
    assert problems.pop("c-slow.pdf") == "took longer than 4 s; skipped"
    problems.pop("b-bomb.avi", None)  # reported (its decoder crashed), or read for what it really holds
    assert not problems, report.errors
    assert (report.items["page"], report.items["image"]) == (4, 1)
    indexed = {Path(r.source).name for r in store.files()}
    assert indexed - {"b-bomb.avi"} == {"a.pdf", "d.pdf", "e.png"}
    assert ("b-bomb.avi" in indexed) == (report.items["clip"] > 0)
    assert not descendants()


class KillsTheWorker(list[int]):
    """A bar that, once the first file is stored, sends ``sig`` to the (one) worker, busy on the next file."""

    total = None

    def __init__(self, sig: int) -> None:
        super().__init__()
        self.sig = sig

    def update(self, n: int) -> None:
        if not self:
            (pid,) = [pid for pid, _ in descendants()]
            self.append(pid)
            threading.Timer(0.5, os.kill, (pid, self.sig)).start()


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGABRT])
def test_a_decoder_that_dies_mid_file_costs_only_that_file(tmp_path: Path, sig: int) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    make_pdf(folder / "a.pdf", 2, size=(200, 260))
    slow_pdf(folder / "b-slow.pdf")
    make_pdf(folder / "c.pdf", 3, size=(200, 260), seed=1)
    store = ChromaStore.open(db=tmp_path / "db")
    bar = KillsTheWorker(sig)
    report = index_paths([folder], FakeEncoder(), store, cache_dir=tmp_path / "cache", dpi=36, workers=1, progress=bar)
    assert [str(e) for e in report.errors] == [
        f"{folder.resolve() / 'b-slow.pdf'}: the decoder crashed ({signal.Signals(sig).name})"
    ]
    assert report.items == {"page": 5}
    assert sorted(Path(r.source).name for r in store.files()) == ["a.pdf", "c.pdf"]  # b is tried again next time
    assert not descendants()


class Slow:
    """An encoder without a family (the workers then send full renders) that takes its time."""

    def __init__(self, seconds: float, calls: list[int] | None = None, cache: Path | None = None) -> None:
        self.fake, self.seconds, self.calls, self.cache = FakeEncoder(), seconds, calls, cache
        self.stored_before: list[int] = []

    @property
    def dim(self) -> int:
        return self.fake.dim

    def encode_documents(self, inputs: Any, **kwargs: Any) -> Any:
        if self.calls is not None and self.cache is not None:
            self.calls.append(sum(1 for p in self.cache.iterdir() if not p.name.startswith(".")))
        time.sleep(self.seconds)
        return self.fake.encode_documents(inputs, **kwargs)

    def encode_queries(self, inputs: Any, **kwargs: Any) -> Any:
        return self.fake.encode_queries(inputs, **kwargs)


def test_workers_run_ahead_of_a_slow_encoder_by_a_bounded_number_of_items(tmp_path: Path) -> None:
    pages = 100
    pdf = make_pdf(tmp_path / "long.pdf", pages, size=(100, 130))
    cache = tmp_path / "cache"
    cache.mkdir()
    rendered: list[int] = []  # pages in the cache (one file each) when each chunk reaches the encoder
    encoder = Slow(0.15, rendered, cache)
    store = ChromaStore.open(db=tmp_path / "db")
    report = index_paths([pdf], encoder, store, cache_dir=cache, dpi=36, chunk_size=16, workers=2)
    assert report.items == {"page": pages}
    chunk, unit, inflight, depth = 16, 4, INFLIGHT_PER_WORKER * 2 + 4, 2  # items: chunk, message; messages
    bound = chunk + (inflight + depth) * unit  # the chunk being cut, and what the workers may have computed
    for n, count in enumerate(rendered):
        assert count - n * chunk <= bound, f"{count} pages read when chunk {n} was embedded ({rendered})"
    assert bound < pages  # so the workers did wait for the encoder


class Bar:
    """A tqdm-like bar that records what it was told."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.total: int | None = None
        self.n = 0
        self.totals_at_update: list[int | None] = []
        self.postfix = ""
        self.stop_after = stop_after

    def update(self, n: int) -> None:
        self.totals_at_update.append(self.total)
        self.n += n
        if self.stop_after is not None and len(self.totals_at_update) >= self.stop_after:
            raise KeyboardInterrupt

    def refresh(self) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text


def test_the_bar_knows_the_total_before_the_first_item_and_rates_are_per_kind(tmp_path: Path) -> None:
    folder = _corpus(tmp_path / "docs")
    bar = Bar()
    report, _ = _index(folder, FakeEncoder(), tmp_path, "bar", progress=bar, workers=2)
    expected = 20 + 3 + 1 + 3  # pages, pages, an image, 1-second clips of a 3-second video
    assert sum(report.items.values()) == expected
    assert set(bar.totals_at_update) == {expected} and bar.n == expected
    rates = dict(part.split(" ", 1)[::-1] for part in bar.postfix.split(", "))
    assert set(rates) == {"clips/s", "images/s", "pages/s"}
    assert all(float(v) > 0 for v in rates.values())


def test_ctrl_c_leaves_no_worker_and_no_half_written_file_and_a_rerun_resumes(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "long.pdf", 60, size=(200, 260))
    store = ChromaStore.open(db=tmp_path / "db")
    cache = tmp_path / "cache"
    bar = Bar(stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        index_paths([pdf], FakeEncoder(), store, cache_dir=cache, dpi=36, progress=bar, workers=2)
    assert not descendants()
    assert not list(cache.glob(".tmp-*"))
    stored = store.count()
    assert 0 < stored < 60 and not store.files()
    report = index_paths([pdf], FakeEncoder(), store, cache_dir=cache, dpi=36, workers=2)
    assert (report.items["page"], report.reused) == (60 - stored, stored)
    assert store.count() == 60 and len(store.files()) == 1


def test_page_ranges_split_long_pdfs_only() -> None:
    assert page_ranges(None) == [None]
    assert page_ranges(5) == [None]
    assert page_ranges(20) == [tuple(range(1, 9)), tuple(range(9, 17)), tuple(range(17, 21))]


def test_a_long_pdf_is_read_in_page_ranges_and_stored_as_a_whole_file_run_stores_it(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    pdf = make_pdf(folder / "long.pdf", 30, size=(200, 260))
    make_pdf(folder / "short.pdf", 3, size=(200, 260), seed=1)
    assert len(page_ranges(pdf_page_count(str(pdf)))) == 4  # 1-8, 9-16, 17-24, 25-30: jobs for every worker
    for encoder in (FakeEncoder(), Slow(0.0)):  # fitted in the workers, and full renders (no family)
        name = type(encoder).__name__
        inline, store0 = _index(folder, encoder, tmp_path, f"inline-{name}", workers=0)
        pooled, store2 = _index(folder, encoder, tmp_path, f"pooled-{name}", workers=2)
        assert inline.errors == pooled.errors == [] and inline.items == pooled.items == {"page": 33}
        _assert_same_index(store0, store2)
    whole = ReadJob(str(pdf), file_digest(pdf), str(tmp_path / "cache"), 36, 10.0, fitting=fitting_of(FakeEncoder()))
    part = replace(whole, pages=tuple(range(9, 17)))
    entries = [e for batch in read_items(whole) for e in batch.events]
    ranged = [e for batch in read_items(part) for e in batch.events]
    assert [e.item.metadata() for e in ranged] == [e.item.metadata() for e in entries[8:16]]  # page_count 30
    for a, b in zip(ranged, entries[8:16], strict=True):
        assert a.input.image.tobytes() == b.input.image.tobytes()  # type: ignore[union-attr]


def test_an_encrypted_pdf_is_counted_with_its_password_so_it_can_be_split(tmp_path: Path) -> None:
    from mediafixtures import make_encrypted_pdf

    pdf = make_encrypted_pdf(tmp_path / "secret.pdf", "s3cret", n_pages=12)
    assert pdf_page_count(str(pdf)) is None  # cannot be opened: read whole, where the loader says why
    assert pdf_page_count(str(pdf), password="s3cret") == 12
    assert count_items([(str(pdf), "pdf")], 10.0, "s3cret") == [12]
    assert len(file_parts("pdf", 12)) == 2


def test_clip_ranges_split_long_videos_and_the_last_runs_to_the_end() -> None:
    assert clip_ranges(None) == [None] and clip_ranges(8) == [None]
    assert clip_ranges(20) == [(0, 8), (8, 16), (16, None)]  # a header that says too little loses no clip


def test_a_long_video_is_read_in_clip_ranges_and_stored_as_a_whole_file_run_stores_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    video = make_video(folder / "long.mp4", seconds=20, fps=10, size=(96, 64))
    make_video(folder / "short.mp4", seconds=2, fps=10, size=(96, 64), seed=1)
    (count,) = count_items([(str(video), "video")], clip_seconds=1.0)
    assert count == 20 and len(file_parts("video", count)) == 3  # clips 0-7, 8-15, 16-: jobs for every worker
    from vlm2vec_core.index import indexer

    planned: list[tuple[str, int]] = []
    real = indexer.file_parts

    def recorded(kind: str, n: int | None) -> Any:
        parts = real(kind, n)
        planned.append((kind, len(parts)))
        return parts

    started: list[int] = []

    class Pool(indexer.WorkerPool):  # type: ignore[name-defined,misc]
        def __init__(self, workers: int, **kw: Any) -> None:
            started.append(workers)
            super().__init__(workers, **kw)

    monkeypatch.setattr(indexer, "file_parts", recorded)
    monkeypatch.setattr(indexer, "WorkerPool", Pool)
    inline, store0 = _index(folder, FakeEncoder(), tmp_path, "inline", workers=0)
    pooled, store2 = _index(folder, FakeEncoder(), tmp_path, "pooled", workers=2)
    assert sorted(planned) == [("video", 1), ("video", 3)]  # the workers got the long video as 3 jobs
    alone, _ = _index(video, FakeEncoder(), tmp_path, "alone", workers=2)
    assert alone.items == {"clip": 20}
    assert started == [2, 2]  # one long video alone gets the two workers too (it makes three jobs, not one)
    assert inline.errors == pooled.errors == [] and inline.items == pooled.items == {"clip": 22}
    _assert_same_index(store0, store2)
    whole = ReadJob(str(video), file_digest(video), str(tmp_path / "cache"), 36, 1.0, fitting=fitting_of(FakeEncoder()))
    entries = [e for batch in read_items(whole) for e in batch.events]
    for clips, expected in (((8, 16), entries[8:16]), ((16, None), entries[16:])):
        ranged = [e for batch in read_items(replace(whole, clips=clips)) for e in batch.events]
        assert [e.item.metadata() for e in ranged] == [e.item.metadata() for e in expected]
        for a, b in zip(ranged, expected, strict=True):
            frames_a, frames_b = a.input.video.frames, b.input.video.frames  # type: ignore[union-attr]
            assert [f.tobytes() for f in frames_a] == [f.tobytes() for f in frames_b]


@pytest.mark.parametrize("hidden", [False, True])
def test_a_pdf_whose_page_tree_lies_is_read_whole_and_reported_as_ever(tmp_path: Path, hidden: bool) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    forged = folder / "forged.pdf"
    # Claims 40 pages, holds 12: small enough to be believed. Hidden: the byte scan for page objects gives up
    # (as for object streams), and the loader stops after a run of pages that cannot be loaded.
    forged.write_bytes(_claiming(40, n_pages=12) + (b"% /Type /ObjStm\n" if hidden else b""))
    assert forged.stat().st_size // 32 > 40
    assert pdf_page_count(str(forged)) is None  # so it is not split (ranges past its pages would each fail)
    inline, store0 = _index(folder, FakeEncoder(), tmp_path, "inline", workers=0)
    pooled, store2 = _index(folder, FakeEncoder(), tmp_path, "pooled", workers=2)
    assert [str(e) for e in pooled.errors] == [str(e) for e in inline.errors]
    said = "16 pages in a row cannot be loaded" if hidden else "the page tree claims 40 pages but the file holds 12"
    assert len(pooled.errors) == 1 and said in pooled.errors[0].reason
    assert pooled.items == inline.items == {"page": 12}
    assert _stored(store2)[2] == _stored(store0)[2]  # the same page_count


RUN = """
import sys, time
from pathlib import Path
from vlm2vec_core.encoders.fake import FakeEncoder
from vlm2vec_core.index.indexer import INFLIGHT_PER_WORKER, index_paths
from vlm2vec_core.index.store import ChromaStore

class Slow(FakeEncoder):
    def encode(self, inputs, **kwargs):
        print("encoding", flush=True)
        time.sleep(0.5)
        return super().encode(inputs, **kwargs)

if __name__ == "__main__":
    tmp = Path(sys.argv[1])
    index_paths([tmp / "docs"], Slow(), ChromaStore.open(db=tmp / "db"), cache_dir=tmp / "cache", dpi=36, workers=2)
"""


def test_workers_end_when_the_indexing_process_is_killed(tmp_path: Path) -> None:
    import subprocess

    folder = tmp_path / "docs"
    folder.mkdir()
    for n in range(4):
        make_pdf(folder / f"{n}.pdf", 30, size=(200, 260), seed=n)
    script = tmp_path / "run.py"
    script.write_text(RUN)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "encoding\n"  # mid-run, workers busy
        workers = [pid for pid, cmd in _below(proc.pid) if "forkserver" in cmd and _parent(pid) != proc.pid]
        assert len(workers) == 2
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in workers):
        assert time.monotonic() < deadline, "workers outlived the process that started them"
        time.sleep(0.1)
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _state(pid: int) -> str:
    try:
        return _stat(pid)[0]
    except OSError:
        return "gone"


def _parent(pid: int) -> int:
    return int(_stat(pid)[1])


def _below(root: int) -> list[tuple[int, str]]:
    found, level = [], {root}
    while level:
        level = {p for p in _all_pids() if _safe_parent(p) in level}
        for pid in level:
            try:
                found.append((pid, Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()))
            except OSError:
                continue
    return found


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _safe_parent(pid: int) -> int | None:
    try:
        return _parent(pid)
    except (OSError, IndexError, ValueError):
        return None

"""Indexing and search over a vector store: files -> items -> vectors -> store, and a query back to hits.

Ids come from content hash + page or clip, so runs are idempotent: a second run skips files already indexed
whole (the store keeps a ledger of them), a run killed at any moment and started again stores every item
exactly once (items already stored are not embedded again), and ``prune`` drops entries of files that are
gone or changed.

What follows the encoder's model family (``encoder.family``): the task preset each kind of item is embedded
and searched with (``family.task_for_kind``), the kinds it takes at all (UniME-V2 takes no video: videos are
reported, not embedded), and how clips sample their frames (``family.sampler``). The store records the
vectors' signature and refuses another family's, dimension's or truncation's.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders.progress import IndexProgress
from ..encoders.protocol import Encoder, encode_by_task
from ..errors import InputError
from ..media.documents import Item, clip_sampler, default_cache_dir, file_digest, iter_items, kind_of, walk
from ..media.isolate import Job, WorkerPool
from .pipeline import (
    DEPTH,
    Batch,
    Entry,
    ReadJob,
    auto_workers,
    count_in_workers,
    count_items,
    file_parts,
    fitting_of,
    read_items,
    sampler_args,
)
from .store import FileRecord, Hit, VectorStore

log = logging.getLogger(__name__)

# The task of each kind for an encoder without a family (VLM2Vec-V2's); see task_for_kind.
TASK_FOR_KIND = {"page": "visdoc", "clip": "moment", "image": "image"}
KINDS = tuple(TASK_FOR_KIND)
ITEM_KIND = {"pdf": "page", "video": "clip", "image": "image"}  # file kind -> the kind of its items
# Messages (of pipeline.UNIT items, fitted: up to about 3 MB each) computed ahead, per worker: room for the other
# workers to read the next files while the file being embedded is still read (the bound on memory).
INFLIGHT_PER_WORKER = 4
_WHAT = {"pdf": "PDF pages", "video": "video", "image": "images"}


def task_for_kind(encoder: Any) -> Mapping[str, str]:
    """Item kind -> task preset for ``encoder``: its family's (``family.task_for_kind``; a kind missing there is
    one the family does not take), else VLM2Vec-V2's."""
    family = getattr(encoder, "family", None)
    return family.task_for_kind if family is not None else TASK_FOR_KIND


def check_store(encoder: Any, store: VectorStore) -> None:
    """Record the encoder's vector signature in ``store``, or refuse a store of another model's vectors."""
    from ..families import vector_signature

    if hasattr(store, "check_signature"):
        store.check_signature(vector_signature(encoder))
    else:  # a store that knows only dimensions
        store.check_dim(encoder.dim)


@dataclass
class IndexReport:
    files_indexed: int = 0
    files_unchanged: int = 0
    items: Counter[str] = field(default_factory=Counter)  # embedded now, by kind
    reused: int = 0  # already in the store (a resumed run)
    pruned: int = 0
    moved: list[tuple[str, str]] = field(default_factory=list)  # (old path, new path) of files found moved
    skipped: list[str] = field(default_factory=list)  # files in the folders that are not a PDF, video or image
    errors: list[InputError] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        made = ", ".join(f"{n} {kind}s" for kind, n in sorted(self.items.items())) or "nothing new"
        parts = [f"embedded {made} from {self.files_indexed} file(s) in {self.seconds:.1f} s"]
        if self.files_unchanged:
            parts.append(f"{self.files_unchanged} unchanged file(s) skipped")
        if self.reused:
            parts.append(f"{self.reused} item(s) already stored")
        if self.moved:
            parts.append(f"{len(self.moved)} moved file(s) found by their content (their entries follow them)")
        if self.pruned:
            parts.append(f"{self.pruned} stale item(s) pruned")
        if self.skipped:
            parts.append(f"{len(self.skipped)} file(s) skipped: not a PDF, video or image")
        return "; ".join(parts)


def index_paths(
    paths: Iterable[str | Path],
    encoder: Encoder,
    store: VectorStore,
    *,
    cache_dir: str | Path | None = None,
    dpi: float = 144,
    clip_seconds: float = 10.0,
    chunk_size: int = 16,
    batch_size: int = 8,
    prune: bool = False,
    progress: Any = None,
    workers: int | None = None,
    file_timeout: float | None = None,
    password: str | None = None,
) -> IndexReport:
    """Index every PDF, video and image under ``paths``; bad files are listed in the report, never fatal.

    Files are read, rendered and fitted in ``workers`` processes (None: one per CPU; 0: in this process) while
    the encoder runs (see ``vlm2vec_core.index.pipeline``): a file that crashes its decoder or takes longer than
    ``file_timeout`` seconds (None: no limit; needs workers) is reported and skipped, and the run goes on.
    ``progress``: a tqdm-like bar; its total is set once the files' pages and clips are counted.
    ``password``: tried on every encrypted PDF (the others open as they are).
    """
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be 0 (in this process) or more, got {workers}")
    if file_timeout is not None and not file_timeout > 0:
        raise ValueError(f"file_timeout must be positive, got {file_timeout!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    started = time.perf_counter()
    report = IndexReport()
    check_store(encoder, store)
    tasks = task_for_kind(encoder)
    todo = plan_files(paths, encoder, store, report, prune=prune)
    cache = (Path(cache_dir) if cache_dir is not None else default_cache_dir()).resolve()
    run = _Run(encoder, store, report, tasks, IndexProgress(progress), batch_size, chunk_size)
    options = {"cache_dir": cache, "dpi": dpi, "clip_seconds": clip_seconds, "password": password}
    count = workers if workers is not None else auto_workers()
    if todo and count > 0 and not _picklable(sampler_args(encoder), fitting_of(encoder)):
        log.info("the encoder's family cannot be sent to worker processes: reading the files in this process")
        count = 0
    if todo and count > 0:
        _index_in_workers(todo, run, options, workers=min(count, max(1, _job_estimate(todo))), timeout=file_timeout)
    elif todo:
        _index_in_process(todo, run, options)
    run.progress.finish()
    report.seconds = time.perf_counter() - started
    return report


def plan_files(
    paths: Iterable[str | os.PathLike[str]],
    encoder: Any,
    store: VectorStore,
    report: IndexReport,
    *,
    prune: bool = False,
) -> list[tuple[str, str, str]]:
    """The files to index now, as (source, digest, file kind): listed and hashed here (``index_paths`` and
    ``index_with_ray`` both start here).

    - a file whose content the index holds under a path that is gone moved: its entries follow it (no
      re-embedding), and it counts as unchanged;
    - an edited file replaces its old entries (even without ``prune``); ``prune`` also drops the entries of
      files that are gone under ``paths``, a folder that is gone included;
    - files the ledger holds are skipped, files of a kind the family does not take reported, and files in
      the folders that are no PDF, video or image counted in ``report.skipped``.
    """
    tasks = task_for_kind(encoder)
    roots = [Path(p) for p in paths]
    present = [r for r in roots if r.exists() or not prune]  # with --prune, a folder that is gone is pruned
    skipped: list[Path] = []
    seen: dict[str, str] = {}
    files: list[tuple[str, str, str]] = []
    for path in walk(present, skipped=skipped):
        source = str(path.resolve())
        file_kind = kind_of(path)
        if file_kind is None:
            report.errors.append(InputError("not a PDF, video or image (by its suffix)", source=path))
            continue
        try:
            digest = file_digest(path)
        except InputError as err:
            report.errors.append(err)
            continue
        seen[source] = digest
        files.append((source, digest, file_kind))
    report.skipped.extend(map(str, skipped))
    known = _known(store)
    _follow_moves(store, files, known, report)
    changed = {source for source, digest, _ in files if known.get(source) and digest not in known[source]}
    if prune or changed:
        report.pruned = _prune(store, roots, seen, only=None if prune else changed)
        known = _known(store)
    todo: list[tuple[str, str, str]] = []
    for source, digest, what in files:
        if digest in known.get(source, set()):
            report.files_unchanged += 1
        elif ITEM_KIND[what] not in tasks:  # e.g. a video for UniME-V2
            title = getattr(getattr(encoder, "family", None), "title", "this model")
            report.errors.append(InputError(f"{title} takes no {_WHAT[what]}", source=source))
        else:
            todo.append((source, digest, what))
    return todo


def _known(store: VectorStore) -> dict[str, set[str]]:
    known: dict[str, set[str]] = {}
    for record in store.files():
        known.setdefault(record.source, set()).add(record.digest)
    return known


def _follow_moves(
    store: VectorStore, files: list[tuple[str, str, str]], known: dict[str, set[str]], report: IndexReport
) -> None:
    """Re-point the entries of files found at a new path whose content the index holds under a path that no
    longer exists (a renamed file, a moved folder); ``known`` is updated to match."""
    move = getattr(store, "move_file", None)
    if move is None:
        return
    gone: dict[str, list[str]] = {}  # digest -> recorded sources that are not on disk any more
    for source, digests in known.items():
        if not Path(source).exists():
            for digest in digests:
                gone.setdefault(digest, []).append(source)
    for source, digest, _ in files:
        if digest in known.get(source, set()) or not gone.get(digest):
            continue
        old = gone[digest].pop(0)
        move(old, source, digest)
        known[old].discard(digest)
        known.setdefault(source, set()).add(digest)
        report.moved.append((old, source))
        log.info("%s moved to %s: its entries follow it", old, source)


@dataclass
class _Run:
    """What every file of one ``index_paths`` call is indexed with."""

    encoder: Any
    store: VectorStore
    report: IndexReport
    tasks: Mapping[str, str]
    progress: IndexProgress
    batch_size: int
    chunk_size: int

    def store_chunk(self, chunk: list[Entry], path: Path, errors: list[InputError]) -> int:
        """Embed and store one chunk's new items (items already stored are skipped); items not failed."""
        present = self.store.existing([e.item.id for e in chunk])
        fresh = [e for e in chunk if e.item.id not in present]
        self.report.reused += len(chunk) - len(fresh)
        ready = [e for e in fresh if e.error is None]
        bad: list[InputError] = []
        vectors = encode_by_task(
            self.encoder,
            [e.input if e.input is not None else e.item.to_input() for e in ready],
            [self.tasks[e.item.kind] for e in ready],
            batch_size=self.batch_size,
            errors=bad,
        )
        failed = {e.index for e in bad}
        good = [e.item for n, e in enumerate(ready) if n not in failed]
        problems = [(fresh.index(e), e.error) for e in fresh if e.error is not None]
        problems += [(fresh.index(ready[e.index or 0]), e) for e in bad]
        errors.extend(InputError(err.reason, source=path, location=fresh[n].item.label) for n, err in sorted(problems))
        self.store.upsert([i.id for i in good], vectors, [{**i.metadata(), "source": str(path)} for i in good])
        self.report.items.update(item.kind for item in good)
        kind = chunk[0].item.kind if chunk else None
        self.progress.advance(len(chunk), kind, len(good))
        return len(chunk) - len(problems)

    def finish_file(self, source: str, digest: str, total: int, kept: int, errors: list[InputError]) -> None:
        """Report the file's problems; record it as indexed unless every item failed (the next run retries)."""
        self.report.errors.extend(errors)
        if errors and kept == 0:
            return
        self.store.mark_file(FileRecord(source, digest, total, time.time()))
        self.report.files_indexed += 1


def _picklable(*values: Any) -> bool:
    import pickle

    try:
        pickle.dumps(values)
    except (pickle.PicklingError, AttributeError, TypeError):  # e.g. a family made in a function, with lambdas
        return False
    return True


def _job_estimate(todo: list[tuple[str, str, str]]) -> int:
    """An upper bound on the jobs the files make (a PDF or a video may be split): no more workers than that are
    started."""
    return sum(1 if what == "image" else 1_000 for _, _, what in todo)


def _index_in_process(todo: list[tuple[str, str, str]], run: _Run, options: dict[str, Any]) -> None:
    """``workers=0``: each file read, rendered and embedded in this process, chunk by chunk."""
    pairs = [(s, w) for s, _, w in todo]
    run.progress.set_total(sum(n or 0 for n in count_items(pairs, options["clip_seconds"], options["password"])))
    run.progress.restart_clock()
    sampler = clip_sampler(run.encoder)
    for source, digest, _ in todo:
        errors: list[InputError] = []
        items = iter_items(Path(source), errors=errors, digest=digest, sampler=sampler, **options)
        total = kept = 0
        for chunk in _chunks(items, run.chunk_size):
            kept += run.store_chunk([Entry(item) for item in chunk], Path(source), errors)
            total += len(chunk)
        run.finish_file(source, digest, total, kept, errors)


def _index_in_workers(
    todo: list[tuple[str, str, str]], run: _Run, options: dict[str, Any], *, workers: int, timeout: float | None
) -> None:
    """Files read, rendered and fitted in worker processes, embedded and stored here in file order."""
    family, num_frames = sampler_args(run.encoder)
    fitting = fitting_of(run.encoder)
    base = {"cache_dir": str(options["cache_dir"]), "dpi": options["dpi"], "clip_seconds": options["clip_seconds"]}
    base |= {"family": family, "num_frames": num_frames, "fitting": fitting, "password": options["password"]}
    with WorkerPool(workers, max_inflight=INFLIGHT_PER_WORKER * workers + 4) as pool:
        pairs = [(source, what) for source, _, what in todo]
        counts = count_in_workers(pool, pairs, options["clip_seconds"], timeout, options["password"])
        run.progress.set_total(sum(n or 0 for n in counts))
        run.progress.restart_clock()
        plan = (
            (position, ReadJob(source, digest, **base, pages=pages, clips=clips))
            for position, ((source, digest, what), n) in enumerate(zip(todo, counts, strict=True))
            for pages, clips in file_parts(what, n)
        )
        queue = _JobQueue(pool, plan, window=4 * workers, timeout=timeout)
        for position, (source, digest, _) in enumerate(todo):
            path = Path(source)
            errors: list[InputError] = []
            said: set[str] = set()  # a problem every page range of a file meets is reported once
            chunk: list[Entry] = []
            total = kept = 0
            crashed = False
            try:
                for batch in queue.values_of(position):
                    for event in batch.events:
                        if isinstance(event, InputError):
                            if str(event) not in said:
                                said.add(str(event))
                                errors.append(event)
                            continue
                        chunk.append(event)
                        if len(chunk) == run.chunk_size:
                            kept += run.store_chunk(chunk, path, errors)
                            total, chunk = total + len(chunk), []
            except InputError as err:  # its decoder crashed or ran past the time limit: the rest is not read
                queue.drop(position)
                errors.append(err)
                crashed = True
            if chunk:
                kept += run.store_chunk(chunk, path, errors)
                total += len(chunk)
            if crashed:  # not done: the next run tries the file again (what was stored is kept)
                run.report.errors.extend(errors)
            else:
                run.finish_file(source, digest, total, kept, errors)


class _JobQueue:
    """The read jobs, submitted ahead of the file being embedded (``window`` of them at most)."""

    def __init__(self, pool: WorkerPool, plan: Iterator[tuple[int, ReadJob]], *, window: int, timeout: float | None):
        self.pool, self.plan, self.window, self.timeout = pool, plan, window, timeout
        self.pending: deque[tuple[int, Job]] = deque()
        self.dropped: set[int] = set()
        self._next: tuple[int, ReadJob] | None = None
        self._top_up()

    def _top_up(self) -> None:
        while len(self.pending) < self.window:
            nxt = self._next or next(self.plan, None)
            self._next = None
            if nxt is None:
                return
            position, job = nxt
            if position in self.dropped:
                continue
            submitted = self.pool.submit(read_items, job, source=job.path, timeout=self.timeout, depth=DEPTH)
            self.pending.append((position, submitted))

    def values_of(self, position: int) -> Iterator[Batch]:
        """The batches of file ``position``'s jobs, in order (its jobs are the next ones)."""
        while True:
            self._top_up()
            if not self.pending or self.pending[0][0] != position:
                return
            _, job = self.pending.popleft()
            self._top_up()
            yield from job

    def drop(self, position: int) -> None:
        """Cancel file ``position``'s jobs not read yet."""
        self.dropped.add(position)
        while self.pending and self.pending[0][0] == position:
            self.pending.popleft()[1].cancel()


def _chunks(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    while chunk := list(islice(items, size)):
        yield chunk


def _prune(store: VectorStore, roots: list[Path], seen: dict[str, str], only: set[str] | None = None) -> int:
    """Drop entries of files under ``roots`` that are gone, or whose content changed since indexing (with
    ``only``: just the old versions of those changed files)."""
    resolved = [r.resolve() for r in roots]
    records = store.files()
    removed = 0
    for record in records:
        source = Path(record.source)
        if only is not None and record.source not in only:
            continue
        if not any(source == r or r in source.parents for r in resolved):
            continue
        if seen.get(record.source) != record.digest:
            # Ids come from the content, so identical copies share their items (stored under whichever path
            # came first): un-record the other copies before the items go, so that they are indexed again.
            for twin in records:
                if twin.digest == record.digest and twin.source != record.source:
                    removed += store.delete_file(twin.source, twin.digest)
            removed += store.delete_file(record.source, record.digest)
            log.info("pruned %s (%s)", record.source, "changed" if record.source in seen else "gone")
    return removed


def remove_paths(store: VectorStore, paths: Iterable[str | Path]) -> tuple[int, list[str], list[str]]:
    """Drop the entries of the files at ``paths`` (files, or folders: every file recorded under them, present
    on disk or not). Returns (items removed, files removed, identical copies elsewhere that lost their shared
    items and were un-recorded, so that the next ``index`` embeds them again)."""
    wanted = [Path(p).expanduser().resolve() for p in paths]
    records = store.files()
    chosen = [r for r in records if any(Path(r.source) == w or w in Path(r.source).parents for w in wanted)]
    sources = {r.source for r in chosen}
    removed, twins = 0, []
    for record in chosen:
        for twin in records:  # ids come from the content: identical copies share their items
            if twin.digest == record.digest and twin.source not in sources:
                removed += store.delete_file(twin.source, twin.digest)
                twins.append(twin.source)
        removed += store.delete_file(record.source, record.digest)
    return removed, sorted(sources), sorted(set(twins))


def wanted_kinds(kinds: Sequence[str] | None) -> list[str]:
    """The kinds asked for (all of them for None), or a ValueError naming the choices."""
    wanted = list(kinds or KINDS)
    for kind in wanted:
        if kind not in KINDS:
            raise ValueError(f"unknown type {kind!r}: use {', '.join(KINDS)}")
    return wanted


def search(
    query: Any,
    encoder: Encoder,
    store: VectorStore,
    *,
    k: int = 5,
    kinds: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
) -> list[Hit]:
    """The best ``k`` items for a query (a text, or an Input such as an image); each kind is searched with its
    own task's query preset (the family's), and kinds the family does not take (UniME-V2: clips) are skipped:
    the store holds none. ``sources``: only these files' items (see ``VectorStore.query``)."""
    check_store(encoder, store)
    tasks = task_for_kind(encoder)
    within = {"sources": sources} if sources is not None else {}
    hits: list[Hit] = []
    for kind in wanted_kinds(kinds):
        if kind not in tasks:  # the family takes no such items, so the store holds none
            continue
        vector = encoder.encode_queries([query], task=tasks[kind])[0]
        hits.extend(store.query(np.asarray(vector), k, kinds=[kind], **within))
    return sorted(hits, key=lambda h: h.score, reverse=True)[:k]


def rerank_hits(
    query: Any,
    hits: Sequence[Hit],
    reranker: Any,
    *,
    top_n: int | None = None,
    encoder: Any = None,
    errors: list[InputError] | None = None,
) -> list[Hit]:
    """The hits in the reranker's order (best first, ``top_n`` kept), each with its ``rerank_score``.

    Each kind is reranked with the instruction its retrieval task calls for (the reranker's words for that task,
    e.g. Qwen3-VL-Reranker is evaluated with the embedder's query instruction); the scores are comparable across
    calls, so the kinds merge on them. A hit whose file is gone or broken is dropped (and recorded in ``errors``).
    """
    from dataclasses import replace as _replace

    from ..media.documents import input_for_metadata

    tasks = task_for_kind(encoder) if encoder is not None else dict(TASK_FOR_KIND)
    groups: dict[str, list[Hit]] = {}
    for hit in hits:
        groups.setdefault(hit.kind, []).append(hit)
    scored: list[Hit] = []
    for kind, group in groups.items():
        candidates, kept = [], []
        for hit in group:
            try:
                candidates.append(input_for_metadata(hit.metadata))
                kept.append(hit)
            except (InputError, ValueError) as exc:
                problem = InputError(f"cannot rerank it: {exc}", source=hit.label)
                if errors is None:
                    log.warning("%s", problem)
                else:
                    errors.append(problem)
        found: list[InputError] = []
        for index, score in reranker.rerank(query, candidates, task=tasks.get(kind), errors=found):
            scored.append(_replace(kept[index], rerank_score=float(score)))
        if errors is not None:
            errors.extend(InputError(e.reason, source=kept[e.index or 0].label) for e in found)
        elif found:
            log.warning("%d hit(s) could not be reranked: %s", len(found), found[0])
    scored.sort(key=lambda h: (-(h.rerank_score or 0.0), -h.score))
    return scored[:top_n] if top_n is not None else scored

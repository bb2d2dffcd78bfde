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
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from .documents import Item, clip_sampler, default_cache_dir, file_digest, iter_items, kind_of, walk
from .errors import InputError
from .protocol import Encoder, encode_by_task
from .store import FileRecord, Hit, VectorStore

log = logging.getLogger(__name__)

# The task of each kind for an encoder without a family (VLM2Vec-V2's); see task_for_kind.
TASK_FOR_KIND = {"page": "visdoc", "clip": "moment", "image": "image"}
KINDS = tuple(TASK_FOR_KIND)
ITEM_KIND = {"pdf": "page", "video": "clip", "image": "image"}  # file kind -> the kind of its items
_WHAT = {"pdf": "PDF pages", "video": "video", "image": "images"}


def task_for_kind(encoder: Any) -> Mapping[str, str]:
    """Item kind -> task preset for ``encoder``: its family's (``family.task_for_kind``; a kind missing there is
    one the family does not take), else VLM2Vec-V2's."""
    family = getattr(encoder, "family", None)
    return family.task_for_kind if family is not None else TASK_FOR_KIND


def check_store(encoder: Any, store: VectorStore) -> None:
    """Record the encoder's vector signature in ``store``, or refuse a store of another model's vectors."""
    from .families import vector_signature

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
    errors: list[InputError] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        made = ", ".join(f"{n} {kind}s" for kind, n in sorted(self.items.items())) or "nothing new"
        parts = [f"embedded {made} from {self.files_indexed} file(s) in {self.seconds:.1f} s"]
        if self.files_unchanged:
            parts.append(f"{self.files_unchanged} unchanged file(s) skipped")
        if self.reused:
            parts.append(f"{self.reused} item(s) already stored")
        if self.pruned:
            parts.append(f"{self.pruned} stale item(s) pruned")
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
) -> IndexReport:
    """Index every PDF, video and image under ``paths``; bad files are listed in the report, never fatal."""
    started = time.perf_counter()
    report = IndexReport()
    check_store(encoder, store)
    tasks = task_for_kind(encoder)
    sampler = clip_sampler(encoder)
    roots = [Path(p) for p in paths]
    known: dict[str, set[str]] = {}
    for record in store.files():
        known.setdefault(record.source, set()).add(record.digest)
    seen: dict[str, str] = {}
    files: list[tuple[str, str, str]] = []
    for path in walk(roots):
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
    # An edited file replaces its old version (even without --prune); pruning also drops files that are gone.
    # First, as dropping may un-record a live copy, which is then indexed again below.
    changed = {source for source, digest, _ in files if known.get(source) and digest not in known[source]}
    if prune or changed:
        report.pruned = _prune(store, roots, seen, only=None if prune else changed)
        known = {}
        for record in store.files():
            known.setdefault(record.source, set()).add(record.digest)
    cache = (Path(cache_dir) if cache_dir is not None else default_cache_dir()).resolve()
    for source, digest, what in files:
        if digest in known.get(source, set()):
            report.files_unchanged += 1
            continue
        if ITEM_KIND[what] not in tasks:  # e.g. a video for UniME-V2
            title = getattr(getattr(encoder, "family", None), "title", "this model")
            report.errors.append(InputError(f"{title} takes no {_WHAT[what]}", source=source))
            continue
        stored = _index_file(
            Path(source),
            source,
            digest,
            encoder,
            store,
            report,
            tasks=tasks,
            sampler=sampler,
            cache_dir=cache,
            dpi=dpi,
            clip_seconds=clip_seconds,
            chunk_size=chunk_size,
            batch_size=batch_size,
            progress=progress,
        )
        if stored is not None:
            store.mark_file(FileRecord(source, digest, stored, time.time()))
            report.files_indexed += 1
    report.seconds = time.perf_counter() - started
    return report


def _index_file(
    path: Path,
    source: str,
    digest: str,
    encoder: Encoder,
    store: VectorStore,
    report: IndexReport,
    *,
    tasks: Mapping[str, str],
    sampler: Any,
    cache_dir: str | Path | None,
    dpi: float,
    clip_seconds: float,
    chunk_size: int,
    batch_size: int,
    progress: Any,
) -> int | None:
    """Embed and store one file's items chunk by chunk; the number stored, or None when the file failed."""
    started = time.perf_counter()
    errors: list[InputError] = []
    items = iter_items(
        path,
        cache_dir=cache_dir,
        dpi=dpi,
        clip_seconds=clip_seconds,
        errors=errors,
        digest=digest,
        sampler=sampler,
    )
    total = 0
    kept = 0  # items stored now or already there
    for chunk in _chunks(items, chunk_size):
        present = store.existing([item.id for item in chunk])
        fresh = [item for item in chunk if item.id not in present]
        report.reused += len(chunk) - len(fresh)
        bad: list[InputError] = []
        vectors = encode_by_task(
            encoder,
            [i.to_input() for i in fresh],
            [tasks[i.kind] for i in fresh],
            batch_size=batch_size,
            errors=bad,
        )
        failed = {e.index for e in bad}
        good = [item for n, item in enumerate(fresh) if n not in failed]
        errors.extend(InputError(e.reason, source=path, location=fresh[e.index or 0].label) for e in bad)
        store.upsert([item.id for item in good], vectors, [{**item.metadata(), "source": source} for item in good])
        report.items.update(item.kind for item in good)
        total += len(chunk)
        kept += len(chunk) - len(failed)
        if progress is not None:
            progress.update(len(chunk))
            elapsed = max(time.perf_counter() - started, 1e-9)
            progress.set_postfix_str(", ".join(f"{n / elapsed:.1f} {k}s/s" for k, n in sorted(report.items.items())))
    report.errors.extend(errors)
    # A file whose every item failed (unreadable, or every clip broken) is not recorded as done: the next run
    # tries it again instead of skipping it silently.
    return None if errors and kept == 0 else total


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


def search(
    query: str, encoder: Encoder, store: VectorStore, *, k: int = 5, kinds: Sequence[str] | None = None
) -> list[Hit]:
    """The best ``k`` items for a text query; each kind is searched with its own task's query preset (the
    family's), and kinds the family does not take (UniME-V2: clips) are skipped: the store holds none."""
    check_store(encoder, store)
    tasks = task_for_kind(encoder)
    wanted = list(kinds or KINDS)
    for kind in wanted:
        if kind not in KINDS:
            raise ValueError(f"unknown type {kind!r}: use {', '.join(KINDS)}")
    hits: list[Hit] = []
    for kind in wanted:
        if kind not in tasks:  # the family takes no such items, so the store holds none
            continue
        vector = encoder.encode_queries([query], task=tasks[kind])[0]
        hits.extend(store.query(np.asarray(vector), k, kinds=[kind]))
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

    from .documents import input_for_metadata

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
